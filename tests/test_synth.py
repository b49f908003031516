"""`llamatp synth`: presets, and GGUF files that llama.cpp's conventions and transformers agree on."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from gguf import GGMLQuantizationType, GGUFWriter, quants
from typer.testing import CliRunner

from llamatp import synth
from llamatp.errors import LlamatpError
from llamatp.gguf_file import GGUFFile
from llamatp.synth import TensorSpec, load_preset, parse_type, plan_tensors, tensor_values, write_synthetic_gguf

T = GGMLQuantizationType
ALL_TYPES = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]
TINY = ["tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3"]
SEED = 7


def write(tmp_path: Path, preset: str, qtype: str = "f32", overrides: tuple[str, ...] = (), **kwargs) -> GGUFFile:
    out = tmp_path / f"{preset}-{qtype}.gguf"
    write_synthetic_gguf(out, load_preset(preset, overrides), qtype, kwargs.get("vocab_from"), kwargs.get("seed", SEED), False)
    return GGUFFile(out)


def role(name: str) -> str:
    return "norm" if name.endswith("norm.weight") else "bias" if name.endswith(".bias") else "weight"


def dequantized(gguf: GGUFFile, name: str) -> np.ndarray:
    info = gguf.tensor(name)
    return quants.dequantize(np.asarray(gguf.raw(name)), info.qtype).reshape(info.shape)


# --- presets -------------------------------------------------------------------------------


def test_every_preset_loads() -> None:
    names = synth.available_presets()
    assert {"llama3-8b", "llama3-70b", *TINY, "tiny-llama-8heads", "tiny-llama-uneven"} <= set(names)
    for name in names:
        assert load_preset(name)["name"] == name


@pytest.mark.parametrize(
    "preset, n_embd, n_layer, n_head, n_head_kv, n_ff",
    [("llama3-8b", 4096, 32, 32, 8, 14336), ("llama3-70b", 8192, 80, 64, 8, 28672)],
)
def test_llama3_presets_have_the_reference_shapes(preset: str, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int) -> None:
    shape = load_preset(preset)
    assert (shape["n_embd"], shape["n_layer"], shape["n_head"], shape["n_head_kv"], shape["n_ff"]) == (n_embd, n_layer, n_head, n_head_kv, n_ff)
    assert (shape["n_vocab"], shape["rope_freq_base"], shape["n_ctx_train"], shape["architecture"]) == (128256, 500000.0, 8192, "llama")


@pytest.mark.parametrize(
    "preset, qtype, gib, output_type",
    [("llama3-8b", "q4_0", 4.33, T.Q6_K), ("llama3-8b", "f16", 14.96, T.F16), ("llama3-70b", "q4_0", 37.22, T.Q6_K)],
)
def test_llama3_presets_reproduce_the_reference_files(preset: str, qtype: str, gib: float, output_type: T) -> None:
    # The reference files: every 2-D weight in the named type, norms F32, output.weight Q6_K
    # for Q4_0 and F16 for F16; their sizes are given in GiB to two decimals.
    specs = plan_tensors(load_preset(preset), parse_type(qtype), 128256)
    assert round(sum(s.nbytes for s in specs) / 2**30, 2) == gib
    for spec in specs:
        if spec.name == "output.weight":
            assert spec.qtype == output_type
        elif len(spec.shape) == 2:
            assert spec.qtype == parse_type(qtype)
        else:
            assert spec.qtype == T.F32


def test_overrides_change_any_field() -> None:
    shape = load_preset("tiny-llama", ["n_layer=3", "rope_freq_base=1000", "type=q8_0", 'output_type={f32 = "f16"}'])
    assert (shape["n_layer"], shape["rope_freq_base"], shape["type"]) == (3, 1000.0, "q8_0")
    assert plan_tensors(shape, T.F32, 512)[-1].qtype == T.F16


def test_preset_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text((synth.PRESETS_DIR / "tiny-qwen2.toml").read_text().replace("n_layer = 2", "n_layer = 5"))
    shape = load_preset(path)
    assert (shape["name"], shape["n_layer"]) == ("mine", 5)


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("no-such-model", [], "tiny-llama"),  # the error lists what exists
        ("tiny-llama", ["n_layers=3"], "n_layers"),
        ("tiny-llama", ["n_layer"], "FIELD=VALUE"),
        ("tiny-llama", ["n_layer=two"], "n_layer must be int"),
        ("tiny-llama", ["n_head_kv=3"], "multiple of n_head_kv"),
        ("tiny-llama", ["architecture=gpt2"], "architecture must be one of"),
        ("tiny-llama", ["type=q4_k_m"], "unsupported tensor type 'q4_k_m'"),
        ("tiny-llama", ["sliding_window=8"], "gemma3 only"),
        # every size fits its GGUF field, a uint32, and is positive
        ("tiny-llama", ["n_embd=1099511627776"], "n_embd must be 1 to 4294967295, got 1099511627776"),
        ("tiny-llama", ["n_vocab=99999999999"], "n_vocab must be 1 to 4294967295"),
        ("tiny-llama", ["n_ff=0"], "n_ff must be 1 to 4294967295, got 0"),
        ("tiny-llama", ["n_head=-4"], "n_head must be 1 to 4294967295, got -4"),
        # llama.cpp loads at most LLAMA_MAX_LAYERS = 512 layers
        ("tiny-llama", ["n_layer=99999999999999999999"], "n_layer must be 1 to 512"),
        ("tiny-llama", ["n_layer=513"], "n_layer must be 1 to 512, got 513"),
        # floats are stored as float32: positive and finite
        ("tiny-llama", ["rope_freq_base=inf"], "rope_freq_base must be a positive finite float32"),
        ("tiny-llama", ["rms_norm_eps=nan"], "rms_norm_eps must be a positive finite float32"),
        ("tiny-llama", ["rms_norm_eps=0"], "rms_norm_eps must be a positive finite float32"),
        ("tiny-llama", ["rope_freq_base=1e39"], "rope_freq_base must be a positive finite float32"),
    ],
)
def test_bad_presets_and_overrides_are_rejected(preset: str, overrides: list[str], message: str) -> None:
    with pytest.raises(LlamatpError, match=message):
        load_preset(preset, overrides)


def test_gemma3_needs_a_sliding_window(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text((synth.PRESETS_DIR / "tiny-gemma3.toml").read_text().replace("sliding_window = 8", ""))
    with pytest.raises(LlamatpError, match="missing fields sliding_window"):
        load_preset(path)


# --- the files -----------------------------------------------------------------------------

EXPECTED_LAYER_TENSORS = {
    "llama": ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
              "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"],
    "qwen2": ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q.bias", "attn_k.bias",
              "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"],
    "qwen3": ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q_norm.weight",
              "attn_k_norm.weight", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"],
    "gemma3": ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q_norm.weight",
               "attn_k_norm.weight", "attn_output.weight", "post_attention_norm.weight", "ffn_norm.weight",
               "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "post_ffw_norm.weight"],
}


@pytest.mark.parametrize("preset", TINY + ["tiny-llama-8heads", "tiny-llama-uneven"])
def test_tiny_files_follow_llama_cpp_names_shapes_and_keys(tmp_path: Path, preset: str) -> None:
    shape = load_preset(preset)
    arch, n_embd, hd = shape["architecture"], shape["n_embd"], shape["head_dim"]
    gguf = write(tmp_path, preset, "q8_0")
    names = ["token_embd.weight", "output_norm.weight"] + [
        f"blk.{i}.{t}" for i in range(shape["n_layer"]) for t in EXPECTED_LAYER_TENSORS[arch]
    ]
    if not shape["tied_embeddings"]:
        names.append("output.weight")
    assert sorted(gguf.tensors) == sorted(names)

    q, kv = shape["n_head"] * hd, shape["n_head_kv"] * hd
    expected_shapes = {
        "token_embd.weight": (512, n_embd), "output.weight": (512, n_embd), "output_norm.weight": (n_embd,),
        "blk.1.attn_q.weight": (q, n_embd), "blk.1.attn_k.weight": (kv, n_embd), "blk.1.attn_v.weight": (kv, n_embd),
        "blk.1.attn_output.weight": (n_embd, q), "blk.1.ffn_gate.weight": (shape["n_ff"], n_embd),
        "blk.1.ffn_down.weight": (n_embd, shape["n_ff"]), "blk.1.attn_q_norm.weight": (hd,),
        "blk.1.attn_k.bias": (kv,), "blk.1.post_ffw_norm.weight": (n_embd,),
    }
    for name, info in gguf.tensors.items():
        if name in expected_shapes:
            assert info.shape == expected_shapes[name], name
        assert info.qtype == (T.Q8_0 if len(info.shape) == 2 else T.F32), name

    m = gguf.metadata
    assert m["general.architecture"] == arch
    assert m["general.file_type"] == 7  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0
    assert m[f"{arch}.block_count"] == shape["n_layer"]
    assert m[f"{arch}.embedding_length"] == n_embd
    assert m[f"{arch}.feed_forward_length"] == shape["n_ff"]
    assert m[f"{arch}.context_length"] == shape["n_ctx_train"]
    assert m[f"{arch}.attention.head_count"] == shape["n_head"]
    assert m[f"{arch}.attention.head_count_kv"] == shape["n_head_kv"]
    assert m[f"{arch}.attention.key_length"] == m[f"{arch}.attention.value_length"] == hd
    assert m[f"{arch}.rope.freq_base"] == shape["rope_freq_base"]
    assert m[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(shape["rms_norm_eps"])
    assert m[f"{arch}.vocab_size"] == 512
    if arch == "llama":
        assert m["llama.rope.dimension_count"] == hd
    if arch == "gemma3":
        assert m["gemma3.attention.sliding_window"] == shape["sliding_window"]


def test_builtin_tokenizer_is_a_small_sentencepiece_vocabulary(tmp_path: Path) -> None:
    m = write(tmp_path, "tiny-llama").metadata
    tokens, types = m["tokenizer.ggml.tokens"], m["tokenizer.ggml.token_type"]
    assert m["tokenizer.ggml.model"] == "llama"
    assert len(tokens) == len(types) == len(m["tokenizer.ggml.scores"]) == 512
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{b:02X}>" for b in range(256)] and set(types[3:259]) == {6}
    assert (m["tokenizer.ggml.bos_token_id"], m["tokenizer.ggml.eos_token_id"], m["tokenizer.ggml.unknown_token_id"]) == (1, 2, 0)
    assert "▁the" in tokens and len(set(tokens)) == len(tokens)


def test_tokenizer_is_copied_from_another_gguf(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.gguf"
    writer = GGUFWriter(vocab, "llama")
    tokens = ["<|begin|>", "<|end|>"] + [chr(c) for c in range(0x21, 0x7F)] + ["Ġthe", "Ġa"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3] + [1] * (len(tokens) - 2))
    writer.add_token_merges(["Ġ t", "Ġt he"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    gguf = write(tmp_path, "tiny-qwen2", vocab_from=vocab)
    source = GGUFFile(vocab).metadata
    copied = {k: v for k, v in gguf.metadata.items() if k.startswith("tokenizer.")}
    assert copied == {k: v for k, v in source.items() if k.startswith("tokenizer.")}
    assert gguf.metadata["qwen2.vocab_size"] == len(tokens)
    assert gguf.tensor("token_embd.weight").shape == (len(tokens), 256)


@pytest.mark.parametrize("qtype", ALL_TYPES)
@pytest.mark.parametrize("tiled", [False, True], ids=["small", "tiled"])
def test_every_type_holds_sensible_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qtype: str, tiled: bool) -> None:
    if tiled:  # make every weight "large": tiled random blocks instead of encoded Gaussians
        monkeypatch.setattr(synth, "SMALL_TENSOR", 0)
    gguf = write(tmp_path, "tiny-llama", qtype)
    for name, info in gguf.tensors.items():
        w = dequantized(gguf, name)
        assert np.isfinite(w).all(), name
        if len(info.shape) == 1:
            assert info.qtype == T.F32 and abs(w.mean() - 1) < 0.05, name  # norms near 1
            continue
        assert info.qtype == parse_type(qtype)
        assert 0.015 < w.std() < 0.025 and abs(w.mean()) < 0.15 * w.std(), name
    q0, q1 = (np.asarray(gguf.raw(f"blk.{i}.attn_q.weight")) for i in (0, 1))
    assert not np.array_equal(q0, q1)  # each tensor its own values


@pytest.mark.parametrize("qtype", ["f16", "bf16", "q4_0", "q5_1", "q8_0"])
def test_small_tensors_encode_their_gaussian_values(tmp_path: Path, qtype: str) -> None:
    gguf = write(tmp_path, "tiny-qwen2", qtype)
    info = gguf.tensor("blk.0.ffn_up.weight")
    expected = tensor_values(TensorSpec(info.name, info.shape, info.qtype, "weight"), SEED)
    error = np.abs(dequantized(gguf, info.name) - expected).max()
    assert error < {"f16": 1e-4, "bf16": 1e-3, "q8_0": 1e-3}.get(qtype, 0.02)


def test_k_quants_refuse_rows_that_are_not_whole_blocks(tmp_path: Path) -> None:
    with pytest.raises(LlamatpError, match="192 values, not a whole number of Q4_K blocks of 256"):
        write(tmp_path, "tiny-llama-uneven", "q4_k")
    assert list(tmp_path.iterdir()) == []


def test_the_seed_decides_the_weights(tmp_path: Path) -> None:
    files = [tmp_path / name for name in ("a.gguf", "b.gguf", "c.gguf")]
    for path, seed in zip(files, (1, 1, 2)):
        write_synthetic_gguf(path, load_preset("tiny-llama"), "q4_0", None, seed, False)
    a, b, c = (p.read_bytes() for p in files)
    assert a == b and a != c and len(a) == len(c)


def test_an_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model.gguf"
    out.write_bytes(b"the previous file")
    real_tensor_bytes = synth.tensor_bytes
    calls = []

    def interrupted(*args: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_tensor_bytes(*args)

    monkeypatch.setattr(synth, "tensor_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_gguf(out, load_preset("tiny-llama"), "f16", None, 0, False)
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    assert out.read_bytes() == b"the previous file"


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model.gguf"
    out.write_bytes(b"the previous file")

    def disk_full(*args: object) -> np.ndarray:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(synth, "tensor_bytes", disk_full)
    with pytest.raises(LlamatpError, match=f"cannot write {out}: No space left on device"):
        write_synthetic_gguf(out, load_preset("tiny-llama"), "f16", None, 0, False)
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]
    assert out.read_bytes() == b"the previous file"


# --- bad input: one error, before any work, nothing written -----------------------------


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if a tokenizer or a file starts being made."""

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(synth, "_builtin_tokenizer", work)
    monkeypatch.setattr(synth.GGUFWriter, "write_header_to_file", work)


