"""The `llamatp` command, run as a user runs it: output in llama.cpp's shapes, and every bad
input ends with one line on stderr that starts with `error:` and a non-zero exit, never a traceback."""

from __future__ import annotations

import importlib.metadata
import re
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gguf import GGUFWriter, GGMLQuantizationType

from llamatp.gguf_file import GGUFFile
from llamatp.synth import load_preset, write_synthetic_gguf
from llamatp.tokenizer import Tokenizer

PROMPT = "The capital of France is"
GREEDY = ("-p", PROMPT, "-n", "8", "--temp", "0", "-c", "256")  # a small context allocates less, loads faster
LONG_PROMPT = "the quick brown fox jumps over the lazy dog " * 10

PROSE = """\
The history of the bicycle is a story of small improvements made by many people over more than a
century. The first machines, built in the early nineteenth century, had no pedals at all. Riders sat
on a wooden frame between two wheels and pushed themselves along the ground with their feet. These
running machines were popular for a few years in Germany, France and England, but they were heavy,
uncomfortable and difficult to steer on rough roads, and the fashion soon faded.

Several decades later, mechanics in Paris attached cranks and pedals directly to the front wheel.
Because each turn of the pedals turned the wheel only once, the only way to go faster was to make the
front wheel larger. This led to the high wheeler, with a front wheel as tall as a man and a tiny rear
wheel behind it. The high wheeler was fast and exciting, yet it was also dangerous. A rider who struck
a stone or a hole in the road could easily be thrown over the handlebars and badly hurt.

The safety bicycle solved this problem. It had two wheels of equal size and a chain that carried the
power from the pedals to the rear wheel. Gears allowed a small wheel to travel as far as a large one
with each turn of the pedals, so the rider could sit low, close to the ground, with both feet able to
reach it. Soon afterwards, inflatable rubber tyres made the ride far smoother, and the bicycle quickly
became one of the most common ways to travel in towns and in the countryside.

The bicycle changed daily life in ways that its inventors did not expect. Workers could live farther
from the factories where they worked. Young people could visit friends in nearby villages without a
horse. Women in particular found a new kind of freedom, and the loose, practical clothing they adopted
for cycling influenced fashion for many years. Roads were improved because cyclists demanded better
surfaces, and those smoother roads later helped the first motor cars.

Many of the skills and tools developed for making bicycles were also used in other industries. Ball
bearings, steel tubes, spoked wheels and chain drives all became important in the manufacture of cars
and aircraft. Some of the earliest aviators, including the famous brothers from Ohio, began their
careers by building and repairing bicycles in a small shop.

Today the bicycle remains popular around the world. It is cheap to buy and to maintain, it needs no
fuel, and it takes up little space on the street. In many cities, people ride to work, to school and
to the shops, and governments build special lanes to keep them safe from traffic. Racing cyclists
cover enormous distances at remarkable speeds, while children learn to ride on quiet paths in the
park. After two hundred years, the simple machine with two wheels still has a great deal to offer.
"""


