"""The sampler follows llama.cpp's chain: penalties -> top-n-sigma -> top-k -> typical -> top-p -> min-p ->
XTC -> temperature -> draw."""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
import torch

from llamatp.errors import LlamatpError
from llamatp.sampling import Sampler, SamplingParams

# Every filter off, temperature 1: the candidates are the whole vocabulary, logits untouched.
NO_FILTERS = SamplingParams(temp=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=0)


def make_sampler(vocab_size: int, **changes: float) -> Sampler:
    return Sampler(replace(NO_FILTERS, **changes), vocab_size)


def candidate_logits(
    sampler: Sampler, logits: torch.Tensor, history: Sequence[int] = ()
) -> dict[int, float]:
    token_ids, scaled = sampler.candidates(logits, history)
    return dict(zip(token_ids.tolist(), scaled.tolist(), strict=True))


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_defaults_are_llama_cpp_defaults() -> None:
    assert SamplingParams() == SamplingParams(
        temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0, repeat_last_n=64,
        frequency_penalty=0.0, presence_penalty=0.0, seed=-1,
    )  # fmt: skip


@pytest.mark.parametrize("temp", [0.0, -1.0])
def test_zero_or_negative_temperature_is_greedy(temp: float) -> None:
    sampler = Sampler(SamplingParams(temp=temp, seed=3), vocab_size=1000)
    for trial in range(5):
        logits = torch.randn(1000, generator=torch.Generator().manual_seed(trial))
        assert sampler.sample(logits, []) == int(logits.argmax())


def test_top_k_one_always_picks_the_argmax() -> None:
    sampler = make_sampler(50, top_k=1, temp=5.0)
    logits = torch.randn(50, generator=torch.Generator().manual_seed(1))
    assert {sampler.sample(logits, []) for _ in range(200)} == {int(logits.argmax())}


def test_top_k_keeps_the_k_most_likely() -> None:
    logits = torch.randn(300, generator=torch.Generator().manual_seed(2))
    kept = candidate_logits(make_sampler(300, top_k=7), logits)
    assert set(kept) == set(logits.argsort(descending=True)[:7].tolist())


def test_min_p_drops_tokens_below_p_times_the_best_probability() -> None:
    probs = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.05, 0.03, 0.02])
    for min_p in (0.06, 0.2, 0.3, 0.5):
        kept = candidate_logits(make_sampler(7, min_p=min_p), probs.log())
        assert set(kept) == {i for i, p in enumerate(probs.tolist()) if p >= min_p * 0.40}


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    probs = [0.05, 0.5, 0.15, 0.3]  # sorted: 0.5 (id 1), 0.3 (id 3), 0.15 (id 2), 0.05 (id 0)
    expected = {0.4: {1}, 0.7: {1, 3}, 0.9: {1, 3, 2}, 0.99: {0, 1, 2, 3}}
    for top_p, ids in expected.items():
        assert set(candidate_logits(make_sampler(4, top_p=top_p), logits_of(probs))) == ids


def test_top_p_on_a_flat_distribution_over_many_tokens() -> None:
    probs = torch.rand(1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.5
    probs /= probs.sum()
    ranked = sorted(range(1000), key=lambda i: -probs[i].item())
    for top_p in (0.2, 0.9):  # reached within the 256 most likely tokens, and not
        mass, expected = 0.0, set()
        for i in ranked:
            expected.add(i)
            mass += probs[i].item()
            if mass >= top_p:
                break
        assert set(candidate_logits(make_sampler(1000, top_p=top_p), probs.log().float())) == expected


def test_top_p_measures_mass_among_the_top_k_survivors() -> None:
    # After top-k=2 the survivors have 0.5/0.8 = 0.625 and 0.375: top-p 0.6 keeps only the best,
    # where over the full vocabulary it would need two tokens.
    probs = [0.5, 0.3, 0.15, 0.05]
    assert set(candidate_logits(make_sampler(4, top_p=0.6), logits_of(probs))) == {0, 1}
    assert set(candidate_logits(make_sampler(4, top_k=2, top_p=0.6), logits_of(probs))) == {0}


def test_top_n_sigma_keeps_logits_within_n_population_deviations_of_the_best() -> None:
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0, float("-inf")])  # finite: mean 2, deviation sqrt(2)
    for n, ids in {0.5: {0}, 1.0: {0, 1}, 2.0: {0, 1, 2}, 3.0: {0, 1, 2, 3, 4}}.items():
        kept = candidate_logits(make_sampler(6, top_n_sigma=n, min_p=1e-9), logits)
        assert set(kept) == ids


