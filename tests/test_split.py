"""Splitting a model over worker processes (CPU, gloo) changes nothing but float32 rounding:
`-sm layer` and `-sm tensor`, even or uneven (-ts, head counts that do not divide), give the
single-device logits and the same greedy text; and a worker that dies ends the whole run."""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from llamatp.engine import pipeline_micro_batches
from llamatp.synth import load_preset, write_synthetic_gguf
from llamatp.tokenizer import Tokenizer
from split_harness import options, relative_error, split_logits

TEXT = (
    "The lighthouse keeper climbed the stairs every evening at dusk, trimmed the wick, polished the "
    "great lens and wrote the weather in a small book before the ships came in. On stormy nights he "
    "stayed awake until morning, listening to the wind and counting the seconds between the flashes, "
    "and when the fog rolled in he rang the bell by hand, once a minute, until the sun burned it away."
)
N_TOKENS = 64  # two micro-batches of 32 under -sm layer
MODELS = ["smollm2", "gemma3", "tiny"]
# -sm and -ts of each split run, by number of workers.
RUNS = {
    2: [("layer", ()), ("tensor", ()), ("layer", (3.0, 1.0)), ("tensor", (3.0, 1.0))],
    3: [("layer", ()), ("tensor", ())],
}
CLI = Path(sys.executable).with_name("llamatp")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("split-models")


def synthetic(directory: Path, preset: str, qtype: str, overrides: list[str]) -> Path:
    path = directory / f"{preset}-{qtype}.gguf"
    if not path.exists():
        write_synthetic_gguf(path, load_preset(preset, overrides), qtype, None, seed=5, progress=False)
    return path


@pytest.fixture(scope="module")
def model_paths(smollm2_path: Path, gemma3_path: Path, synthetic_dir: Path) -> dict[str, Path]:
    # tiny: Q/K/V biases, 2 KV heads (copied when split three ways), Q8_0 blocks cut by the split.
    tiny = synthetic(synthetic_dir, "tiny-qwen2", "q8_0", ["n_layer=4"])
    return {"smollm2": smollm2_path, "gemma3": gemma3_path, "tiny": tiny}


@pytest.fixture(scope="module")
def single_device(model_paths: dict[str, Path]) -> dict[str, tuple[list[int], torch.Tensor]]:
    """Each model's token ids and their logits on one device."""
    result = {}
    for name, path in model_paths.items():
        ids = Tokenizer.from_gguf(path).encode(TEXT)[:N_TOKENS]
        [logits] = split_logits([options(str(path), 1, "none")], ids)
        result[name] = (ids, logits)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", sorted(RUNS))
@pytest.mark.parametrize("model", MODELS)
def test_split_logits_equal_single_device(model: str, n_workers: int, model_paths: dict[str, Path],
                                          single_device: dict[str, tuple[list[int], torch.Tensor]]) -> None:
    ids, expected = single_device[model]
    assert len(ids) == N_TOKENS
    runs = RUNS[n_workers]
    results = split_logits([options(str(model_paths[model]), n_workers, mode, ts) for mode, ts in runs], ids)
    for (mode, ts), logits in zip(runs, results):
        assert logits.shape == expected.shape, f"-sm {mode} -ts {ts}"
        assert relative_error(logits, expected) < 1e-5, f"-sm {mode} -ts {ts}"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-llama-8heads", "tiny-llama-uneven"])
def test_eight_workers_equal_single_device(preset: str, synthetic_dir: Path) -> None:
    # tiny-llama-8heads: heads, KV heads and FFN divide by 8; tiny-llama-uneven (6 heads, 3 KV
    # heads): some workers hold no query head at all. Eight layers, so that -sm layer fits too.
    path = synthetic(synthetic_dir, preset, "f32", ["n_layer=8"])
    ids = Tokenizer.from_gguf(path).encode(TEXT)[:32]
    [expected] = split_logits([options(str(path), 1, "none")], ids)
    results = split_logits([options(str(path), 8, mode) for mode in ("layer", "tensor")], ids)
    for mode, logits in zip(("layer", "tensor"), results):
        assert relative_error(logits, expected) < 1e-5, f"-sm {mode}"