def llamatp(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamatp", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr


def set_tensor_type(path: Path, name: str, qtype: GGMLQuantizationType) -> None:
    """Change the type id in `name`'s tensor info (a 2-D tensor) in place."""
    data = bytearray(path.read_bytes())
    after_name = data.index(name.encode() + struct.pack("<I", 2)) + len(name)
    struct.pack_into("<I", data, after_name + 4 + 2 * 8, qtype)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, vocab_dir: Path) -> dict[str, Path]:
    """Inputs for the error cases; `tiny` is a one-layer random Llama that loads in well under a second."""
    root = tmp_path_factory.mktemp("cli")
    files = {"dir": root, "tiny": root / "tiny.gguf", "iq4_nl": root / "iq4_nl.gguf", "mamba": root / "mamba.gguf",
             "notes": root / "notes.txt", "truncated": root / "truncated.gguf", "latin1": root / "latin1.txt",
             "prose": root / "prose.txt", "short": root / "short.txt",
             "vocab_only": vocab_dir / "ggml-vocab-llama-bpe.gguf"}  # fmt: skip
    write_synthetic_gguf(files["tiny"], load_preset("tiny-llama", ["n_layer=1"]), "f32", None, 0, False)
    files["iq4_nl"].write_bytes(files["tiny"].read_bytes())
    set_tensor_type(files["iq4_nl"], "blk.0.attn_q.weight", GGMLQuantizationType.IQ4_NL)  # smaller than F32: it fits
    writer = GGUFWriter(files["mamba"], "mamba")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    files["notes"].write_text("Not a model, just some notes.\n")
    with open(smollm2_path, "rb") as src:
        files["truncated"].write_bytes(src.read(smollm2_path.stat().st_size // 3))
    files["latin1"].write_bytes("caf\xe9".encode("latin-1"))
    files["prose"].write_text(PROSE)
    files["short"].write_text("Too short to score.")
    return files


# --- run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def greedy(smollm2_path: Path) -> subprocess.CompletedProcess[str]:
    return llamatp("run", "-m", smollm2_path, *GREEDY)


def test_run_greedy_echoes_the_prompt_and_continues_it(greedy: subprocess.CompletedProcess[str]) -> None:
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stdout.startswith(PROMPT + " Paris")


def test_run_prints_llama_cpp_timings_on_stderr(greedy: subprocess.CompletedProcess[str], smollm2_path: Path) -> None:
    n_prompt = len(Tokenizer.from_metadata(GGUFFile(smollm2_path).metadata).encode(PROMPT, parse_special=True))
    rate = r"\(\s*[\d.]+ ms per token,\s+[\d.]+ tokens per second\)"
    assert re.search(rf"prompt eval time =\s+[\d.]+ ms /\s+{n_prompt} tokens {rate}", greedy.stderr), greedy.stderr
    assert re.search(rf"\beval time =\s+[\d.]+ ms /\s+[1-8] runs\s+{rate}", greedy.stderr), greedy.stderr
    assert "tokens per second" not in greedy.stdout


def test_run_without_its_warm_up_gives_the_same_text(greedy: subprocess.CompletedProcess[str],
                                                     smollm2_path: Path) -> None:
    """By default, as in llama.cpp, a pass over BOS and EOS and one decode step run before the
    prompt (counted in the load time); what they write to the cache is written again before it
    is read. --no-warmup skips them."""
    result = llamatp("run", "-m", smollm2_path, *GREEDY, "--no-warmup")
    assert result.returncode == 0, result.stderr
    assert result.stdout == greedy.stdout


def test_ignore_eos_generates_past_the_end_of_text_to_n_predict(smollm2_path: Path) -> None:
    """Greedy, SmolLM2 ends its answer to this prompt after 30 tokens; --ignore-eos goes on to -n."""
    args = ["run", "-m", smollm2_path, "-p", PROMPT, "-n", "40", "--temp", "0", "-c", "128", "-t", "1"]
    stopped, ignoring = llamatp(*args), llamatp(*args, "--ignore-eos")
    runs = [int(re.search(r"\beval time =.*/\s+(\d+) runs", r.stderr)[1]) for r in (stopped, ignoring)]
    assert runs[0] < 39 and runs[1] == 39  # the 40th token is sampled, not decoded
    assert ignoring.stdout.startswith(stopped.stdout)


def test_run_no_display_prompt_prints_only_the_generated_text(
    greedy: subprocess.CompletedProcess[str], smollm2_path: Path
) -> None:
    result = llamatp("run", "-m", smollm2_path, *GREEDY, "--no-display-prompt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(" Paris")
    assert result.stdout == greedy.stdout.removeprefix(PROMPT)


def test_run_sampling_with_a_seed_is_repeatable(smollm2_path: Path) -> None:
    args = ("run", "-m", smollm2_path, "-p", PROMPT, "-n", "8", "-c", "256", "--temp", "0.8", "-s", "42")
    first, second = llamatp(*args), llamatp(*args)
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout) > len(PROMPT) + 1


def test_conversation_mode_answers_each_line_of_stdin_through_the_chat_template(smollm2_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamatp", "run", "-m", str(smollm2_path), "-cnv", "-sys", "You are a helpful assistant.",
         "-n", "24", "--temp", "0", "-c", "256"],
        input="What is the capital of France?\n\nAnd of Italy?\n", capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()  # the empty line adds no turn
    assert "Paris" in first and "Rome" in second  # the second turn sees the first


def chat(smollm2_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamatp", "run", "-m", str(smollm2_path), "-n", "24", "--temp", "0",
                           "-c", "256", *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_single_turn_answers_the_prompt_and_reads_no_more(smollm2_path: Path) -> None:
    """-st: a conversation of one exchange; with -p the input is not read at all."""
    result = chat(smollm2_path, "-st", "-p", "What is the capital of France?", stdin="And of Italy?\n")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout and "Rome" not in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


def test_single_turn_without_a_prompt_answers_one_line(smollm2_path: Path) -> None:
    result = chat(smollm2_path, "-st", stdin="What is the capital of France?\nAnd of Italy?\n")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout and "Rome" not in result.stdout


def test_a_chat_template_given_replaces_the_models(smollm2_path: Path, tmp_path: Path) -> None:
    """--chat-template (Jinja text) and --chat-template-file: this one ignores the messages and
    lays out a plain sentence to continue, which the model completes as it completes the prompt."""
    template = "{{ 'The capital of France is' }}"
    (tmp_path / "t.jinja").write_text(template)
    for flags in (("--chat-template", template), ("--chat-template-file", str(tmp_path / "t.jinja"))):
        result = chat(smollm2_path, "-st", "-p", "Hello", "-n", "4", *flags)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(" Paris"), result.stdout


def test_run_halts_at_a_reverse_prompt(smollm2_path: Path) -> None:
    """-r: generation stops once the generated text reaches a reverse prompt, which is printed.
    Greedy SmolLM2 continues the prompt with " Paris.\n\nThe answer is: 2018-01-22 ..."; a reverse
    prompt may span tokens, and of several the first reached halts it."""
    args = ("run", "-m", smollm2_path, "-p", PROMPT, "-n", "32", "--temp", "0", "-c", "256")
    assert llamatp(*args).stdout.startswith(PROMPT + " Paris.\n\nThe answer is: 20")
    result = llamatp(*args, "-r", ".")
    assert result.returncode == 0, result.stderr
    assert result.stdout == PROMPT + " Paris.\n"
    assert llamatp(*args, "-r", "never said", "-r", "answer is").stdout == PROMPT + " Paris.\n\nThe answer is\n"


def test_a_reverse_prompt_hands_the_turn_back_in_a_conversation(smollm2_path: Path) -> None:
    """Each reply halts at the reverse prompt, and the next line of input is the next turn."""
    result = chat(smollm2_path, "-cnv", "-r", "capital", stdin="What is the capital of France?\nAnd of Italy?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == ["The capital", "The capital"]


def test_no_gpu_layers_runs_on_the_cpu(smollm2_path: Path) -> None:
    result = llamatp("run", "-m", smollm2_path, "-p", "The capital of France is", "-n", "4", "--temp", "0",
                     "-ngl", "0", "-c", "256")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The capital of France is Paris")


def test_run_under_torchrun_joins_its_process_group(smollm2_path: Path) -> None:
    """The way a model spreads over several machines: torchrun starts the ranks, llamatp joins them."""
    args = ["-m", "llamatp", "run", "-m", str(smollm2_path), "-p", PROMPT, "-n", "6", "--temp", "0", "-c", "256"]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args,
                             "-sm", "tensor"], capture_output=True, text=True, timeout=300)
    single = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == single.stdout  # rank 0 alone writes, and the text is the same


@pytest.mark.parametrize("flags", [("-lm", "none"), ("--no-mmap",), ("--mlock",), ("-lm", "mlock"), ("-lm", "dio")])
def test_every_load_mode_generates_what_the_memory_map_does(
        greedy: subprocess.CompletedProcess[str], smollm2_path: Path, flags: tuple[str, ...]) -> None:
    """Plain reads (none) and direct I/O (dio) give the same weights as the memory map; mlock
    keeps a CPU worker's weights in RAM or, where the limit refuses, says so in a warning and
    runs unlocked."""
    result = llamatp("run", "-m", smollm2_path, *GREEDY, *flags)
    assert result.returncode == 0, result.stderr
    assert result.stdout == greedy.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("split_mode", ["tensor", "layer"])
def test_split_ranks_read_their_shards_without_a_memory_map(smollm2_path: Path, split_mode: str) -> None:
    """-lm none over two CPU workers: each reads only the rows of its shard, with plain reads,
    and the text is the single device's."""
    args = ("run", "-m", smollm2_path, "-p", PROMPT, "-n", "6", "--temp", "0", "-c", "256")
    split = llamatp(*args, "-dev", "cpu,cpu", "-sm", split_mode, "-lm", "none")
    assert split.returncode == 0, split.stderr
    assert split.stdout == llamatp(*args).stdout


@pytest.mark.parametrize("value", ["on", "auto", "1"])
def test_llama_cpp_flash_attention_flag_is_accepted_where_it_asks_for_what_llamatp_does(
        smollm2_path: Path, value: str) -> None:
    result = llamatp("run", "-m", smollm2_path, "-p", PROMPT, "--dry-run", "-fa", value)
    assert result.returncode == 0, result.stderr


def test_run_dry_run_prints_the_plan_without_loading(smollm2_path: Path) -> None:
    result = llamatp("run", "-m", smollm2_path, "-p", PROMPT, "--dry-run", "-dev", "cpu,cpu", "-sm", "tensor")
    assert result.returncode == 0, result.stderr
    assert "split mode tensor over 2 device(s)" in result.stderr
    assert len(re.findall(r"^\s+cpu: q heads", result.stderr, re.MULTILINE)) == 2
    assert result.stdout == ""
    assert "load time" not in result.stderr


# --- bad input -----------------------------------------------------------------------------

# (id, arguments with {name} for a path in `files`, what the error line says)
BAD_INPUTS = [
    ("missing model file", ["run", "-m", "{dir}/absent.gguf", "-p", "hi"], "model file not found"),
    ("model is a directory", ["run", "-m", "{dir}", "-p", "hi"], "is a directory"),
    ("model is a text file", ["run", "-m", "{notes}", "-p", "hi"], "is not a valid GGUF file: bad magic"),
    ("truncated model", ["run", "-m", "{truncated}", "-p", "hi"], "runs past the end of the file"),
    ("unsupported architecture", ["run", "-m", "{mamba}", "-p", "hi"], "architecture 'mamba' is not supported"),
    ("unsupported tensor type", ["run", "-m", "{iq4_nl}", "-p", "hi", "-n", "1"], "has type IQ4_NL, which llamatp does not support"),
    ("prompt longer than the context", ["run", "-m", "{tiny}", "-c", "16", "-p", LONG_PROMPT], "prompt is longer than the context"),
    ("negative -n", ["run", "-m", "{tiny}", "-p", "hi", "-n", "-5"], "-n must be"),
    ("negative -c", ["run", "-m", "{tiny}", "-p", "hi", "-c", "-1"], "-c must be 0"),
    ("missing prompt file", ["run", "-m", "{tiny}", "-f", "{dir}/absent.txt"], "cannot read prompt file"),
    ("prompt file is a directory", ["run", "-m", "{tiny}", "-f", "{dir}"], "cannot read prompt file"),
    ("prompt file is not UTF-8", ["run", "-m", "{tiny}", "-f", "{latin1}"], "cannot read prompt file"),
    ("unknown split mode", ["run", "-m", "{tiny}", "-p", "hi", "-sm", "diagonal"], "unknown split mode 'diagonal'"),
    ("split mode row", ["run", "-m", "{tiny}", "-p", "hi", "-sm", "row"], "use -sm tensor"),
    ("unknown device", ["run", "-m", "{tiny}", "-p", "hi", "-dev", "tpu0"], "unknown device 'tpu0'"),
    ("absent GPU", ["run", "-m", "{tiny}", "-p", "hi", "-dev", "cuda:7"], "device cuda:7 not found"),
    ("-ts longer than the devices", ["run", "-m", "{tiny}", "-p", "hi", "-dev", "cpu,cpu", "-sm", "tensor", "-ts", "1,1,1"], "-ts has 3 entries"),
    ("KV cache type llamatp does not provide", ["run", "-m", "{tiny}", "-p", "hi", "-ctk", "q5_1"], "-ctk q5_1: this KV cache type is not provided"),
    ("unknown KV cache type", ["perplexity", "-m", "{tiny}", "-f", "{short}", "-ctv", "int3"], "-ctv: unknown KV cache type 'int3'"),
    ("flash attention off", ["run", "-m", "{tiny}", "-p", "hi", "-fa", "off"], "-fa off: llamatp's attention is always fused (flash) attention"),
    ("unknown flash attention value", ["perplexity", "-m", "{tiny}", "-f", "{short}", "-fa", "maybe"], "-fa: unknown value 'maybe' (use on, off or auto)"),
    ("unknown load mode", ["perplexity", "-m", "{tiny}", "-f", "{prose}", "-lm", "fast"], "-lm: unknown load mode 'fast' (use none, mmap, mlock, mmap+mlock, dio)"),
    ("a load mode given twice", ["run", "-m", "{tiny}", "-p", "hi", "-lm", "mmap", "--no-mmap"], "give -lm/--load-mode or --no-mmap/--mlock, not both"),
    ("a chat template named but not known", ["run", "-m", "{tiny}", "-p", "hi", "-cnv", "--chat-template", "llama5"], "--chat-template llama5: no template has that name"),
    ("a chat template that does not parse", ["run", "-m", "{tiny}", "-p", "hi", "-cnv", "--chat-template", "{{% for m in messages %}}"], "chat template: line 1:"),  # braces doubled for format()
    ("a chat template file that is missing", ["run", "-m", "{tiny}", "-p", "hi", "-cnv", "--chat-template-file", "{dir}/absent.jinja"], "cannot read chat template file"),
    ("two chat templates", ["run", "-m", "{tiny}", "-p", "hi", "--chat-template", "chatml", "--chat-template-file", "{notes}"], "give --chat-template or --chat-template-file, not both"),
    ("templates without Jinja", ["run", "-m", "{tiny}", "-p", "hi", "--no-jinja"], "--no-jinja: llamatp renders chat templates with Jinja only"),
    ("a single turn that is no conversation", ["run", "-m", "{tiny}", "-p", "hi", "-st", "-no-cnv"], "-st is a conversation of one exchange"),
    ("an empty reverse prompt", ["run", "-m", "{tiny}", "-p", "hi", "-r", ""], "-r: a reverse prompt must not be empty"),
    ("unknown flag", ["run", "-m", "{tiny}", "-p", "hi", "--no-such-flag"], "No such option: --no-such-flag"),
    ("flag without its value", ["run", "-m", "{tiny}", "-p"], "requires an argument"),
    ("perplexity text too short", ["perplexity", "-m", "{tiny}", "-f", "{short}", "-c", "128"], "you need at least 256 tokens"),
    ("perplexity without -f", ["perplexity", "-m", "{tiny}"], "perplexity needs a text file"),
    ("perplexity context that scores nothing", ["perplexity", "-m", "{tiny}", "-f", "{prose}", "-c", "2"], "at least 4 for perplexity"),
    ("-ts not a number", ["run", "-m", "{tiny}", "-p", "hi", "-ts", "nan"], "-ts proportions must be finite"),
    ("--temp not a number", ["run", "-m", "{tiny}", "-p", "hi", "--temp", "nan"], "--temp must be a finite number"),
    ("seed beyond 32 bits", ["run", "-m", "{tiny}", "-p", "hi", "-s", "4294967296"], "-s must be -1 (random) or 0 to 4294967295"),
    ("a tensor-split device without a share", ["run", "-m", "{tiny}", "-p", "hi", "-dev", "cpu,cpu", "-sm", "tensor", "-ts", "1,0"], "-ts gives device cpu no share"),
    ("a context larger than the host's memory", ["run", "-m", "{tiny}", "-p", "hi", "-dev", "cpu", "-c", "1000000000"], "free; use more devices, a smaller -c"),
    ("a dry run of a file without weights", ["run", "--dry-run", "-m", "{vocab_only}"], "holds no weights"),
    ("tokenize a text file", ["tokenize", "-m", "{notes}", "-p", "hi"], "bad magic"),
    ("info of a truncated model", ["info", "{truncated}"], "runs past the end of the file"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_input_results(files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every BAD_INPUTS case, a few at a time: most of each run is a fresh interpreter importing torch."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {case: pool.submit(llamatp, *(arg.format_map(files) for arg in args)) for case, args, _ in BAD_INPUTS}
    return {case: run.result() for case, run in runs.items()}


@pytest.mark.parametrize("case, message", [pytest.param(c, m, id=c) for c, _, m in BAD_INPUTS])
def test_bad_input_is_one_line_error(bad_input_results: dict[str, subprocess.CompletedProcess[str]], case: str,
                                     message: str) -> None:
    result = bad_input_results[case]
    assert_one_line_error(result, message)
    assert result.stdout == ""


# --- tokenize, perplexity, info, --version --------------------------------------------------


def test_tokenize_ids_are_the_tokenizers(vocab_dir: Path) -> None:
    vocab = vocab_dir / "ggml-vocab-llama-bpe.gguf"
    tokenizer = Tokenizer.from_metadata(GGUFFile(vocab).metadata)
    expected = tokenizer.encode("Hello world", add_special=True, parse_special=True)
    result = llamatp("tokenize", "-m", vocab, "-p", "Hello world", "--ids")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"


def test_tokenize_without_bos_matches_llama_cpp(vocab_dir: Path) -> None:
    vocab = vocab_dir / "ggml-vocab-llama-bpe.gguf"
    texts = vocab.with_name(vocab.name + ".inp").read_bytes().decode("utf-8").split("\n__ggml_vocab_test__\n")
    ids = vocab.with_name(vocab.name + ".out").read_text().splitlines()
    expected = [int(t) for t in ids[texts.index("Hello world")].split()]  # llama.cpp's test-tokenizer-0 vectors
    result = llamatp("tokenize", "-m", vocab, "-p", "Hello world", "--no-bos")
    assert result.returncode == 0, result.stderr
    assert expected == [9906, 1917]
    assert result.stdout.splitlines() == ["  9906 -> 'Hello'", "  1917 -> ' world'"]  # pieces, as llama-tokenize prints


def test_tokenize_processes_escapes_unless_told_not_to(vocab_dir: Path) -> None:
    vocab = vocab_dir / "ggml-vocab-llama-bpe.gguf"
    tokenizer = Tokenizer.from_metadata(GGUFFile(vocab).metadata)
    escaped = llamatp("tokenize", "-m", vocab, "-p", "a\\nb", "--ids", "--no-bos")
    kept = llamatp("tokenize", "-m", vocab, "-p", "a\\nb", "--ids", "--no-bos", "--no-escape")
    newline, backslash_n = "a\nb", "a\\nb"
    assert escaped.stdout == f"{tokenizer.encode(newline, add_special=False)}\n"
    assert kept.stdout == f"{tokenizer.encode(backslash_n, add_special=False)}\n"


def test_run_reads_a_prompt_file_less_its_last_newline_and_processes_escapes(
    smollm2_path: Path, tmp_path: Path
) -> None:
    """As llama.cpp's -f and -e: 'Hello world' with or without the file's newline is 2 tokens,
    and '\\n' in -p is a newline (198) unless --no-escape."""
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("Hello world\n")
    common = ("-n", "0", "-c", "64", "--verbose-prompt", "--no-display-prompt")
    from_file = llamatp("run", "-m", smollm2_path, "-f", prompt_file, *common)
    escaped = llamatp("run", "-m", smollm2_path, "-p", "Hello\\nworld", *common)
    kept = llamatp("run", "-m", smollm2_path, "-p", "Hello\\nworld", "--no-escape", *common)
    assert "number of tokens in prompt = 2" in from_file.stderr, from_file.stderr
    assert "   198 -> '\n'" in escaped.stderr, escaped.stderr
    assert "   198 -> " not in kept.stderr and "-> '\\'" in kept.stderr, kept.stderr


def test_perplexity_of_english_prose(smollm2_path: Path, files: dict[str, Path]) -> None:
    result = llamatp("perplexity", "-m", smollm2_path, "-f", files["prose"], "-c", "128", "--chunks", "2")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\[1\][\d.]+,\[2\][\d.]+,\n", result.stdout), result.stdout  # the chunks; the rest is a log
    match = re.search(r"^Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)$", result.stderr, re.MULTILINE)
    assert match, result.stderr
    ppl, err = float(match[1]), float(match[2])
    assert 1 < ppl < 100  # a small instruct model on plain English; uniform guessing would be 49152
    assert 0 < err < ppl
    assert "over 2 chunks, n_ctx=128" in result.stderr


def test_info_describes_the_model(smollm2_path: Path) -> None:
    result = llamatp("info", smollm2_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^architecture:\s+llama$", result.stdout, re.MULTILINE)
    params = re.search(r"^parameters:\s+([\d.]+) M$", result.stdout, re.MULTILINE)
    assert params and 130 < float(params[1]) < 140  # SmolLM2-135M
    assert re.search(r"^tensor types:$", result.stdout, re.MULTILINE)
    assert re.search(r"^\s+attn_q\s+Q4_1 x30$", result.stdout, re.MULTILINE)  # a Q4_1 file with 30 layers
    assert "split mode" not in result.stdout


def test_info_with_devices_prints_the_plan(smollm2_path: Path) -> None:
    result = llamatp("info", smollm2_path, "-dev", "cpu,cpu", "-sm", "tensor")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^architecture:\s+llama$", result.stdout, re.MULTILINE)
    assert "split mode tensor over 2 device(s)" in result.stdout
    assert len(re.findall(r"^\s+cpu: q heads .*, total [\d.]+ [MG]iB$", result.stdout, re.MULTILINE)) == 2


def test_version() -> None:
    result = llamatp("--version")
    assert result.returncode == 0
    assert result.stdout == f"llamatp {importlib.metadata.version('llamatp')}\n"


@pytest.mark.parametrize("text, expected", [("15043+1", (15043, 1.0)), ("15043-1", (15043, -1.0)),
                                            ("5-inf", (5, float("-inf"))), ("7 + 0.5", (7, 0.5))])
def test_logit_bias_is_read_as_llama_cpp_reads_it(text: str, expected: tuple[int, float]) -> None:
    from llamatp.cli import parse_logit_bias

    assert parse_logit_bias(text) == expected


@pytest.mark.parametrize("text", ["abc", "5*2", "5+", "5+x", "-3+1", "5+nan"])
def test_a_malformed_logit_bias_is_an_error_naming_it(text: str) -> None:
    from llamatp.cli import parse_logit_bias
    from llamatp.errors import LlamatpError

    with pytest.raises(LlamatpError, match=f"--logit-bias {re.escape(text)}: expected TOKEN_ID"):
        parse_logit_bias(text)