@pytest.mark.parametrize("typical_p", [0.2, 0.5, 0.9, 0.99])
def test_typical_keeps_the_tokens_transformers_typical_warper_keeps(typical_p: float) -> None:
    from transformers import TypicalLogitsWarper

    for trial in range(5):
        logits = torch.randn(500, generator=torch.Generator().manual_seed(trial)) * 3
        kept = candidate_logits(make_sampler(500, typical_p=typical_p), logits)
        warped = TypicalLogitsWarper(mass=typical_p)(torch.zeros(1, 1, dtype=torch.long), logits[None].clone())[0]
        assert set(kept) == set(torch.isfinite(warped).nonzero().flatten().tolist())


def test_typical_keeps_the_tokens_nearest_the_entropy_not_the_most_likely() -> None:
    # Entropy 1.22 nats; surprise 0.69 (id 0, 0.53 away), 1.61 (ids 1 and 2, 0.39 away), 2.30 (id 3).
    # Nearest first: ids 1 and 2 (mass 0.4), then id 0 (0.9), then id 3.
    logits = logits_of([0.5, 0.2, 0.2, 0.1])
    assert set(candidate_logits(make_sampler(4, typical_p=0.3), logits)) == {1, 2}
    assert set(candidate_logits(make_sampler(4, typical_p=0.5), logits)) == {0, 1, 2}


def test_xtc_excludes_all_but_the_least_likely_of_the_tokens_above_the_threshold() -> None:
    logits = logits_of([0.4, 0.3, 0.2, 0.06, 0.04])
    assert set(candidate_logits(make_sampler(5, xtc_probability=1.0, xtc_threshold=0.1), logits)) == {2, 3, 4}
    assert set(candidate_logits(make_sampler(5, xtc_probability=1.0, xtc_threshold=0.35), logits)) == set(range(5))
    for off in ({"xtc_probability": 0.0}, {"xtc_probability": 1.0, "xtc_threshold": 0.6}):
        assert set(candidate_logits(make_sampler(5, **off), logits)) == set(range(5))


def test_xtc_acts_on_a_draw_with_its_probability() -> None:
    sampler = make_sampler(5, xtc_probability=0.3, xtc_threshold=0.1)
    logits = logits_of([0.4, 0.3, 0.2, 0.06, 0.04])
    excluded = sum(len(candidate_logits(sampler, logits)) == 3 for _ in range(2000))
    assert 0.26 < excluded / 2000 < 0.34


def test_mirostat_v2_keeps_the_tokens_of_surprise_up_to_mu_and_moves_mu_toward_the_target() -> None:
    # Surprises 1, 2, 3 and 3 bits; a target of 1 bit starts mu at 2: tokens 0 and 1 are kept.
    logits = logits_of([0.5, 0.25, 0.125, 0.125])
    still = Sampler(replace(NO_FILTERS, mirostat=2, mirostat_ent=1.0, mirostat_lr=0.0), 4)
    counts = Counter(still.sample(logits, []) for _ in range(3000))
    assert set(counts) == {0, 1} and 0.62 < counts[0] / 3000 < 0.71  # 2/3 after renormalizing
    moving = Sampler(replace(NO_FILTERS, mirostat=2, mirostat_ent=1.0, mirostat_lr=0.1), 4)
    token = moving.sample(logits, [])
    surprise = -math.log2({0: 2 / 3, 1: 1 / 3}[token])
    assert moving.mu == pytest.approx(2.0 - 0.1 * (surprise - 1.0))