@pytest.mark.slow
def test_a_q4_0_cache_is_split_with_its_heads(model_paths: dict[str, Path]) -> None:
    """Layer split rounds each layer's cache as one device does: the same logits. Tensor split
    gives each worker its heads' codes, but its float32 keys, summed in another order, now and
    then land a value on the other side of a rounding boundary; a q4_0 step is an eighth of a
    block's range, and from that token on the logits part (before it they agree to float32
    rounding). The parting stays well within how far rounding the cache to q4_0 moves the logits
    at all (SmolLM2, 64 tokens: a first flip at token 21 and 0.107 on one machine, 0.040 on
    another, against 0.30 for q4_0 against an f32 cache; 1.16 between unrelated rows)."""
    path = str(model_paths["smollm2"])
    ids = Tokenizer.from_gguf(path).encode(TEXT)[:N_TOKENS]
    q4 = {mode: dataclasses.replace(options(path, n, mode), cache_type_k="q4_0", cache_type_v="q4_0")
          for mode, n in (("none", 1), ("layer", 2), ("tensor", 3))}
    [alone], [layer], [tensor] = (split_logits([q4[mode]], ids) for mode in ("none", "layer", "tensor"))
    [unrounded] = split_logits([dataclasses.replace(q4["none"], cache_type_k="f32", cache_type_v="f32")], ids)
    assert relative_error(layer, alone) < 1e-6
    assert relative_error(tensor, alone) < relative_error(alone, unrounded) / 2
    assert float((tensor.argmax(-1) == alone.argmax(-1)).float().mean()) >= 0.9


# --- the command line --------------------------------------------------------------------------------


PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def greedy_text(model_paths: dict[str, Path]) -> Callable[[str, str], str]:
    """`llamatp run` greedy output for a model and split mode, given two CPU workers (cached)."""
    seen: dict[tuple[str, str], str] = {}

    def run(model: str, mode: str) -> str:
        if (model, mode) not in seen:
            args = ["run", "-m", str(model_paths[model]), "-p", PROMPT, "-n", "8", "--temp", "0", "-c", "128",
                    "-dev", "cpu,cpu", "-sm", mode]
            done = subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            seen[model, mode] = done.stdout
        return seen[model, mode]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("model, mode", [("smollm2", "layer"), ("smollm2", "tensor"), ("tiny", "layer"), ("tiny", "tensor")])
def test_greedy_text_is_the_same_in_every_split_mode(model: str, mode: str,
                                                    greedy_text: Callable[[str, str], str]) -> None:
    alone = greedy_text(model, "none")
    assert alone.startswith(PROMPT) and len(alone) > len(PROMPT + "\n")
    assert greedy_text(model, mode) == alone


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    return [d for child in children(pid) for d in (child, *descendants(child))]


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_one_line_naming_it(model_paths: dict[str, Path]) -> None:
    run = subprocess.Popen(
        [str(CLI), "run", "-m", str(model_paths["tiny"]), "-p", "Once upon a time", "-n", "4000", "--temp", "0",
         "-dev", "cpu,cpu", "-sm", "tensor"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([run.stdout], [], [], 60)
        assert ready and run.poll() is None, "generation did not start"
        everyone = descendants(run.pid)
        workers = [pid for pid in children(run.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = run.communicate(timeout=15)
        assert time.monotonic() - killed_at < 15
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1" in errors[0], stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 5
    while any(map(is_running, everyone)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(is_running, everyone))


def test_layer_split_cuts_a_prompt_into_fewer_micro_batches_where_each_dequantizes_the_weights() -> None:
    assert pipeline_micro_batches(512, 4, dequantizes=False) == 4  # dense weights: one per stage
    assert pipeline_micro_batches(512, 4, dequantizes=True) == 2  # each pays the stage's dequantization
    assert pipeline_micro_batches(512, 2, dequantizes=True) == 1
    assert pipeline_micro_batches(2048, 4, dequantizes=True) == 4
    assert pipeline_micro_batches(40, 4, dequantizes=False) == 1  # none under 32 tokens