def write_into(directory: Path, out: Path, overrides: tuple[str, ...] = (), seed: int = 0) -> None:
    """Write tiny-llama to `out`, then check that `directory` holds nothing new, whatever happened."""
    before = sorted(directory.iterdir())
    try:
        write_synthetic_gguf(out, load_preset("tiny-llama", overrides), "f32", None, seed, False)
    finally:
        assert sorted(directory.iterdir()) == before


@pytest.mark.usefixtures("no_work")
def test_output_must_be_a_writable_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(LlamatpError, match=f"output {tmp_path} is a directory"):
        write_into(tmp_path.parent, tmp_path)
    with pytest.raises(LlamatpError, match=f"output directory {tmp_path / 'nowhere'} does not exist"):
        write_into(tmp_path, tmp_path / "nowhere" / "m.gguf")
    with pytest.raises(LlamatpError, match=f"output directory {tmp_path / 'a-file'} is not a directory"):
        write_into(tmp_path, tmp_path / "a-file" / "m.gguf")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user without write permission
    with pytest.raises(LlamatpError, match=f"cannot write in output directory {tmp_path}: permission denied"):
        write_into(tmp_path, tmp_path / "m.gguf")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize("seed", [-2, 2**32])
def test_seeds_are_uint32_as_in_llama_cpp(tmp_path: Path, seed: int) -> None:
    with pytest.raises(LlamatpError, match=f"seed must be 0 to 4294967295, or -1 for a random one; got {seed}"):
        write_into(tmp_path, tmp_path / "m.gguf", seed=seed)


