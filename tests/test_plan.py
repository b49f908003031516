"""The split plan: every part of the model on exactly one device (or copied where it must be),
shares that follow -ts, FFN cuts on quantization blocks, and a clear error when a share does not fit."""

from __future__ import annotations

import dataclasses
import math

import pytest
from gguf import GGML_QUANT_SIZES

from llamatp.config import ModelConfig
from llamatp.errors import LlamatpError
from llamatp.gguf_file import TensorInfo
from llamatp.plan import Plan, check_fits, make_plan
from llamatp.synth import load_preset, parse_type, plan_tensors

# name: (preset, overrides, weight type)
SHAPES = {
    "llama3-8b": ("llama3-8b", [], "q4_0"),
    "llama3-70b": ("llama3-70b", [], "q4_k"),
    "smollm2-like": ("tiny-llama", ["n_vocab=49152", "n_embd=576", "n_layer=30", "n_head=9", "n_head_kv=3",
                                    "head_dim=64", "n_ff=1536", "tied_embeddings=true"], "q4_1"),
    "gemma-like": ("tiny-gemma3", ["n_vocab=262144", "n_embd=640", "n_layer=18", "n_head=4", "n_head_kv=1",
                                   "n_ff=2048"], "q8_0"),
    "tiny": ("tiny-llama", [], "f32"),
}
DEVICE_COUNTS = range(1, 9)


def model(shape_name: str, ffn_down_type: str | None = None) -> tuple[ModelConfig, dict[str, TensorInfo]]:
    """The config and tensor index a GGUF file of this shape would have; no file is written."""
    preset, overrides, qtype = SHAPES[shape_name]
    shape = load_preset(preset, overrides)
    tensors = {}
    for spec in plan_tensors(shape, parse_type(qtype), shape["n_vocab"]):
        info = TensorInfo(spec.name, spec.qtype, spec.shape, 0, spec.nbytes)
        if ffn_down_type is not None and spec.name.endswith("ffn_down.weight"):
            kind = parse_type(ffn_down_type)
            nbytes = spec.n_elements // GGML_QUANT_SIZES[kind][0] * GGML_QUANT_SIZES[kind][1]
            info = dataclasses.replace(info, qtype=kind, nbytes=nbytes)
        tensors[spec.name] = info
    gemma = shape["architecture"] == "gemma3"
    config = ModelConfig(
        arch=shape["architecture"], n_vocab=shape["n_vocab"], n_embd=shape["n_embd"], n_layer=shape["n_layer"],
        n_head=shape["n_head"], n_head_kv=shape["n_head_kv"], head_dim=shape["head_dim"], n_ff=shape["n_ff"],
        n_ctx_train=shape["n_ctx_train"], norm_eps=shape["rms_norm_eps"], rope_base=shape["rope_freq_base"],
        rope_scale=1.0, rope_neox=gemma, qkv_bias=False, qk_norm=gemma, post_norms=gemma, gelu=gemma,
        embed_scale=math.sqrt(shape["n_embd"]) if gemma else 1.0, attn_scale=1 / math.sqrt(shape["head_dim"]),
        sliding_window=shape.get("sliding_window", 0), swa_pattern=6, rope_base_swa=10000.0,
        tied_embeddings=shape["tied_embeddings"],
    )
    return config, tensors


def plan(shape_name: str, n_devices: int, mode: str, proportions: list[float] | None = None,
         ffn_down_type: str | None = None) -> tuple[ModelConfig, Plan]:
    config, tensors = model(shape_name, ffn_down_type)
    devices = [f"cuda:{i}" for i in range(n_devices)]
    return config, make_plan(config, tensors, devices, mode, n_ctx=4096, n_ubatch=512, proportions=proportions)


def assert_partition(parts: list[range], whole: int) -> None:
    """The ranges, in rank order, cover range(whole) once each: contiguous, no gaps, no overlap."""
    assert [i for part in parts for i in part] == list(range(whole))


