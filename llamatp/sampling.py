"""Pick the next token from logits with llama.cpp's default sampler chain.

The chain runs in llama.cpp's order: logit biases -> repetition penalties -> top-n-sigma -> top-k
-> typical -> top-p -> min-p -> XTC -> temperature (dynamic with --dynatemp-range) -> a random draw
from the softmax of what is left. Each step narrows a set of candidate tokens, and every
probability is taken over the candidates still in the set. With `--mirostat 1` or `2` the chain
is llama.cpp's Mirostat one instead: logit biases -> temperature -> Mirostat, which keeps the
draws' surprise near a target by a truncation it adjusts after each draw.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llamatp.errors import LlamatpError


@dataclass(frozen=True)
class SamplingParams:
    """llama.cpp's sampling flags (`--temp`, `--top-k`, ...) with its defaults."""

    temp: float = 0.8  # <= 0: greedy
    top_n_sigma: float = -1.0  # keep logits within n standard deviations of the best (--top-nsigma); <= 0: off
    top_k: int = 40  # <= 0: off
    typical_p: float = 1.0  # locally typical sampling (--typical); >= 1: off
    top_p: float = 0.95  # >= 1: off
    min_p: float = 0.05  # <= 0: off
    dynatemp_range: float = 0.0  # temperature from temp - range to temp + range by the entropy; 0: off
    dynatemp_exp: float = 1.0  # the entropy's exponent in that mapping (--dynatemp-exp)
    xtc_probability: float = 0.0  # how often XTC removes the likeliest tokens (--xtc-probability); 0: off
    xtc_threshold: float = 0.1  # ... those of at least this probability but the least of them; > 0.5: off
    repeat_penalty: float = 1.0  # 1: off
    repeat_last_n: int = 64  # tokens of history the penalties look at; 0: off, -1: all of it
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat: int = 0  # 1 or 2: Mirostat v1 or v2 in place of the chain (--mirostat); 0: off
    mirostat_ent: float = 5.0  # Mirostat's target surprise, bits (--mirostat-ent)
    mirostat_lr: float = 0.1  # how fast Mirostat follows it (--mirostat-lr)
    seed: int = -1  # -1: a random seed
    ignore_eos: bool = False  # never sample an end-of-generation token (llama.cpp's --ignore-eos)
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit) (--logit-bias)