def test_seed_minus_one_draws_a_seed_that_reproduces_the_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    seed = write_synthetic_gguf(a, load_preset("tiny-llama"), "q4_0", None, -1, False)
    assert 0 <= seed < 2**32
    assert write_synthetic_gguf(b, load_preset("tiny-llama"), "q4_0", None, seed, False) == seed
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("preset, qtype", [("tiny-llama", "f32"), ("tiny-qwen2", "q4_k"), ("tiny-gemma3", "q8_0")])
def test_the_size_estimate_covers_the_file_closely(tmp_path: Path, preset: str, qtype: str) -> None:
    shape = load_preset(preset)
    estimate = synth.estimated_file_size(plan_tensors(shape, parse_type(qtype), 512), synth.TOKEN_BYTES * 512)
    write_synthetic_gguf(tmp_path / "m.gguf", shape, qtype, None, 0, False)
    assert 1 <= estimate / (tmp_path / "m.gguf").stat().st_size < 1.01


@pytest.mark.usefixtures("no_work")
def test_a_file_bigger_than_the_free_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = 3 * 2**20  # tiny-llama in f32 takes 5.5 MiB
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    with pytest.raises(LlamatpError, match=f"m.gguf would take 0.0054 GiB, more than the 0.0029 GiB free in {tmp_path}"):
        write_into(tmp_path, tmp_path / "m.gguf")


