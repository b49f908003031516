"""llamatp computes the logits that Hugging Face transformers computes from the same GGUF file,
for real checkpoints and for random-weight models of each architecture; and prompt batching or
token-by-token decoding does not change them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_reference import hf_logits
from llamatp.launch import WorkerInfo
from llamatp.runtime import ModelOptions, Runtime, open_runtime
from llamatp.synth import load_preset, write_synthetic_gguf
from llamatp.tokenizer import Tokenizer
from split_harness import relative_error

TEXT = """\
Before the printing press, a book was copied by hand, one page at a time. A monastery might spend a year \
on a single Bible, and a university library of a few hundred volumes was counted as a great treasure. \
When Johannes Gutenberg began casting metal type in Mainz around 1440, he was not trying to change the \
world; he wanted to make good books faster and sell them at a profit. His press borrowed the screw from \
the wine press, his ink was thick and oily so that it would cling to metal, and his letters were cast in \
a hand mould that let a skilled worker make thousands of identical pieces in a week.

Within fifty years there were presses in more than two hundred European cities, and millions of books had \
been printed. Prices fell, and readers who had never owned a book could now buy pamphlets, almanacs and \
grammars. Scholars could compare the same edition across a continent, so errors were noticed, corrected \
and reported in the next printing. Some historians argue that the steady spread of cheap, identical texts \
did as much for science as any single discovery, because it allowed ideas to be checked, argued over and \
improved by people who would never meet. Others point out that the same machines printed rumours, \
forgeries and angry sermons just as quickly, which is a reminder that every new way of sharing words \
brings its own problems along with its gifts.
"""

N_CTX = 512
SYNTH_TOKENS = 128  # the built-in vocabulary of random-weight models is mostly single characters
SEED = 3


def runtime(path: Path, n_ubatch: int = 512) -> Runtime:
    options = ModelOptions(model=str(path), devices=("cpu",), split_mode="none", n_ctx=N_CTX, n_ubatch=n_ubatch)
    return open_runtime(options, WorkerInfo(0, 1, "cpu"))


def llamatp_logits(path: Path, ids: list[int]) -> torch.Tensor:
    return runtime(path).engine.forward(ids, 0, all_logits=True)


def text_ids(path: Path, limit: int | None = None) -> list[int]:
    ids = Tokenizer.from_gguf(path).encode(TEXT)
    return ids[:limit] if limit else ids


def assert_same_logits(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape
    top1_agreement = float((ours.argmax(-1) == reference.argmax(-1)).float().mean())
    assert top1_agreement >= 0.99
    assert relative_error(ours, reference) < 1e-4


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def synthetic(directory: Path, preset: str, qtype: str, overrides: tuple[str, ...] = ()) -> Path:
    path = directory / ("-".join([preset, qtype, *overrides]).replace("=", "") + ".gguf")
    if not path.exists():
        write_synthetic_gguf(path, load_preset(preset, overrides), qtype, None, SEED, progress=False)
    return path


# --- real checkpoints -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("model_fixture", ["smollm2_path", "gemma3_path"])
def test_real_model_logits_match_transformers(model_fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(model_fixture)
    ids = text_ids(path)
    assert 250 <= len(ids) <= N_CTX
    assert_same_logits(llamatp_logits(path, ids), hf_logits(path, ids))


# --- random weights, every architecture ----------------------------------------------------------


@pytest.mark.parametrize(
    "preset, qtype",
    [("tiny-llama", "f32"), ("tiny-llama", "q4_k"), ("tiny-qwen2", "f32"), ("tiny-qwen2", "q8_0"),
     ("tiny-qwen3", "f32"), ("tiny-qwen3", "q4_k"), ("tiny-gemma3", "f32"), ("tiny-gemma3", "q8_0")],
)
def test_random_weight_logits_match_transformers(preset: str, qtype: str, synthetic_dir: Path) -> None:
    path = synthetic(synthetic_dir, preset, qtype)
    ids = text_ids(path, SYNTH_TOKENS)
    assert len(ids) == SYNTH_TOKENS
    assert_same_logits(llamatp_logits(path, ids), hf_logits(path, ids))


def test_gemma3_comparison_reaches_past_the_sliding_window(synthetic_dir: Path) -> None:
    # Only if the window changes the logits does agreement with transformers show it slides right.
    path = synthetic(synthetic_dir, "tiny-gemma3", "f32")
    rt = runtime(path)
    window = rt.config.sliding_window
    assert 0 < 4 * window < SYNTH_TOKENS
    assert any(rt.config.is_swa_layer(i) for i in range(rt.config.n_layer))
    assert not all(rt.config.is_swa_layer(i) for i in range(rt.config.n_layer))
    ids = text_ids(path, SYNTH_TOKENS)
    windowed = rt.engine.forward(ids, 0, all_logits=True)
    unbounded = llamatp_logits(synthetic(synthetic_dir, "tiny-gemma3", "f32", ("sliding_window=4096",)), ids)
    assert relative_error(windowed[:window], unbounded[:window]) < 1e-6  # nothing has left the window yet
    assert relative_error(windowed[window:], unbounded[window:]) > 1e-2


# --- batching does not change the result ----------------------------------------------------------


@pytest.fixture(scope="module", params=["tiny-gemma3", "smollm2"])
def model_and_ids(request: pytest.FixtureRequest, synthetic_dir: Path) -> tuple[Path, list[int], torch.Tensor]:
    """A model, 64 tokens of text, and their logits from one forward pass."""
    if request.param == "smollm2":
        path = request.getfixturevalue("smollm2_path")
    else:
        path = synthetic(synthetic_dir, request.param, "f32")
    ids = text_ids(path, 64)
    return path, ids, llamatp_logits(path, ids)


def test_prompt_in_small_batches_matches_one_forward(model_and_ids: tuple[Path, list[int], torch.Tensor]) -> None:
    path, ids, one_shot = model_and_ids
    chunked = runtime(path, n_ubatch=7).engine.forward(ids, 0, all_logits=True)
    assert relative_error(chunked, one_shot) < 1e-5


def test_prompt_continued_later_matches_one_forward(model_and_ids: tuple[Path, list[int], torch.Tensor]) -> None:
    path, ids, one_shot = model_and_ids
    engine = runtime(path).engine
    first, rest = engine.forward(ids[:23], 0, all_logits=True), engine.forward(ids[23:], 23, all_logits=True)
    assert relative_error(torch.cat([first, rest]), one_shot) < 1e-5


def test_a_repeated_prompt_pass_gives_the_same_logits_each_time(model_and_ids: tuple[Path, list[int], torch.Tensor]) -> None:
    """Bench repetitions and perplexity chunks mark their passes as repeated (a CUDA graph on GPUs)."""
    path, ids, one_shot = model_and_ids
    engine = runtime(path, n_ubatch=16).engine
    for _ in range(3):
        assert relative_error(engine.forward(ids, 0, all_logits=True, repeated=True), one_shot) < 1e-5


def test_token_by_token_decode_matches_one_forward(model_and_ids: tuple[Path, list[int], torch.Tensor]) -> None:
    path, ids, one_shot = model_and_ids
    engine = runtime(path).engine
    rows = [engine.forward(ids[:1], 0)] + [engine.decode(token, pos) for pos, token in enumerate(ids[1:], start=1)]
    assert relative_error(torch.cat(rows), one_shot) < 1e-5


def test_only_the_last_row_without_all_logits(model_and_ids: tuple[Path, list[int], torch.Tensor]) -> None:
    path, ids, one_shot = model_and_ids
    last = runtime(path, n_ubatch=16).engine.forward(ids, 0)
    assert last.shape == (1, one_shot.shape[1])
    assert relative_error(last, one_shot[-1:]) < 1e-5


def test_causal_attention_matches_the_masked_form() -> None:
    """The fused prompt-attention path (used on GPUs) equals explicit masking, with a cached prefix."""
    from llamatp.model import causal_attention

    g = torch.Generator().manual_seed(3)
    T, L, n_q, n_kv, hd = 5, 12, 6, 2, 8
    q = torch.randn(T, n_q, hd, generator=g)
    keys, values = torch.randn(n_kv, L, hd, generator=g), torch.randn(n_kv, L, hd, generator=g)
    got = causal_attention(q, keys, values, 0.3)
    q_pos = torch.arange(L - T, L)
    visible = torch.arange(L)[None, :] <= q_pos[:, None]
    k = keys.repeat_interleave(n_q // n_kv, dim=0)
    v = values.repeat_interleave(n_q // n_kv, dim=0)
    scores = torch.einsum("thd,hld->htl", q, k) * 0.3
    expected = torch.einsum("htl,hld->thd", scores.masked_fill(~visible, float("-inf")).softmax(-1), v)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