def test_mirostat_v1_keeps_the_top_k_its_zipf_fit_gives() -> None:
    # A Zipf distribution of exponent s: the fit recovers s, and k = (e 2^mu / (1 - n^-e))^(1/s).
    n, s, tau = 1000, 1.3, 3.0
    probs = 1 / torch.arange(1, n + 1, dtype=torch.float64) ** s
    logits = (probs / probs.sum()).log().float()
    e = s - 1
    k = int((e * 2 ** (2 * tau) / (1 - n ** -e)) ** (1 / s))
    sampler = Sampler(replace(NO_FILTERS, mirostat=1, mirostat_ent=tau, mirostat_lr=0.0), n)
    drawn = {sampler.sample(logits, []) for _ in range(3000)}
    assert max(drawn) == k - 1 and 1 < k < 50


def test_mirostat_applies_no_penalties_as_in_llama_cpp() -> None:
    sampler = Sampler(replace(NO_FILTERS, mirostat=2, repeat_penalty=1e9, temp=0.0), 3)
    assert sampler.sample(logits_of([0.7, 0.2, 0.1]), history=[0]) == 0


def test_logit_biases_are_added_before_everything_else() -> None:
    logits = logits_of([0.5, 0.3, 0.2])
    biased = candidate_logits(make_sampler(3, logit_bias=((2, 1.5), (0, float("-inf"))), top_k=2), logits)
    assert set(biased) == {1, 2} and biased[2] == pytest.approx(math.log(0.2) + 1.5)


def test_a_logit_bias_for_a_token_outside_the_vocabulary_is_an_error() -> None:
    with pytest.raises(LlamatpError, match="--logit-bias: token ids run from 0 to 2"):
        make_sampler(3, logit_bias=((3, 1.0),))


def test_dynamic_temperature_follows_the_normalized_entropy() -> None:
    def temperature(logits: torch.Tensor, **changes: float) -> float:
        kept = candidate_logits(make_sampler(4, temp=1.0, dynatemp_range=0.5, **changes), logits)
        return float(logits[0]) / kept[0]  # what the candidates' logits were divided by

    assert temperature(torch.full((4,), 2.0)) == pytest.approx(1.5)  # the most entropy: temp + range
    assert temperature(torch.tensor([2.0, -40.0, -40.0, -40.0])) == pytest.approx(0.5)  # none: temp - range
    half = logits_of([0.5, 0.5, 1e-12, 1e-12])  # entropy ln 2 of at most ln 4
    assert temperature(half, dynatemp_exp=2.0) == pytest.approx(0.5 + 1.0 * 0.5**2, rel=1e-4)


def test_the_sampler_describes_itself_as_llama_cpp_does() -> None:
    lines = Sampler(SamplingParams(seed=7), 10).describe()
    assert lines[0] == "sampler seed: 7"
    assert "top_k = 40, top_p = 0.950, min_p = 0.050" in lines[1] and "mirostat = 0" in lines[1]
    assert lines[2] == ("sampler chain: logits -> logit-bias -> penalties -> top-n-sigma -> top-k -> typical -> "
                        "top-p -> min-p -> xtc -> temp-ext -> dist")
    mirostat = Sampler(SamplingParams(seed=7, mirostat=2), 10).describe()
    assert mirostat[2] == "sampler chain: logits -> logit-bias -> temp -> mirostat-v2"


def test_temperature_divides_the_surviving_logits() -> None:
    logits = torch.tensor([1.0, -2.0, 0.5])
    assert candidate_logits(make_sampler(3, temp=0.5), logits) == {0: 2.0, 1: -4.0, 2: 1.0}


def test_draws_follow_the_renormalized_softmax_of_the_candidates() -> None:
    probs = [0.5, 0.3, 0.15, 0.04, 0.01]
    sampler = make_sampler(5, min_p=0.1, temp=0.7, seed=11)
    draws = Counter(sampler.sample(logits_of(probs), []) for _ in range(4000))
    # min-p 0.1 keeps probabilities >= 0.05; temperature 0.7 raises the rest to the power 1/0.7
    weights = {i: p ** (1 / 0.7) for i, p in enumerate(probs) if p >= 0.05}
    total = sum(weights.values())
    assert set(draws) == set(weights)
    for token, weight in weights.items():
        assert draws[token] / 4000 == pytest.approx(weight / total, abs=0.03)