class Sampler:
    """Draws tokens on the CPU; the same seed and inputs give the same tokens."""

    def __init__(self, params: SamplingParams, vocab_size: int, eog_ids: Sequence[int] = ()) -> None:
        self.params = params
        self.vocab_size = vocab_size
        self.eog_ids = torch.tensor(sorted(eog_ids), dtype=torch.long)  # banned by ignore_eos
        if any(not 0 <= token < vocab_size for token, _ in params.logit_bias):
            raise LlamatpError(f"--logit-bias: token ids run from 0 to {vocab_size - 1} in this vocabulary")
        self.generator = torch.Generator()
        if params.seed == -1:
            self.generator.seed()
        else:
            self.generator.manual_seed(params.seed)
        self.mu = 2 * params.mirostat_ent  # Mirostat's surprise bound, adjusted after each draw

    @property
    def seed(self) -> int:
        """The seed in use, the random one included (llama.cpp prints it)."""
        return self.generator.initial_seed()

    def describe(self) -> list[str]:
        """llama.cpp's lines on its sampler: the seed, the parameters, the chain."""
        p = self.params
        if p.mirostat:
            chain = ["logits", "logit-bias", "temp", "mirostat" if p.mirostat == 1 else "mirostat-v2"]
        else:
            chain = ["logits", "logit-bias", "penalties", "top-n-sigma", "top-k", "typical", "top-p", "min-p", "xtc",
                     "temp-ext", "dist"]
        return [
            f"sampler seed: {self.seed}",
            f"sampler params: repeat_last_n = {p.repeat_last_n}, repeat_penalty = {p.repeat_penalty:.3f}, "
            f"frequency_penalty = {p.frequency_penalty:.3f}, presence_penalty = {p.presence_penalty:.3f}, "
            f"top_k = {p.top_k}, top_p = {p.top_p:.3f}, min_p = {p.min_p:.3f}, "
            f"xtc_probability = {p.xtc_probability:.3f}, xtc_threshold = {p.xtc_threshold:.3f}, "
            f"typical_p = {p.typical_p:.3f}, top_n_sigma = {p.top_n_sigma:.3f}, temp = {p.temp:.3f}, "
            f"dynatemp_range = {p.dynatemp_range:.3f}, dynatemp_exp = {p.dynatemp_exp:.3f}, "
            f"mirostat = {p.mirostat}, mirostat_lr = {p.mirostat_lr:.3f}, mirostat_ent = {p.mirostat_ent:.3f}",
            "sampler chain: " + " -> ".join(chain),
        ]

    def sample(self, logits: torch.Tensor, history: Sequence[int]) -> int:
        """The next token, given the logits of the last position and the tokens so far."""
        if self.params.mirostat:
            return self._sample_mirostat(logits)
        token_ids, scaled_logits = self.candidates(logits, history)
        if token_ids.numel() == 1:
            return int(token_ids[0])
        choice = torch.multinomial(scaled_logits.softmax(0), 1, generator=self.generator)
        return int(token_ids[choice])

    def candidates(
        self, logits: torch.Tensor, history: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The token ids the chain keeps and their logits after penalties and temperature.

        With temp <= 0 only the best token is kept. `logits` may be longer than the
        vocabulary (padded rows) and live on any device; it is not modified.
        """
        params = self.params
        logits = self._biased(logits)
        self._apply_penalties(logits, history)
        if params.temp <= 0:
            best = logits.argmax().view(1)
            return best, logits[best]

        if params.top_n_sigma > 0:
            # llama.cpp's statistics: over the finite logits, the population standard deviation
            finite = logits[torch.isfinite(logits)]
            cutoff = finite.max() - params.top_n_sigma * finite.std(correction=0)
            logits = logits.masked_fill(logits < cutoff, float("-inf"))

        if 0 < params.top_k < logits.numel():
            logits, token_ids = torch.topk(logits, params.top_k)
        else:
            token_ids = torch.arange(logits.numel())

        if params.typical_p < 1:
            logits, token_ids = _typical(logits, token_ids, params.typical_p)

        if params.top_p < 1:
            logits, token_ids = _top_p(logits, token_ids, params.top_p)

        if params.min_p > 0:
            # p_i >= min_p * p_max, compared as logits so no softmax is needed
            kept = logits >= logits.max() + math.log(params.min_p)
            logits, token_ids = logits[kept], token_ids[kept]

        if params.xtc_probability > 0 and params.xtc_threshold <= 0.5 and logits.numel() > 1:
            if float(torch.rand(1, generator=self.generator)) <= params.xtc_probability:
                logits, token_ids = _exclude_top_choices(logits, token_ids, params.xtc_threshold)

        temp = self._temperature(logits)
        if temp <= 0:
            best = logits.argmax().view(1)
            return token_ids[best], logits[best]
        return token_ids, logits / temp

    def _temperature(self, logits: torch.Tensor) -> float:
        """--temp, or with --dynatemp-range that range around it, placed by the candidates'
        entropy (as a fraction of the most their number allows) to the power --dynatemp-exp."""
        params = self.params
        if params.dynatemp_range <= 0 or logits.numel() <= 1:
            return params.temp
        entropy = float(_entropy(logits.log_softmax(0)))
        low, high = max(0.0, params.temp - params.dynatemp_range), params.temp + params.dynatemp_range
        return low + (high - low) * (entropy / math.log(logits.numel())) ** params.dynatemp_exp

    def _biased(self, logits: torch.Tensor) -> torch.Tensor:
        """A float32 CPU copy of the vocabulary's logits, with the logit biases added and, under
        ignore_eos, end-of-generation tokens banned."""
        logits = logits[: self.vocab_size].to(device="cpu", dtype=torch.float32, copy=True)
        for token, bias in self.params.logit_bias:
            logits[token] += bias
        if self.params.ignore_eos:
            logits[self.eog_ids] = float("-inf")
        return logits

    def _sample_mirostat(self, logits: torch.Tensor) -> int:
        """llama.cpp's Mirostat: no penalties and no other filter. v2 keeps the tokens whose
        surprise (-log2 p) is at most mu; v1 the top k, k from the Zipf exponent that the 100 most
        likely tokens fit. Either way mu then moves by lr times the drawn token's surprise less the
        target."""
        params = self.params
        logits = self._biased(logits)
        if params.temp > 0:
            logits /= params.temp
        else:  # as llama.cpp's temperature sampler: only the best token is left
            logits = torch.where(logits == logits.max(), 0.0, float("-inf"))
        probs, order = logits.softmax(0).sort(descending=True)
        if params.mirostat == 1:
            keep = _mirostat_v1_top_k(probs, self.mu, self.vocab_size)
        else:
            keep = max(int((-probs.log2() <= self.mu).sum()), 1)
        probs = probs[:keep] / probs[:keep].sum()
        choice = int(torch.multinomial(probs, 1, generator=self.generator)) if keep > 1 else 0
        self.mu -= params.mirostat_lr * (-math.log2(float(probs[choice])) - params.mirostat_ent)
        return int(order[choice])

    def _apply_penalties(self, logits: torch.Tensor, history: Sequence[int]) -> None:
        params = self.params
        if params.repeat_last_n == 0 or (
            params.repeat_penalty == 1.0
            and params.frequency_penalty == 0.0
            and params.presence_penalty == 0.0
        ):
            return
        window = history if params.repeat_last_n < 0 else history[-params.repeat_last_n :]
        if len(window) == 0:
            return
        tokens, counts = torch.as_tensor(list(window), dtype=torch.long).unique(return_counts=True)
        seen = logits[tokens]
        # Dividing a negative logit would make the token more likely, so those are multiplied.
        seen = torch.where(seen <= 0, seen * params.repeat_penalty, seen / params.repeat_penalty)
        seen -= counts * params.frequency_penalty + params.presence_penalty
        logits[tokens] = seen


def _top_p(
    logits: torch.Tensor, token_ids: torch.Tensor, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shortest most-likely-first run of candidates whose probability reaches top_p."""
    log_total = logits.logsumexp(0)
    # A few hundred tokens usually hold the mass; sort the whole vocabulary only if they don't.
    head, order = logits.topk(min(256, logits.numel()))
    cumulative = (head - log_total).exp().cumsum(0)
    if cumulative[-1] < top_p:
        head, order = logits.sort(descending=True)
        cumulative = (head - log_total).exp().cumsum(0)
    keep = min(int((cumulative < top_p).sum()) + 1, head.numel())
    return head[:keep], token_ids[order[:keep]]


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Nats; a token of probability 0 (a -inf logit) adds nothing."""
    return -(log_probs.exp() * log_probs).nansum()


def _typical(
    logits: torch.Tensor, token_ids: torch.Tensor, typical_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Locally typical sampling: candidates ordered by how far their surprise (-log p) is from
    the distribution's entropy, the shortest run of them whose probability passes typical_p."""
    log_probs = logits.log_softmax(0)
    order = (-log_probs - _entropy(log_probs)).abs().argsort(stable=True)
    cumulative = log_probs.exp()[order].cumsum(0)
    keep = min(int((cumulative <= typical_p).sum()) + 1, order.numel())
    return logits[order[:keep]], token_ids[order[:keep]]


def _exclude_top_choices(
    logits: torch.Tensor, token_ids: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """XTC: of the candidates whose probability reaches the threshold, all but the least likely
    are removed (nothing is, if fewer than two reach it)."""
    logits, order = logits.sort(descending=True)
    above = int((logits.softmax(0) >= threshold).sum())
    first = max(above - 1, 0)
    return logits[first:], token_ids[order[first:]]


def _mirostat_v1_top_k(probs: torch.Tensor, mu: float, n_vocab: int) -> int:
    """How many of the sorted probabilities Mirostat v1 keeps: the Zipf exponent s estimated by
    least squares over the first 100, then k = (e 2^mu / (1 - n_vocab^-e))^(1/s), e = s - 1."""
    m = min(100, probs.numel())
    ranks = torch.arange(1, m, dtype=torch.float64)
    t = torch.log((ranks + 1) / ranks)
    b = torch.log(probs[: m - 1].double() / probs[1:m].double())
    s_hat = float((t * b).sum() / (t * t).sum())
    epsilon = s_hat - 1
    denominator = 1 - n_vocab ** (-epsilon) if 0 < s_hat < math.inf else 0.0
    if denominator == 0:  # nothing to fit (s = 1, or probabilities of 0 among the first 100): keep all
        return probs.numel()
    log_k = (math.log(epsilon / denominator) + mu * math.log(2)) / s_hat
    return min(max(int(math.exp(min(log_k, 60.0))), 1), probs.numel())
