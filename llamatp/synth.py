"""`llamatp synth`: write a GGUF file with random weights in the shape of a real model.

The file follows llama.cpp's conventions (tensor names, metadata keys, the Q/K row order that
convert_hf_to_gguf.py stores for llama), so llama.cpp, transformers' GGUF loader and llamatp all
read it as they would a converted checkpoint. Shapes come from presets in configs/models/.

Weights are made in one of two ways:
- small tensors (tiny test models): Gaussian values, encoded with gguf.quants, so the model is
  numerically meaningful and `tensor_values` can give them back. gguf.quants cannot make K-quants:
  those tensors get random blocks, as below.
- large tensors: random bytes of valid blocks whose scales give weights a std of about 0.02, made
  once per type and tiled with a shift per tensor. Weight values do not change speed, and a 70B
  file is written at disk speed.
"""

from __future__ import annotations

import functools
import math
import os
import random
import shutil
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
import typer
from gguf import (
    GGML_QUANT_SIZES, GGML_QUANT_VERSION, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFWriter, LlamaFileType, quants,
)
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.quant.blocks import SUPPORTED_TYPES

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"
ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")

WEIGHT_STD = 0.02  # 2-D weights, as transformers initialises them
NORM_STD = 0.1  # norm weights are 1 + N(0, NORM_STD)
BIAS_STD = 0.1
SMALL_TENSOR = 1 << 20  # elements; larger tensors are tiled random blocks
CHUNK_BYTES = 4 << 20  # the random data tiled over large tensors, per type
UINT32_MAX = 2**32 - 1  # GGUF stores every shape field as a uint32; llama.cpp's seeds are uint32 too
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS: it refuses to load a file with more
FLOAT32_MAX = float(np.finfo(np.float32).max)
TOKEN_BYTES = 32  # metadata per token of the built-in vocabulary, at most: string, score and type

# Preset fields and their types; those with a default may be left out of a preset.
FIELDS: dict[str, type] = {
    "name": str, "architecture": str, "n_vocab": int, "n_ctx_train": int, "n_embd": int, "n_layer": int,
    "n_head": int, "n_head_kv": int, "head_dim": int, "n_ff": int, "rope_freq_base": float,
    "rms_norm_eps": float, "tied_embeddings": bool, "type": str, "output_type": dict, "sliding_window": int,
}
_DEFAULTS: dict[str, Any] = {"tied_embeddings": False, "type": "f16", "output_type": {}}
_ARCH_ONLY_FIELDS = {"sliding_window": "gemma3"}

_T = GGMLQuantizationType
_FLOAT_TYPES = (_T.F32, _T.F16, _T.BF16)
_GGUF_QUANTIZES = (*_FLOAT_TYPES, _T.Q4_0, _T.Q4_1, _T.Q5_0, _T.Q5_1, _T.Q8_0)

# general.file_type for a file whose weights are all of one type (llama-quantize --pure): for
# K-quants the _S mixes are the nearest names.
_FILE_TYPES = {
    _T.F32: LlamaFileType.ALL_F32, _T.F16: LlamaFileType.MOSTLY_F16, _T.BF16: LlamaFileType.MOSTLY_BF16,
    _T.Q4_0: LlamaFileType.MOSTLY_Q4_0, _T.Q4_1: LlamaFileType.MOSTLY_Q4_1, _T.Q5_0: LlamaFileType.MOSTLY_Q5_0,
    _T.Q5_1: LlamaFileType.MOSTLY_Q5_1, _T.Q8_0: LlamaFileType.MOSTLY_Q8_0, _T.Q2_K: LlamaFileType.MOSTLY_Q2_K,
    _T.Q3_K: LlamaFileType.MOSTLY_Q3_K_S, _T.Q4_K: LlamaFileType.MOSTLY_Q4_K_S,
    _T.Q5_K: LlamaFileType.MOSTLY_Q5_K_S, _T.Q6_K: LlamaFileType.MOSTLY_Q6_K,
}

