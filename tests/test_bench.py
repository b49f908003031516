"""`llamatp bench`: llama-bench's flags, test matrix, timing rules and output formats."""

from __future__ import annotations

import csv
import io
import itertools
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from llamatp.bench import (
    BenchParams, BenchRunner, BenchTest, bench_params, bench_tests, decode_weight_bytes, parse_int_range, run_bench,
)
from llamatp.cli import app
from llamatp.comm import Comm
from llamatp.config import load_config
from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.runtime import ModelOptions, plan_for
from llamatp.synth import load_preset, write_synthetic_gguf

# The fields every llama-bench JSON record carries (tools/llama-bench: test::get_fields, then the samples).
LLAMA_BENCH_FIELDS = [
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
    "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
    "devices", "tensor_split", "tensor_buft_overrides", "load_mode", "embeddings", "no_op_offload", "no_host",
    "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts",
    "stddev_ts", "samples_ns", "samples_ts",
]


def write_tiny(folder: Path, tied: bool) -> str:
    path = folder / f"tiny-llama-tied-{tied}.gguf"
    write_synthetic_gguf(path, load_preset("tiny-llama", [f"tied_embeddings={str(tied).lower()}"]), "f32", None, 0, False)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Untied: the input embedding and the output head are separate tensors."""
    return write_tiny(tmp_path_factory.mktemp("bench"), tied=False)


def flags(**given: Any) -> BenchParams:
    """BenchParams from flag values as typed; unset flags empty, as the CLI passes them."""
    names = ["models", "n_prompt", "n_gen", "n_pg", "n_depth", "n_batch", "n_ubatch", "n_gpu_layers",
             "split_mode", "main_gpu", "tensor_split", "type_k", "type_v"]
    lists = {name: given.pop(name, []) for name in names}
    return bench_params(**lists, device=given.pop("device", "cpu"), repetitions=given.pop("repetitions", 1),
                        warmup=True, output=given.pop("output", "md"), flash_attn=given.pop("flash_attn", []),
                        n_threads=given.pop("n_threads", []), load_mode=given.pop("load_mode", []),
                        mmap=given.pop("mmap", []), direct_io=given.pop("direct_io", []),
                        delay=given.pop("delay", 0), progress=given.pop("progress", False),
                        output_err=given.pop("output_err", "none"), fixed=given.pop("fixed", None))


def bench_output(params: BenchParams) -> str:
    out = io.StringIO()
    run_bench(params, out)
    return out.getvalue()


# --- lists and ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, values", [
    ("512", [512]),
    ("128,512", [128, 512]),
    ("1-4", [1, 2, 3, 4]),
    ("1-5+2", [1, 3, 5]),
    ("1-6+2", [1, 3, 5]),
    ("16-64*2", [16, 32, 64]),
    ("16-100*2", [16, 32, 64]),
    ("8,16-32*2,100", [8, 16, 32, 100]),
])
def test_lists_and_ranges_expand_like_llama_bench(text: str, values: list[int]) -> None:
    assert parse_int_range(text) == values


def test_negative_values_only_where_allowed() -> None:
    assert parse_int_range("-1,0,99", allow_negative=True) == [-1, 0, 99]
    with pytest.raises(LlamatpError):
        parse_int_range("-1")


@pytest.mark.parametrize("text", ["", "x", "1-", "1,,2", "1-5/2", "1.5", "16-64*1", "0-8*2", "4-8+0", "64-16"])
def test_malformed_lists_and_ranges_are_rejected(text: str) -> None:
    with pytest.raises(LlamatpError):
        parse_int_range(text)


# --- the test matrix ----------------------------------------------------------------------------


def test_every_combination_runs_with_pp_tg_and_pg_as_separate_tests(tiny_model: str) -> None:
    params = flags(models=[tiny_model], n_prompt=["16,0,32"], n_gen=["4"], n_pg=["8,2", "0,0"],
                   n_depth=["0,8"], split_mode=["none,layer"], device="cpu,cpu")
    tests = bench_tests(params)
    shapes = ["pp16", "pp32", "tg4", "pp8+tg2"]  # zero entries skipped
    assert [t.name for t in tests] == [name + suffix for _ in range(2) for suffix in ("", " @ d8") for name in shapes]
    assert [t.split_mode for t in tests] == ["none"] * 8 + ["layer"] * 8
    assert {t.devices for t in tests if t.split_mode == "none"} == {("cpu",)}
    assert {t.devices for t in tests if t.split_mode == "layer"} == {("cpu", "cpu")}
    # one model load per split mode, whatever the depths and shapes
    assert len([key for key, _ in itertools.groupby(tests, key=lambda t: t.load_key)]) == 2
    assert max(t.n_ctx for t in tests) == 8 + 32


def test_defaults_are_llama_benchs(tiny_model: str) -> None:
    (pp, tg) = bench_tests(flags(models=[tiny_model]))
    assert (pp.name, tg.name) == ("pp512", "tg128")
    assert (pp.n_batch, pp.n_ubatch, pp.n_gpu_layers, pp.split_mode, pp.n_depth) == (2048, 512, 99, "layer", 0)


# --- what is timed ------------------------------------------------------------------------------


class RecordingEngine:
    """Stands in for Engine: records (call, first position, tokens); the depth fill, at position 0, is slow.
    A prompt pass the caller marks as one it will repeat is recorded as "repeat"."""

    def __init__(self, fill_seconds: float = 0.0) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.fill_seconds = fill_seconds

    def forward(self, tokens: list[int], start: int, all_logits: bool = False, repeated: bool = False) -> None:
        if start == 0:
            time.sleep(self.fill_seconds)
        self.calls.append(("repeat" if repeated else "forward", start, len(tokens)))

    def decode(self, token: int, pos: int) -> None:
        self.calls.append(("decode", pos, 1))


def runner_for(engine: RecordingEngine, bos: int | None = None) -> BenchRunner:
    return BenchRunner(engine, Comm(0, 1, torch.device("cpu")), n_vocab=100, bos=bos, sync=lambda: None)  # type: ignore[arg-type]


def bench_test(n_prompt: int, n_gen: int, n_depth: int, n_batch: int = 3) -> BenchTest:
    return BenchTest("m.gguf", n_prompt, n_gen, n_depth, n_batch, n_batch, 99, "none", 0, (), ("cpu",))


def test_each_repetition_starts_at_the_depth_after_one_untimed_fill() -> None:
    """The warm-up and the repetitions run the same prompt passes, marked as repeated."""
    engine = RecordingEngine()
    runner_for(engine).measure(bench_test(n_prompt=4, n_gen=2, n_depth=8), 2, True, lambda step, done: None)
    fill = [("forward", 0, 3), ("forward", 3, 3), ("forward", 6, 2)]  # 8 tokens in batches of 3
    warmup = [("repeat", 8, 3), ("repeat", 11, 1), ("decode", 12, 1)]  # the whole prompt, one token
    repetition = [("repeat", 8, 3), ("repeat", 11, 1), ("decode", 12, 1), ("decode", 13, 1)]
    assert engine.calls == fill + warmup + repetition * 2


def test_a_filled_prefix_is_reused_and_refilled_only_where_overwritten() -> None:
    engine = RecordingEngine()
    runner = runner_for(engine)
    for depth in (8, 4, 8, 0, 8):
        runner.measure(bench_test(n_prompt=1, n_gen=0, n_depth=depth, n_batch=8), 1, False, lambda step, done: None)
    fills = [(start, n) for _, start, n in engine.calls if n > 1]
    # 8: filled; 4: a prefix of it, kept; 8: the pp1 at 4 overwrote position 4, so 4..7 again;
    # 0: the pp1 at 0 overwrote position 0, so everything again
    assert fills == [(0, 8), (4, 4), (0, 8)]


def test_the_depth_fill_and_warm_up_are_not_timed() -> None:
    engine = RecordingEngine(fill_seconds=0.3)
    samples = runner_for(engine).measure(bench_test(4, 2, n_depth=8), 3, True, lambda step, done: None)
    assert len(samples) == 3
    assert max(samples) < 0.15e9


def test_prompt_tokens_are_random_ids_agreed_by_every_rank_with_bos_first() -> None:
    a, b = runner_for(RecordingEngine(), bos=1), runner_for(RecordingEngine(), bos=1)
    tokens = a.tokens(50, seed=3)
    assert tokens == b.tokens(50, seed=3) and tokens[0] == 1
    assert all(0 <= t < 100 for t in tokens) and len(set(tokens)) > 10
    assert runner_for(RecordingEngine()).tokens(50, seed=3)[1:] == tokens[1:]


# --- weight bandwidth ---------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("split_mode, world", [("none", 1), ("layer", 2), ("tensor", 2)])
def test_a_generated_token_reads_each_weight_once_but_only_a_row_of_the_input_embedding(
    tmp_path: Path, tied: bool, split_mode: str, world: int,
) -> None:
    gguf = GGUFFile(write_tiny(tmp_path, tied))
    config = load_config(gguf)
    plan = plan_for(ModelOptions(str(gguf.path), ("cpu",) * world, split_mode, n_ctx=64), gguf, config)  # type: ignore[arg-type]
    weights = sum(t.nbytes for t in gguf.tensors.values())
    read = weights if tied else weights - gguf.tensors["token_embd.weight"].nbytes
    if split_mode == "tensor":  # every device holds, and reads, all the norms
        read += (world - 1) * sum(t.nbytes for name, t in gguf.tensors.items() if name.endswith("norm.weight"))
    assert decode_weight_bytes(plan, gguf, config) == pytest.approx(read, abs=world * len(gguf.tensors))


# --- output -------------------------------------------------------------------------------------


def table(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]


def test_markdown_has_llama_benchs_columns_with_ours_before_the_test_and_t_s_last(tiny_model: str) -> None:
    params = flags(models=[tiny_model], n_prompt=["16"], n_gen=["4"], n_pg=["8,2"], n_depth=["0,8"],
                   split_mode=["none"], n_ubatch=["256"])
    header, rule, *rows = table(bench_output(params))
    # CPU backend: threads instead of ngl; n_ubatch and sm shown because they are not the defaults
    assert header == ["model", "size", "params", "backend", "threads", "n_ubatch", "sm", "dev", "peak mem",
                      "weights GB/s", "test", "t/s"]
    assert all(set(cell) <= set("-:") for cell in rule)
    tests = [row[header.index("test")] for row in rows]
    assert tests == ["pp16", "tg4", "pp8+tg2", "pp16 @ d8", "tg4 @ d8", "pp8+tg2 @ d8"]
    for row in rows:
        mean, spread = row[header.index("t/s")].split(" ± ")
        assert float(mean) > 0 and float(spread) >= 0
        assert row[header.index("backend")] == "CPU" and row[header.index("dev")] == "CPU"
        assert row[header.index("peak mem")].endswith(" GiB")
        assert (row[header.index("weights GB/s")] == "") == (not row[header.index("test")].startswith("tg"))


def test_kv_cache_types_are_columns_once_given(tiny_model: str) -> None:
    params = flags(models=[tiny_model], n_prompt=["8"], n_gen=["2"], type_k=["f32,q8_0"], type_v=["q8_0"])
    header, _, *rows = table(bench_output(params))
    assert header[header.index("backend") + 2 : header.index("dev")] == ["type_k", "type_v"]
    assert [(row[header.index("type_k")], row[header.index("type_v")]) for row in rows] == [
        ("f32", "q8_0"), ("f32", "q8_0"), ("q8_0", "q8_0"), ("q8_0", "q8_0")]


@pytest.mark.parametrize("flag", ["-nkvo", "-ncmoe", "-nopo", "-embd"])
def test_llama_bench_flags_whose_only_setting_here_is_0_take_0_and_refuse_the_rest(tiny_model: str,
                                                                                   flag: str) -> None:
    assert flags(models=[tiny_model], fixed={flag: ["0", "0,0"]}) == flags(models=[tiny_model])
    with pytest.raises(LlamatpError, match=f"{flag} 0,1: only 0 is supported"):
        flags(models=[tiny_model], fixed={flag: ["0,1"]})


def test_flash_attention_on_is_a_column_and_a_field_as_in_llama_bench(tiny_model: str) -> None:
    """llamatp's attention is always fused: -fa on (1) and auto (-1, the default) are what it
    does, recorded as llama-bench records them; off (0) is refused before anything runs."""
    params = flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"], flash_attn=["1"])
    header, _, *rows = table(bench_output(params))
    assert header[header.index("threads") + 1 : header.index("dev")] == ["fa"]
    assert [row[header.index("fa")] for row in rows] == ["1"]
    default = [json.loads(line) for line in bench_output(flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"],
                                                               output="jsonl")).splitlines()]
    assert [r["flash_attn"] for r in default] == [-1]
    with pytest.raises(LlamatpError, match="-fa 0: llamatp's attention is always fused"):
        flags(models=[tiny_model], flash_attn=["1,0"])


def test_progress_lines_and_a_delay_before_each_test(tiny_model: str, capfd: pytest.CaptureFixture[str]) -> None:
    """--progress: a line on stderr per step, numbered over all tests (as llama-bench's);
    --delay: that many seconds before each test."""
    start = time.perf_counter()
    bench_output(flags(models=[tiny_model], n_prompt=["8"], n_gen=["2"], progress=True, delay=1))
    assert time.perf_counter() - start >= 2
    lines = capfd.readouterr().err.splitlines()
    assert "llamatp bench: benchmark 1/2: pp8 (sm layer, CPU): warm-up" in lines
    assert "llamatp bench: benchmark 2/2: tg2 (sm layer, CPU): repetition 1/1" in lines
    with pytest.raises(LlamatpError, match="--delay must be 0 or more seconds, got -1"):
        flags(models=[tiny_model], delay=-1)


def test_a_second_format_goes_to_stderr(tiny_model: str) -> None:
    """-oe: the same results in a second format on stderr (-o none leaves stdout empty)."""
    out, err = io.StringIO(), io.StringIO()
    run_bench(flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"], output="none", output_err="jsonl"), out, err)
    assert out.getvalue() == ""
    assert [json.loads(line)["n_prompt"] for line in err.getvalue().splitlines()] == [8]
    with pytest.raises(LlamatpError, match="-oe: unknown output format 'xml'"):
        flags(models=[tiny_model], output_err="xml")


def test_sql_output_fills_a_llama_bench_table(tiny_model: str) -> None:
    """-o sql: llama-bench's CREATE TABLE and one INSERT per test, with llama-bench's fields only,
    so that the rows go into a database llama-bench made (llama.cpp's compare-llama-bench.py reads
    those); a quote in a path stays a quote."""
    quoted = Path(tiny_model).with_name("it's tiny.gguf")
    quoted.write_bytes(Path(tiny_model).read_bytes())
    sql = bench_output(flags(models=[str(quoted)], n_prompt=["8"], n_gen=["2"], output="sql"))
    db = sqlite3.connect(":memory:")
    db.executescript(sql + sql)  # a second run adds to the table the first made
    columns = [row[1] for row in db.execute("PRAGMA table_info(llama_bench)")]
    assert columns == LLAMA_BENCH_FIELDS[: LLAMA_BENCH_FIELDS.index("stddev_ts") + 1]
    rows = db.execute("SELECT model_filename, n_prompt, n_gen, avg_ts FROM llama_bench").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(str(quoted), 8, 0), (str(quoted), 0, 2)] * 2
    assert all(r[3] > 0 for r in rows)


def test_load_modes_are_a_column_and_a_field_as_in_llama_bench(tiny_model: str) -> None:
    """-lm none,mmap loads the model twice, once per mode (the lm column and load_mode field say
    which); -mmp 0|1 and -dio 0|1, llama-bench's older spellings, ask for none, mmap and dio."""
    params = flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"], load_mode=["none,mmap"])
    header, _, *rows = table(bench_output(params))
    assert [row[header.index("lm")] for row in rows] == ["none", "mmap"]
    records = [json.loads(line) for line in bench_output(flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"],
                                                               mmap=["0"], output="jsonl")).splitlines()]
    assert [r["load_mode"] for r in records] == ["none"]
    assert flags(models=[tiny_model], mmap=["1"], load_mode=["mlock"], direct_io=["1,0"]).load_mode == (
        "mlock", "mmap", "dio", "none")
    with pytest.raises(LlamatpError, match="-lm: unknown load mode 'fast'"):
        flags(models=[tiny_model], load_mode=["fast"])
    with pytest.raises(LlamatpError, match="-mmp takes 0 or 1, got 'yes'"):
        flags(models=[tiny_model], mmap=["yes"])


