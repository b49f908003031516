"""Model hyper-parameters from GGUF metadata: every supported architecture reads as its tensors say;
metadata of the wrong type or out of range, or that contradicts the tensors, fails with one line
naming the key or the tensor, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter, ReaderTensor

from llamatp.config import check_tensor_shapes, load_config
from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.synth import load_preset, write_synthetic_gguf

N_LAYER = 30  # SmolLM2-135M
ADD = {str: GGUFWriter.add_string, int: GGUFWriter.add_int32, float: GGUFWriter.add_float32,
       list: GGUFWriter.add_array}
Craft = Callable[[dict[str, Any]], Path]


@dataclass(frozen=True)
class Source:
    """What a crafted file copies from SmolLM2: each metadata key with its value and GGUF types, the
    tensor index, and the size of the tensor data."""

    metadata: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]]
    tensors: list[ReaderTensor]
    data_bytes: int


@pytest.fixture(scope="module")
def smollm2_source(smollm2_path: Path) -> Source:
    reader = GGUFReader(smollm2_path)
    metadata = {
        key: (field.contents(), field.types[0], field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None)
        for key, field in reader.fields.items() if not key.startswith("GGUF.") and key != "general.architecture"
    }
    start = min(t.data_offset for t in reader.tensors)
    return Source(metadata, list(reader.tensors), max(t.data_offset + t.n_bytes for t in reader.tensors) - start)


@pytest.fixture
def craft(smollm2_source: Source, tmp_path: Path) -> Craft:
    """SmolLM2 with some metadata changed (None: the key removed) and its tensor index unchanged.

    The tensor bytes are zeros, in a sparse file: these tests never read them."""

    def make(changes: dict[str, Any]) -> Path:
        path = tmp_path / "crafted.gguf"
        writer = GGUFWriter(path, "llama")
        for key, (value, vtype, sub_type) in smollm2_source.metadata.items():
            if key not in changes:
                writer.add_key_value(key, value, vtype, sub_type=sub_type)
        for key, value in changes.items():
            if value is not None:
                ADD[type(value)](writer, key, value)
        for t in smollm2_source.tensors:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.n_bytes, raw_dtype=t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        with open(path, "r+b") as file:
            file.truncate(-(-path.stat().st_size // 32) * 32 + smollm2_source.data_bytes)
        return path

    return make


# --- files that load ---------------------------------------------------------------------------


def test_smollm2_reads_as_published(smollm2_path: Path) -> None:
    gguf = GGUFFile(smollm2_path)
    config = load_config(gguf)
    check_tensor_shapes(gguf, config)
    assert (config.n_embd, config.n_layer, config.n_head, config.n_head_kv, config.head_dim, config.n_ff,
            config.n_vocab) == (576, 30, 9, 3, 64, 1536, 49152)


def test_gemma3_reads_as_published(gemma3_path: Path) -> None:
    gguf = GGUFFile(gemma3_path)
    config = load_config(gguf)
    check_tensor_shapes(gguf, config)  # head_dim 256 x 4 heads is wider than n_embd 640
    assert (config.n_embd, config.n_head, config.n_head_kv, config.head_dim, config.sliding_window) == (
        640, 4, 1, 256, 512)


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3"])
def test_every_architecture_reads_as_its_tensors_say(tmp_path: Path, preset: str) -> None:
    """qwen2's Q/K/V biases, the Q/K norms of qwen3 and gemma3, gemma3's post norms and tied output."""
    path = tmp_path / f"{preset}.gguf"
    shape = load_preset(preset, [])
    write_synthetic_gguf(path, shape, "f32", None, 0, False)
    gguf = GGUFFile(path)
    config = load_config(gguf)
    check_tensor_shapes(gguf, config)
    assert (config.arch, config.head_dim, config.n_ff) == (shape["architecture"], shape["head_dim"], shape["n_ff"])


def test_per_layer_arrays_of_one_value_read_as_that_value(craft: Craft, smollm2_path: Path) -> None:
    """llama.cpp reads head counts and FFN sizes as one value or one per layer."""
    path = craft({"llama.attention.head_count": [9] * N_LAYER, "llama.attention.head_count_kv": [3] * N_LAYER,
                  "llama.feed_forward_length": [1536] * N_LAYER})
    assert load_config(GGUFFile(path)) == load_config(GGUFFile(smollm2_path))


# --- metadata of the wrong type or out of range ------------------------------------------------

# A change to SmolLM2's metadata, and how the one-line error ends.
BAD_METADATA = [
    ({"llama.embedding_length": "abc"}, "metadata llama.embedding_length: expected a positive integer, got 'abc'"),
    ({"llama.embedding_length": None}, "lacks metadata key 'llama.embedding_length'"),
    ({"llama.block_count": 0}, "metadata llama.block_count: expected a positive integer, got 0"),
    ({"llama.attention.head_count": 0},
     "metadata llama.attention.head_count: expected a positive integer or an array of 30, one per layer, got 0"),
    ({"llama.attention.head_count_kv": [1, 2]},
     "metadata llama.attention.head_count_kv: expected a positive integer or an array of 30, one per layer, got [1, 2]"),
    ({"llama.attention.head_count_kv": 2},
     "metadata llama.attention.head_count 9 is not a multiple of llama.attention.head_count_kv 2"),
    ({"llama.feed_forward_length": [1536] * 29 + [1024]},
     "metadata llama.feed_forward_length: expected the same value for every layer, "
     "got [1536, 1536, 1536, 1536, 1536, 1536, 1536, 1536, 1536, 15..."),  # cut short
    ({"llama.feed_forward_length": 1536.0},
     "metadata llama.feed_forward_length: expected a positive integer or an array of 30, one per layer, got 1536.0"),
    ({"llama.attention.key_length": -64}, "metadata llama.attention.key_length: expected a positive integer, got -64"),
    ({"llama.attention.key_length": 63}, "metadata llama.attention.key_length: head size 63 is odd; RoPE rotates pairs"),
    ({"llama.attention.key_length": 32},
     "metadata llama.rope.dimension_count 64 differs from llama.attention.key_length 32: "
     "RoPE over part of a head is not supported"),
    ({"llama.context_length": -1}, "metadata llama.context_length: expected a positive integer, got -1"),
    ({"llama.attention.layer_norm_rms_epsilon": "x"},
     "metadata llama.attention.layer_norm_rms_epsilon: expected a positive number, got 'x'"),
    ({"llama.rope.freq_base": 0.0}, "metadata llama.rope.freq_base: expected a positive number, got 0.0"),
    ({"llama.rope.freq_base": float("nan")}, "metadata llama.rope.freq_base: expected a positive number, got nan"),
    ({"llama.rope.scaling.type": 1}, "metadata llama.rope.scaling.type: expected a string, got 1"),
    ({"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": -2.0},
     "metadata llama.rope.scaling.factor: expected a positive number, got -2.0"),
]  # fmt: skip


@pytest.mark.parametrize("changes, message", [pytest.param(c, m, id=", ".join(c)) for c, m in BAD_METADATA])
def test_bad_metadata_is_one_clear_error(craft: Craft, changes: dict[str, Any], message: str) -> None:
    path = craft(changes)
    with pytest.raises(LlamatpError) as error:
        load_config(GGUFFile(path))
    assert str(error.value).startswith(str(path))
    assert str(error.value).endswith(message)


# --- metadata that contradicts the tensors -----------------------------------------------------

# A change to SmolLM2's metadata that its tensors contradict, and the error that says so.
CONTRADICTED = [
    ({"llama.feed_forward_length": 1024},
     "tensor blk.0.ffn_down.weight has shape [576, 1536], expected [576, 1024] from llama.feed_forward_length 1024"),
    ({"llama.attention.key_length": 32, "llama.rope.dimension_count": None},
     "tensor blk.0.attn_k.weight has shape [192, 576], expected [96, 576] from "
     "llama.attention.head_count_kv 3 x llama.attention.key_length 32"),
    ({"llama.attention.head_count_kv": 1},
     "tensor blk.0.attn_k.weight has shape [192, 576], expected [64, 576] from llama.attention.head_count_kv 1 x "
     "head size 64 (llama.embedding_length / llama.attention.head_count)"),
    ({"llama.embedding_length": 288, "llama.rope.dimension_count": None},
     "tensor token_embd.weight has shape [49152, 576], expected [49152, 288] from llama.embedding_length 288"),
]  # fmt: skip


@pytest.mark.parametrize("changes, message", [pytest.param(c, m, id=", ".join(c)) for c, m in CONTRADICTED])
def test_tensor_that_contradicts_the_metadata_is_one_clear_error(craft: Craft, changes: dict[str, Any],
                                                                 message: str) -> None:
    gguf = GGUFFile(craft(changes))
    config = load_config(gguf)  # the metadata alone is sound
    with pytest.raises(LlamatpError) as error:
        check_tensor_shapes(gguf, config)
    assert str(error.value) == f"{gguf.path}: {message}"


# --- the command line --------------------------------------------------------------------------


def llamatp(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llamatp", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_info_of_bad_metadata_ends_with_one_line(craft: Craft) -> None:
    result = llamatp("info", craft({"llama.embedding_length": "abc"}))
    assert result.returncode != 0
    assert result.stderr.endswith("metadata llama.embedding_length: expected a positive integer, got 'abc'\n")
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def test_run_of_contradicted_metadata_ends_with_one_line(craft: Craft) -> None:
    result = llamatp("run", "-m", craft({"llama.feed_forward_length": 1024}), "-p", "hi", "-n", "2", "-dev", "cpu",
                     "-c", "256")
    assert result.returncode != 0
    assert "tensor blk.0.ffn_down.weight has shape [576, 1536], expected [576, 1024]" in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