@pytest.mark.usefixtures("no_work")
@pytest.mark.parametrize(
    "overrides, gib",
    [
        (("n_embd=4294967295",), "90192.00"),
        (("n_vocab=4294967295",), "8320.00"),
        (("n_ff=4294967295", "n_layer=512"), "6291456.38"),
    ],
)
def test_the_largest_shapes_are_refused_at_once(tmp_path: Path, overrides: tuple[str, ...], gib: str) -> None:
    # Sizes that fit their fields, in a file no disk holds: refused before any memory is taken.
    with pytest.raises(LlamatpError, match=rf"m.gguf would take {gib} GiB, more than the [\d.]+ GiB free in "):
        write_into(tmp_path, tmp_path / "m.gguf", overrides)


def test_command_line(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(synth.synth_command)
    runner = CliRunner()
    out = tmp_path / "m.gguf"
    result = runner.invoke(app, ["tiny-qwen3", "-o", str(out), "-t", "Q5_0", "--set", "n_layer=1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    gguf = GGUFFile(out)
    assert gguf.metadata["qwen3.block_count"] == 1
    assert gguf.tensor("blk.0.attn_q.weight").qtype == T.Q5_0

    result = runner.invoke(app, ["tiny-qwen3", "-o", str(out), "-t", "q9_9"])
    assert isinstance(result.exception, LlamatpError) and "q9_9" in str(result.exception)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-2"], "seed must be 0 to 4294967295"),
        (["--set", "n_layer=99999999999999999999"], "n_layer must be 1 to 512"),
        (["--set", "n_embd=4294967295"], "m.gguf would take 90192.00 GiB"),
        (["-o", "."], "output . is a directory"),
    ],
)
def test_the_command_ends_bad_input_with_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    from llamatp.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["synth", "tiny-llama", "-o", "m.gguf", *args])
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and result.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- transformers reads the same files ---------------------------------------------------