def test_repeat_frequency_and_presence_penalties_match_llama_cpp() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, 0.0])
    history = [2, 0, 1, 1]
    sampler = make_sampler(
        5, repeat_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25, repeat_last_n=3
    )
    # Window: the last 3 tokens, [0, 1, 1]; token 2 is outside it and keeps its logit.
    # token 0 (positive, seen once):  2.0 / 2 - 1 * 0.5 - 0.25 = 0.25
    # token 1 (negative, seen twice): -1.0 * 2 - 2 * 0.5 - 0.25 = -3.25
    assert candidate_logits(sampler, logits, history) == {0: 0.25, 1: -3.25, 2: 0.5, 3: 3.0, 4: 0.0}


def test_repeat_last_n_minus_one_covers_all_history_and_zero_disables() -> None:
    logits = torch.tensor([2.0, 1.0, 4.0])
    history = [2, 0, 0, 0]
    whole = make_sampler(3, repeat_penalty=2.0, repeat_last_n=-1)
    assert candidate_logits(whole, logits, history) == {0: 1.0, 1: 1.0, 2: 2.0}
    disabled = make_sampler(3, repeat_penalty=2.0, repeat_last_n=0)
    assert candidate_logits(disabled, logits, history) == {0: 2.0, 1: 1.0, 2: 4.0}


def test_greedy_picks_the_argmax_after_penalties() -> None:
    sampler = Sampler(SamplingParams(temp=0.0, repeat_penalty=1.1), vocab_size=3)
    logits = torch.tensor([2.0, 1.9, 0.0])
    assert sampler.sample(logits, []) == 0
    assert sampler.sample(logits, [0]) == 1  # 2.0 / 1.1 < 1.9


def test_padded_logits_beyond_the_vocabulary_are_never_sampled() -> None:
    logits = torch.cat([torch.zeros(10), torch.full((6,), 100.0)])
    sampler = make_sampler(10, seed=5)
    assert all(sampler.sample(logits, []) < 10 for _ in range(100))


def test_the_callers_logits_are_left_unchanged() -> None:
    logits = torch.tensor([2.0, -1.0, 3.0])
    before = logits.clone()
    make_sampler(3, repeat_penalty=2.0, temp=0.5).sample(logits, [0, 1])
    assert torch.equal(logits, before)


def draw_sequence(seed: int) -> list[int]:
    sampler = Sampler(SamplingParams(top_k=0, top_p=1.0, min_p=0.0, temp=1.0, seed=seed), 100)
    logits = torch.zeros(100)
    return [sampler.sample(logits, []) for _ in range(40)]


def test_same_seed_gives_the_same_tokens_and_different_seeds_differ() -> None:
    assert draw_sequence(42) == draw_sequence(42)
    assert draw_sequence(42) != draw_sequence(43)
    assert Sampler(SamplingParams(seed=42), 100).seed == 42


def test_seed_minus_one_picks_a_random_seed() -> None:
    seeds = {Sampler(SamplingParams(seed=-1), 100).seed for _ in range(3)}
    assert len(seeds) > 1


def test_large_vocabulary_with_defaults_keeps_at_most_the_top_40() -> None:
    vocab_size = 151_936
    logits = torch.randn(vocab_size, generator=torch.Generator().manual_seed(0)) * 3
    token_ids, scaled = Sampler(SamplingParams(seed=1), vocab_size).candidates(logits, [])
    assert 1 <= token_ids.numel() <= 40
    assert set(token_ids.tolist()) <= set(logits.topk(40).indices.tolist())
    assert torch.allclose(scaled, logits[token_ids] / 0.8)


@pytest.mark.parametrize("temp", [0.0, 1.0])
def test_ignore_eos_never_samples_an_end_of_generation_token(temp: float) -> None:
    """llama.cpp's --ignore-eos: an end-of-generation token's logit is -inf, even where it is
    the most likely token; without it, it keeps its chance."""
    logits = logits_of([0.05, 0.9, 0.05])
    eog = [1]
    ignoring = Sampler(replace(NO_FILTERS, temp=temp, ignore_eos=True), 3, eog)
    assert candidate_logits(ignoring, logits).get(1, -math.inf) == -math.inf
    assert all(ignoring.sample(logits, []) != 1 for _ in range(50))
    assert candidate_logits(Sampler(replace(NO_FILTERS, temp=temp), 3, eog), logits)[1] > -math.inf