# For each block type (ggml's block_* structs): byte offset of the f16 scale d, byte offset of the
# f16 min (None where there is none), and the min as a multiple of d that centres weights on zero:
# -mean(q) where w = d*q + m, +mean(q) where w = d*scale*q - dmin*min with scale and min alike.
_SCALE_FIELDS: dict[GGMLQuantizationType, tuple[int, int | None, float]] = {
    _T.Q4_0: (0, None, 0.0), _T.Q4_1: (0, 2, -7.5), _T.Q5_0: (0, None, 0.0), _T.Q5_1: (0, 2, -15.5),
    _T.Q8_0: (0, None, 0.0), _T.Q2_K: (80, 82, 1.5), _T.Q3_K: (108, None, 0.0), _T.Q4_K: (0, 2, 7.5),
    _T.Q5_K: (0, 2, 15.5), _T.Q6_K: (208, None, 0.0),
}

_BUILTIN_PIECES = [
    "▁t", "he", "▁the", "in", "▁a", "an", "nd", "▁and", "er", "on", "re", "at", "en", "es", "or", "▁o",
    "▁of", "▁to", "▁i", "▁in", "is", "▁is", "it", "▁it", "ing", "▁w", "▁s", "▁c",
]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the file: `shape` in torch order (rows, cols); `role` is weight, norm or bias."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    role: str

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)  # Python ints: np.prod would wrap around on absurd shapes

    @property
    def nbytes(self) -> int:
        block_size, type_size = GGML_QUANT_SIZES[self.qtype]
        return self.n_elements // block_size * type_size


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name_or_path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A preset by name (configs/models/NAME.toml) or path, with `FIELD=VALUE` overrides applied."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise LlamatpError(f"unknown preset '{name_or_path}' (available: {', '.join(available_presets())})")
    try:
        shape = tomllib.loads(path.read_text())
    except OSError as e:
        raise LlamatpError(f"cannot read preset {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise LlamatpError(f"preset {path} is not valid TOML: {e}") from None
    shape = {"name": path.stem, **_DEFAULTS, **shape}
    for override in overrides:
        key, value = _parse_override(override)
        shape[key] = value
    _check_shape(shape, str(path))
    return shape


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or key not in FIELDS:
        raise LlamatpError(f"bad override '{text}': expected FIELD=VALUE with FIELD one of {', '.join(FIELDS)}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word such as q4_0
    if FIELDS[key] is str:
        value = raw.strip() if not isinstance(value, str) else value
    elif FIELDS[key] is float and type(value) is int:
        value = float(value)
    if type(value) is not FIELDS[key]:
        raise LlamatpError(f"bad override '{text}': {key} must be {FIELDS[key].__name__}")
    return key, value


def _check_shape(shape: dict[str, Any], source: str) -> None:
    unknown = sorted(set(shape) - set(FIELDS))
    if unknown:
        raise LlamatpError(f"{source}: unknown fields {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    arch = shape.get("architecture")
    if arch not in ARCHITECTURES:
        raise LlamatpError(f"{source}: architecture must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    for field, only_for in _ARCH_ONLY_FIELDS.items():
        if field in shape and arch != only_for:
            raise LlamatpError(f"{source}: {field} applies to {only_for} only, not {arch}")
    required = [f for f in FIELDS if f not in _ARCH_ONLY_FIELDS or _ARCH_ONLY_FIELDS[f] == arch]
    missing = [f for f in required if f not in shape]
    if missing:
        raise LlamatpError(f"{source}: missing fields {', '.join(missing)}")
    for field, value in shape.items():
        expected = FIELDS[field]
        if not (type(value) is expected or (expected is float and type(value) is int)):
            raise LlamatpError(f"{source}: {field} must be {expected.__name__}, got {value!r}")
        top = MAX_LAYERS if field == "n_layer" else UINT32_MAX
        if expected is int and not 1 <= value <= top:
            raise LlamatpError(f"{source}: {field} must be 1 to {top}, got {value}")
        if expected is float and not 0 < value <= FLOAT32_MAX:  # also refuses nan and inf
            raise LlamatpError(f"{source}: {field} must be a positive finite float32, got {value}")
    if shape["n_head"] % shape["n_head_kv"]:
        raise LlamatpError(f"{source}: n_head ({shape['n_head']}) is not a multiple of n_head_kv ({shape['n_head_kv']})")
    if shape["head_dim"] % 2:
        raise LlamatpError(f"{source}: head_dim must be even for RoPE, got {shape['head_dim']}")
    parse_type(shape["type"])
    for file_type, output_type in shape["output_type"].items():
        parse_type(file_type)
        parse_type(output_type)


def parse_type(name: str) -> GGMLQuantizationType:
    """A tensor type by its llama.cpp name, in any case: f16, q4_0, Q6_K..."""
    for qtype in SUPPORTED_TYPES:
        if qtype.name == str(name).upper():
            return qtype
    names = ", ".join(t.name.lower() for t in SUPPORTED_TYPES)
    raise LlamatpError(f"unsupported tensor type '{name}' (supported: {names})")


def plan_tensors(shape: dict[str, Any], qtype: GGMLQuantizationType, n_vocab: int) -> list[TensorSpec]:
    """The tensors of a model of this shape, in file order, named as llama.cpp names them."""
    arch, n_embd, n_ff, head_dim = shape["architecture"], shape["n_embd"], shape["n_ff"], shape["head_dim"]
    q_rows, kv_rows = shape["n_head"] * head_dim, shape["n_head_kv"] * head_dim
    output_qtype = parse_type(shape["output_type"].get(qtype.name.lower(), qtype.name))

    def weight(name: str, rows: int, cols: int, wtype: GGMLQuantizationType = qtype) -> TensorSpec:
        block_size = GGML_QUANT_SIZES[wtype][0]
        if cols % block_size:
            raise LlamatpError(
                f"{shape['name']}: rows of {name} hold {cols} values, not a whole number of "
                f"{wtype.name} blocks of {block_size}; pick another type"
            )
        return TensorSpec(name, (rows, cols), wtype, "weight")

    def vector(name: str, size: int, role: str) -> TensorSpec:
        return TensorSpec(name, (size,), _T.F32, role)

    specs = [weight("token_embd.weight", n_vocab, n_embd)]
    for i in range(shape["n_layer"]):
        blk = f"blk.{i}."
        specs += [
            vector(blk + "attn_norm.weight", n_embd, "norm"),
            weight(blk + "attn_q.weight", q_rows, n_embd),
            weight(blk + "attn_k.weight", kv_rows, n_embd),
            weight(blk + "attn_v.weight", kv_rows, n_embd),
        ]
        if arch == "qwen2":
            specs += [
                vector(blk + "attn_q.bias", q_rows, "bias"),
                vector(blk + "attn_k.bias", kv_rows, "bias"),
                vector(blk + "attn_v.bias", kv_rows, "bias"),
            ]
        if arch in ("qwen3", "gemma3"):
            specs += [vector(blk + "attn_q_norm.weight", head_dim, "norm"), vector(blk + "attn_k_norm.weight", head_dim, "norm")]
        specs.append(weight(blk + "attn_output.weight", n_embd, q_rows))
        if arch == "gemma3":
            specs.append(vector(blk + "post_attention_norm.weight", n_embd, "norm"))
        specs += [
            vector(blk + "ffn_norm.weight", n_embd, "norm"),
            weight(blk + "ffn_gate.weight", n_ff, n_embd),
            weight(blk + "ffn_up.weight", n_ff, n_embd),
            weight(blk + "ffn_down.weight", n_embd, n_ff),
        ]
        if arch == "gemma3":
            specs.append(vector(blk + "post_ffw_norm.weight", n_embd, "norm"))
    specs.append(vector("output_norm.weight", n_embd, "norm"))
    if not shape["tied_embeddings"]:
        specs.append(weight("output.weight", n_vocab, n_embd, output_qtype))
    return specs


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def tensor_values(spec: TensorSpec, seed: int) -> np.ndarray:
    """The float32 values of a small tensor in transformers' layout, before any row permutation.

    A norm holds the multiplier applied to the normalised values: for gemma3 that is 1 + w of the
    Hugging Face checkpoint, which is what llama.cpp's converter stores.
    """
    noise = _rng(seed, spec.name).standard_normal(spec.shape, dtype=np.float32)
    if spec.role == "norm":
        return 1 + NORM_STD * noise
    return (BIAS_STD if spec.role == "bias" else WEIGHT_STD) * noise


def _permute_for_llama_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: transformers rotates the two halves of each
    head, llama.cpp rotates adjacent pairs; storing the rows in this order makes the two agree."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _encode(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Values as the bytes of `qtype`, shape (..., row_bytes)."""
    data = quants.quantize(np.ascontiguousarray(values), qtype)
    return data.view(np.uint8)


def _random_blocks(qtype: GGMLQuantizationType, n_blocks: int, rng: np.random.Generator, d_scale: float) -> np.ndarray:
    """`n_blocks` blocks of random quants whose f16 scales vary around `d_scale`: shape (n_blocks, type_size)."""
    type_size = GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    d_at, min_at, min_ratio = _SCALE_FIELDS[qtype]
    d = (d_scale * rng.uniform(0.5, 1.5, n_blocks)).astype(np.float16)
    blocks[:, d_at : d_at + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    if min_at is not None:
        dmin = (d.astype(np.float32) * min_ratio).astype(np.float16)
        blocks[:, min_at : min_at + 2] = dmin.view(np.uint8).reshape(n_blocks, 2)
    return blocks


@functools.cache
def _block_scale(qtype: GGMLQuantizationType) -> float:
    """The scale d for which random blocks hold weights of std WEIGHT_STD, measured on a sample."""
    sample = _random_blocks(qtype, 4096, np.random.default_rng(0), d_scale=1.0)
    return WEIGHT_STD / float(quants.dequantize(sample, qtype).std())


def _weight_blocks(qtype: GGMLQuantizationType, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random weights of std WEIGHT_STD as (n_blocks, type_size) bytes, block size 1 for float types."""
    if qtype in _FLOAT_TYPES:
        values = WEIGHT_STD * rng.standard_normal(n_blocks, dtype=np.float32)
        return _encode(values, qtype).reshape(n_blocks, -1)
    return _random_blocks(qtype, n_blocks, rng, _block_scale(qtype))


@functools.cache
def _chunk(qtype: GGMLQuantizationType, seed: int) -> np.ndarray:
    # An odd number of blocks, so that its repeats do not fall at the same place in every row.
    n_blocks = CHUNK_BYTES // GGML_QUANT_SIZES[qtype][1] | 1
    return _weight_blocks(qtype, n_blocks, np.random.default_rng([seed, qtype.value]))


def tensor_bytes(spec: TensorSpec, shape: dict[str, Any], seed: int) -> np.ndarray:
    """The stored bytes of one tensor, shape (rows, row_bytes) or (bytes,) for vectors."""
    block_size, type_size = GGML_QUANT_SIZES[spec.qtype]
    rows = spec.n_elements // spec.shape[-1]
    n_blocks = spec.n_elements // block_size
    if spec.role == "weight" and spec.n_elements > SMALL_TENSOR:
        chunk = _chunk(spec.qtype, seed)
        shift = int(_rng(seed, spec.name).integers(len(chunk)))
        data = np.resize(np.roll(chunk, shift, axis=0), (n_blocks, type_size))
    elif spec.qtype not in _GGUF_QUANTIZES:
        data = _weight_blocks(spec.qtype, n_blocks, _rng(seed, spec.name))
    else:
        values = tensor_values(spec, seed)
        if shape["architecture"] == "llama" and spec.name.endswith(("attn_q.weight", "attn_k.weight")):
            n_head = shape["n_head"] if "attn_q" in spec.name else shape["n_head_kv"]
            values = _permute_for_llama_rope(values, n_head)
        data = _encode(values, spec.qtype)
    return data.reshape(rows, -1) if len(spec.shape) == 2 else data.reshape(-1)


def _builtin_tokenizer(n_vocab: int) -> dict[str, Any]:
    """A small SentencePiece-style vocabulary (llama.cpp's 'llama' model): <unk>, <s>, </s>, the 256
    byte tokens, printable ASCII and a few common pieces, padded to n_vocab with unused tokens."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, byte
    pieces = ["▁"] + [chr(c) for c in range(0x21, 0x7F)] + _BUILTIN_PIECES
    tokens += pieces
    types += [1] * len(pieces)  # normal
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    if n_vocab < len(tokens):
        raise LlamatpError(f"n_vocab {n_vocab} is smaller than the built-in vocabulary of {len(tokens)} tokens")
    n_pad = n_vocab - len(tokens)
    tokens += [f"[PAD{i}]" for i in range(len(tokens), n_vocab)]
    types += [5] * n_pad  # unused
    scores += [-1000.0] * n_pad
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
    }


def _tokenizer_from(vocab_from: Path) -> dict[str, Any]:
    metadata = GGUFFile(vocab_from).metadata
    tokenizer = {k: v for k, v in metadata.items() if k.startswith("tokenizer.")}
    if not isinstance(tokenizer.get("tokenizer.ggml.tokens"), list):
        raise LlamatpError(f"{vocab_from} has no tokenizer.ggml.tokens to copy")
    return tokenizer


def _add_tokenizer(writer: GGUFWriter, tokenizer: dict[str, Any]) -> None:
    # Typed as llama.cpp writes them: scalar ids uint32; array items int32, float32 or string.
    for key, value in tokenizer.items():
        if isinstance(value, list):
            if value:
                writer.add_array(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, str(value))


def _add_model_metadata(writer: GGUFWriter, shape: dict[str, Any], qtype: GGMLQuantizationType, n_vocab: int) -> None:
    writer.add_name(shape["name"])
    writer.add_file_type(_FILE_TYPES[qtype])
    writer.add_quantization_version(GGML_QUANT_VERSION)
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(shape["n_ctx_train"])
    writer.add_embedding_length(shape["n_embd"])
    writer.add_block_count(shape["n_layer"])
    writer.add_feed_forward_length(shape["n_ff"])
    writer.add_head_count(shape["n_head"])
    writer.add_head_count_kv(shape["n_head_kv"])
    writer.add_key_length(shape["head_dim"])
    writer.add_value_length(shape["head_dim"])
    writer.add_rope_freq_base(shape["rope_freq_base"])
    writer.add_layer_norm_rms_eps(shape["rms_norm_eps"])
    if shape["architecture"] == "llama":
        writer.add_rope_dimension_count(shape["head_dim"])
    if shape["architecture"] == "gemma3":
        writer.add_sliding_window(shape["sliding_window"])


def _check_output(out: Path) -> None:
    """Refuse an output path that cannot be written, before any work."""
    if out.is_dir():
        raise LlamatpError(f"output {out} is a directory")
    if not out.parent.is_dir():
        problem = "is not a directory" if out.parent.exists() else "does not exist"
        raise LlamatpError(f"output directory {out.parent} {problem}")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise LlamatpError(f"cannot write in output directory {out.parent}: permission denied")


def estimated_file_size(specs: Sequence[TensorSpec], metadata_bytes: int) -> int:
    """Bytes of a file of these tensors: their data as GGUF aligns it, their infos (name, dims,
    type and offset), and `metadata_bytes`, nearly all of it the vocabulary."""
    data = sum(GGUFWriter.ggml_pad(s.nbytes, GGUF_DEFAULT_ALIGNMENT) for s in specs)
    infos = sum(8 + len(s.name) + 4 + 8 * len(s.shape) + 4 + 8 for s in specs)
    return data + infos + metadata_bytes


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 // 100 else f"{n / 2**30:.2g} GiB"


def _check_free_space(out: Path, size: int) -> None:
    free = shutil.disk_usage(out.parent).free
    if size > free:
        raise LlamatpError(f"{out.name} would take {_gib(size)}, more than the {_gib(free)} free in {out.absolute().parent}")


def write_synthetic_gguf(
    out: Path, shape: dict[str, Any], qtype: str, vocab_from: Path | None, seed: int, progress: bool
) -> int:
    """Write a model of this shape with random weights; every 2-D weight in `qtype` except as the
    preset's output_type says for output.weight. The file appears whole or not at all. Seed -1
    draws one at random, as llama.cpp's --seed does; returns the seed used."""
    out = Path(out)
    _check_output(out)
    if not -1 <= seed <= UINT32_MAX:
        raise LlamatpError(f"seed must be 0 to {UINT32_MAX}, or -1 for a random one; got {seed}")
    seed = random.randrange(UINT32_MAX + 1) if seed == -1 else seed
    wtype = parse_type(qtype)
    # The built-in vocabulary is made only once the file is known to fit: it takes memory in
    # proportion to n_vocab.
    tokenizer = _tokenizer_from(vocab_from) if vocab_from is not None else None
    n_vocab = len(tokenizer["tokenizer.ggml.tokens"]) if tokenizer else shape["n_vocab"]
    specs = plan_tensors(shape, wtype, n_vocab)
    # A vocabulary file is little more than the tokenizer copied from it.
    metadata_bytes = vocab_from.stat().st_size if vocab_from is not None else TOKEN_BYTES * n_vocab
    _check_free_space(out, estimated_file_size(specs, metadata_bytes))
    tokenizer = tokenizer or _builtin_tokenizer(n_vocab)

    writer = GGUFWriter(None, shape["architecture"])
    _add_model_metadata(writer, shape, wtype, n_vocab)
    _add_tokenizer(writer, tokenizer)
    for spec in specs:
        byte_shape = (*spec.shape[:-1], spec.nbytes // (spec.n_elements // spec.shape[-1]))
        writer.add_tensor_info(spec.name, byte_shape, np.dtype(np.uint8), spec.nbytes, raw_dtype=spec.qtype)

    partial = out.with_name(out.name + ".partial")
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    try:
        # A bar on a terminal only, gone once the write ends: an error is then the only line left.
        with Progress(*columns, console=console, disable=not (progress and console.is_terminal), transient=True) as bar:
            task = bar.add_task(out.name, total=sum(s.nbytes for s in specs))
            writer.write_header_to_file(partial)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for spec in specs:
                writer.write_tensor_data(tensor_bytes(spec, shape, seed))
                bar.advance(task, spec.nbytes)
            writer.close()
        os.replace(partial, out)
    except OSError as e:
        raise LlamatpError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return seed


def synth_command(
    preset: Annotated[str, typer.Argument(help="Preset name (see configs/models/) or path to a .toml preset.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="GGUF file to write.")],
    type_: Annotated[
        str | None, typer.Option("-t", "--type", help="Type of the 2-D weights (f32, f16, bf16, q4_0, ..., q6_k); default: the preset's.")
    ] = None,
    vocab: Annotated[
        Path | None, typer.Option("--vocab", help="GGUF file to copy the tokenizer from; default: a small built-in one.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a preset field, FIELD=VALUE (repeatable).")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the random weights, 0 to 4294967295; -1: a random one, as in llama.cpp.")
    ] = 0,
) -> None:
    """Write a GGUF model with random weights in the shape of a preset."""
    shape = load_preset(preset, overrides or [])
    seed = write_synthetic_gguf(output, shape, type_ or shape["type"], vocab, seed, progress=True)
    size = output.stat().st_size
    Console(stderr=True).print(f"wrote {output} ({size / 2**30:.2f} GiB, seed {seed})")