def test_threads_are_set_per_test_and_shown(tiny_model: str) -> None:
    params = flags(models=[tiny_model], n_prompt=["8"], n_gen=["0"], n_threads=["1,2"])
    header, _, *rows = table(bench_output(params))
    assert [row[header.index("threads")] for row in rows] == ["1", "2"]


def test_csv_and_jsonl_carry_llama_benchs_fields(tiny_model: str) -> None:
    common = dict(models=[tiny_model], n_prompt=["8"], n_gen=["2"], repetitions=2)
    rows = list(csv.DictReader(io.StringIO(bench_output(flags(**common, output="csv")))))  # type: ignore[arg-type]
    lines = [json.loads(line) for line in bench_output(flags(**common, output="jsonl")).splitlines()]  # type: ignore[arg-type]
    for records in (rows, lines):
        assert [(int(r["n_prompt"]), int(r["n_gen"])) for r in records] == [(8, 0), (0, 2)]
        assert all(float(r["avg_ts"]) > 0 for r in records)
    assert set(LLAMA_BENCH_FIELDS) - {"samples_ns", "samples_ts"} <= set(rows[0])
    assert set(LLAMA_BENCH_FIELDS) <= set(lines[0]) and len(lines[0]["samples_ts"]) == 2


def test_every_split_mode_on_cpu_workers(tiny_model: str) -> None:
    command = [sys.executable, "-m", "llamatp", "bench", "-m", tiny_model, "-o", "json", "-dev", "cpu,cpu",
               "-sm", "none,layer,tensor", "-p", "16", "-n", "4", "-r", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [(r["split_mode"], r["n_prompt"], r["n_gen"]) for r in records] == [
        (sm, p, n) for sm in ("none", "layer", "tensor") for p, n in ((16, 0), (0, 4))]
    gguf = GGUFFile(tiny_model)
    total = sum(t.nbytes for t in gguf.tensors.values())
    per_token = total - gguf.tensors["token_embd.weight"].nbytes  # untied: the embedding is looked up, not read
    for r in records:
        assert list(r)[: len(LLAMA_BENCH_FIELDS) - 2] == LLAMA_BENCH_FIELDS[:-2]
        assert r["model_size"] == total and r["backends"] == "CPU"
        world = 1 if r["split_mode"] == "none" else 2
        assert r["devices"] == "/".join(["CPU"] * world) and len(r["peak_mem_bytes"]) == world
        assert all(b > 0 for b in r["peak_mem_bytes"])
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 2
        n_tokens = r["n_prompt"] + r["n_gen"]
        assert r["samples_ts"] == pytest.approx([1e9 * n_tokens / ns for ns in r["samples_ns"]])
        assert r["avg_ts"] == pytest.approx(statistics.mean(r["samples_ts"])) and r["avg_ts"] > 0
        assert r["stddev_ts"] == pytest.approx(statistics.stdev(r["samples_ts"]))
        if r["n_gen"] == 0:
            assert r["weight_bandwidth_gbs"] is None
        elif r["split_mode"] == "tensor":  # norms are held, and read, on every device
            assert r["weight_bandwidth_gbs"] >= per_token * r["avg_ts"] / 1e9 * 0.999
        else:
            assert r["weight_bandwidth_gbs"] == pytest.approx(per_token * r["avg_ts"] / 1e9)


@pytest.mark.slow
def test_default_model(smollm2_path: Path) -> None:
    (pp, tg) = json.loads(bench_output(flags(models=[str(smollm2_path)], n_prompt=["8"], n_gen=["2"],
                                             output="json")))
    assert pp["model_type"].startswith("llama ") and pp["model_type"].endswith(" Q4_1")
    assert 0.9 * smollm2_path.stat().st_size < pp["model_size"] < smollm2_path.stat().st_size
    assert pp["avg_ts"] > 0 and tg["avg_ts"] > 0
    # tied embeddings: generating a token reads every weight, the output head included
    assert tg["weight_bandwidth_gbs"] == pytest.approx(tg["model_size"] * tg["avg_ts"] / 1e9)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    ["-sm", "foo"],
    ["-sm", "layer,row"],
    ["-ts", "1/1/1", "-dev", "cpu,cpu"],
    ["-ts", "1/x"],
    ["-r", "0"],
    ["-r", "-3"],
    ["-m", "no-such-model.gguf"],
    ["-p", "16-"],
    ["-n", "1-x"],
    ["-p", "16-64*1"],
    ["-d", "-8"],
    ["-pg", "512"],
    ["-o", "xml"],
    ["-ctk", "q5_1"],
    ["-p", "0", "-n", "0"],
    ["-p", "1-2000"],
])
def test_bad_flags_end_with_one_line(tiny_model: str, bad: list[str]) -> None:
    model = [] if "-m" in bad else ["-m", tiny_model]
    result = CliRunner().invoke(app, ["bench", *model, "-dev", "cpu", *bad])
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_output_begins_with_the_first_result_and_a_failure_closes_what_was_begun(
    tiny_model: str, vocab_dir: Path
) -> None:
    """A run that fails before any result prints nothing; one that fails after some leaves them
    well-formed (a JSON array closed), besides its one error line and non-zero exit."""
    vocab_only = str(vocab_dir / "ggml-vocab-llama-bpe.gguf")
    common = ["-dev", "cpu", "-p", "8", "-n", "0", "-r", "1", "-o", "json"]
    first_fails = CliRunner().invoke(app, ["bench", "-m", vocab_only, *common])
    assert first_fails.exit_code != 0 and first_fails.stdout == ""
    second_fails = CliRunner().invoke(app, ["bench", "-m", f"{tiny_model},{vocab_only}", *common])
    assert second_fails.exit_code != 0
    assert second_fails.stderr.startswith("error: ") and second_fails.stderr.count("\n") == 1, second_fails.stderr
    assert [r["model_filename"] for r in json.loads(second_fails.stdout)] == [tiny_model]