HF_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "post_attention_norm": "post_attention_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
}


def hf_name(gguf_name: str, arch: str) -> str:
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    if gguf_name in top:
        return top[gguf_name]
    _, layer, tensor, suffix = gguf_name.split(".")
    if tensor == "ffn_norm":  # the norm before the FFN
        module = "pre_feedforward_layernorm" if arch == "gemma3" else "post_attention_layernorm"
    else:
        module = HF_LAYER_NAMES[tensor]
    return f"model.layers.{layer}.{module}.{suffix}"


@pytest.fixture(scope="module")
def transformers_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[GGUFFile, object, dict]]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    directory = tmp_path_factory.mktemp("hf")
    models = {}
    for preset in TINY:
        out = directory / f"{preset}.gguf"
        write_synthetic_gguf(out, load_preset(preset), "f32", None, SEED, False)
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=out.name, dtype=torch.float32, output_loading_info=True
        )
        models[preset] = (GGUFFile(out), model, info)
    return models


@pytest.mark.parametrize("preset", TINY)
def test_transformers_loads_every_weight_with_the_values_written(transformers_models: dict, preset: str) -> None:
    import torch

    gguf, model, info = transformers_models[preset]
    arch = gguf.architecture
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    state = model.state_dict()
    covered = set()
    for name, tensor in gguf.tensors.items():
        expected = tensor_values(TensorSpec(name, tensor.shape, tensor.qtype, role(name)), SEED)
        if arch == "gemma3" and role(name) == "norm":
            expected = expected - 1  # the file holds 1 + w; transformers' Gemma3RMSNorm adds the 1
        covered.add(hf_name(name, arch))
        torch.testing.assert_close(state[hf_name(name, arch)], torch.from_numpy(expected), rtol=0, atol=1e-6)
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
        covered.add("lm_head.weight")
    assert covered == set(state) - {k for k in state if "rotary_emb" in k}

    logits = model(torch.arange(1, 40).unsqueeze(0)).logits
    assert logits.shape == (1, 39, 512) and torch.isfinite(logits).all() and logits.std() > 0.05


def test_llama_q_and_k_rows_are_stored_in_llama_cpp_order(transformers_models: dict) -> None:
    import torch

    gguf, model, _ = transformers_models["tiny-llama"]
    for gguf_name, module in (("blk.0.attn_q.weight", model.model.layers[0].self_attn.q_proj),
                              ("blk.1.attn_k.weight", model.model.layers[1].self_attn.k_proj)):
        info = gguf.tensor(gguf_name)
        original = tensor_values(TensorSpec(gguf_name, info.shape, info.qtype, "weight"), SEED)
        stored = dequantized(gguf, gguf_name)
        assert not np.array_equal(stored, original)  # permuted in the file...
        assert torch.equal(module.weight, torch.from_numpy(original))  # ...and back in transformers


def test_gemma3_layers_slide_and_attend_globally(transformers_models: dict) -> None:
    _, model, _ = transformers_models["tiny-gemma3"]
    assert {"sliding_attention", "full_attention"} <= set(model.config.layer_types)
    assert model.config.sliding_window == 8
    assert model.config.query_pre_attn_scalar == model.config.head_dim  # llama.cpp scales by 1/sqrt(head_dim)