# --- every part exactly once -----------------------------------------------------------------


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_layer_split_gives_each_layer_to_one_device(shape_name: str, n_devices: int) -> None:
    config, _ = model(shape_name)
    if config.n_layer < n_devices:
        with pytest.raises(LlamatpError, match=f"cannot split {config.n_layer} layers over {n_devices} devices"):
            plan(shape_name, n_devices, "layer")
        return
    _, p = plan(shape_name, n_devices, "layer")
    assert [s.rank for s in p.shards] == list(range(n_devices))
    assert_partition([s.layers for s in p.shards], config.n_layer)
    assert all(len(s.layers) > 0 for s in p.shards)
    for s in p.shards:  # a stage holds whole layers
        assert (s.q_heads, s.kv_heads, s.ffn, s.vocab) == (
            range(config.n_head), range(config.n_head_kv), range(config.n_ff), range(config.n_vocab))
    assert [s.has_embedding for s in p.shards] == [True] + [False] * (n_devices - 1)
    assert [s.has_output for s in p.shards] == [False] * (n_devices - 1) + [True]


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_tensor_split_gives_each_head_ffn_column_and_vocab_row_to_one_device(shape_name: str, n_devices: int) -> None:
    config, p = plan(shape_name, n_devices, "tensor")
    assert_partition([s.q_heads for s in p.shards], config.n_head)
    assert_partition([s.ffn for s in p.shards], config.n_ff)
    assert_partition([s.vocab for s in p.shards], config.n_vocab)
    for s in p.shards:
        assert s.layers == range(config.n_layer) and s.has_embedding and s.has_output
        # A device holds exactly the KV heads its query heads read.
        assert set(s.kv_heads) == {q // config.n_group for q in s.q_heads}
    if config.n_head_kv >= n_devices:
        assert_partition([s.kv_heads for s in p.shards], config.n_head_kv)
        assert all(len(s.q_heads) > 0 for s in p.shards)
    else:
        assert any("replicated" in note for note in p.notes)


def test_kv_heads_are_copied_only_when_there_are_fewer_than_devices() -> None:
    _, p = plan("smollm2-like", 3, "tensor")  # 9 query heads in 3 KV groups: one group each
    assert [list(s.kv_heads) for s in p.shards] == [[0], [1], [2]]
    assert p.notes == ()
    _, p = plan("smollm2-like", 4, "tensor")  # a group is cut: its KV head goes to both sides
    assert sum(len(s.kv_heads) for s in p.shards) > 3
    _, p = plan("gemma-like", 3, "tensor")  # one KV head: every device keeps a copy
    assert [list(s.kv_heads) for s in p.shards] == [[0], [0], [0]]


def test_one_device_holds_everything() -> None:
    config, tensors = model("llama3-8b")
    p = make_plan(config, tensors, ["cuda:0"], "none", n_ctx=4096, n_ubatch=512)
    [shard] = p.shards
    assert (shard.layers, shard.q_heads, shard.ffn, shard.vocab) == (
        range(32), range(32), range(14336), range(128256))
    assert shard.weight_bytes == sum(t.nbytes for t in tensors.values())
    with pytest.raises(LlamatpError, match="'none' runs on one device"):
        make_plan(config, tensors, ["cuda:0", "cuda:1"], "none", n_ctx=4096, n_ubatch=512)


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_layer_split_shares_weights_and_cache_without_copies(n_devices: int) -> None:
    config, tensors = model("llama3-70b")
    _, whole = plan("llama3-70b", 1, "layer")
    _, p = plan("llama3-70b", n_devices, "layer")
    assert sum(s.weight_bytes for s in p.shards) == sum(t.nbytes for t in tensors.values())
    assert sum(s.kv_bytes for s in p.shards) == whole.shards[0].kv_bytes


# --- -ts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("proportions", [[3, 1], [1, 3], [1, 1, 2], [0.5, 0.25, 0.25], [5, 1, 1, 1], [1] * 8])
def test_layer_counts_follow_tensor_split(proportions: list[float]) -> None:
    config, p = plan("llama3-70b", len(proportions), "layer", proportions)
    counts = [len(s.layers) for s in p.shards]
    assert sum(counts) == config.n_layer
    for count, share in zip(counts, proportions):
        assert abs(count - config.n_layer * share / sum(proportions)) <= 1


def test_layer_counts_for_three_to_one() -> None:
    _, p = plan("llama3-8b", 2, "layer", [3, 1])
    assert [s.layers for s in p.shards] == [range(0, 24), range(24, 32)]


def test_tensor_split_shares_follow_tensor_split() -> None:
    _, p = plan("llama3-8b", 2, "tensor", [3, 1])
    assert [len(s.kv_heads) for s in p.shards] == [6, 2]  # whole KV groups: 8 KV heads
    assert [len(s.q_heads) for s in p.shards] == [24, 8]
    assert [len(s.ffn) for s in p.shards] == [10752, 3584]
    assert [len(s.vocab) for s in p.shards] == [96192, 32064]


def test_fewer_tensor_split_entries_than_devices_leave_the_rest_empty() -> None:
    with pytest.raises(LlamatpError, match="no layers"):
        plan("llama3-8b", 3, "layer", [3, 1])


@pytest.mark.parametrize("mode", ["layer", "tensor"])
def test_more_tensor_split_entries_than_devices_is_an_error(mode: str) -> None:
    with pytest.raises(LlamatpError, match="-ts has 3 entries but there are only 2 devices"):
        plan("llama3-8b", 2, mode, [1, 1, 1])


@pytest.mark.parametrize("proportions", [[-1, 2], [0, 0]])
def test_negative_or_all_zero_tensor_split_is_an_error(proportions: list[float]) -> None:
    with pytest.raises(LlamatpError, match="non-negative and not all zero"):
        plan("llama3-8b", 2, "layer", proportions)


# --- FFN cuts fall on quantization blocks ---------------------------------------------------------


@pytest.mark.parametrize(
    "shape_name, ffn_down_type",
    [("llama3-8b", None), ("llama3-70b", None), ("smollm2-like", None), ("gemma-like", None),
     ("llama3-8b", "q6_k"), ("smollm2-like", "q4_k"), ("gemma-like", "q5_0")],
)
@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_ffn_split_falls_on_blocks_of_ffn_down(shape_name: str, ffn_down_type: str | None, n_devices: int) -> None:
    config, p = plan(shape_name, n_devices, "tensor", ffn_down_type=ffn_down_type)
    block = GGML_QUANT_SIZES[parse_type(ffn_down_type or SHAPES[shape_name][2])][0]
    assert config.n_ff % block == 0
    for s in p.shards:
        assert s.ffn.start % block == 0 and s.ffn.stop % block == 0


def test_ffn_split_ignores_the_type_of_gate_and_up() -> None:
    # Gate and up (Q4_0 here) are cut by rows, which any type allows; only ffn_down's columns
    # need whole blocks, and F16 has blocks of one value.
    _, p = plan("llama3-8b", 3, "tensor", ffn_down_type="f16")
    lengths = [len(s.ffn) for s in p.shards]
    assert max(lengths) - min(lengths) <= 1
    assert any(s.ffn.start % 32 for s in p.shards)


# --- memory # --- memory ------------------------------------------------------------------------------------------


def test_a_share_that_does_not_fit_names_its_device() -> None:
    _, p = plan("llama3-70b", 2, "layer", [3, 1])
    big, small = p.shards
    with pytest.raises(LlamatpError) as error:
        check_fits(p, [big.total_bytes, small.total_bytes - 1])
    message = str(error.value)
    assert "device cuda:1 needs" in message and "cuda:0" not in message and "\n" not in message
    check_fits(p, [big.total_bytes, small.total_bytes])
    check_fits(p, [None, None])  # the CPU is not checked


def test_the_first_device_that_does_not_fit_is_named() -> None:
    _, p = plan("llama3-8b", 4, "tensor")
    free = [s.total_bytes for s in p.shards]
    free[2] -= 1
    with pytest.raises(LlamatpError, match="device cuda:2 needs"):
        check_fits(p, free)


@pytest.mark.parametrize("mode", ["layer", "tensor"])
def test_more_devices_need_less_memory_each(mode: str) -> None:
    _, one = plan("llama3-70b", 1, mode)
    _, eight = plan("llama3-70b", 8, mode)
    assert max(s.total_bytes for s in eight.shards) < one.shards[0].total_bytes / 4
