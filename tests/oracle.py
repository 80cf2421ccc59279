"""Independent reference computations for the tests: plain Python, one pair at a time, straight from the definitions
in docs/objective.md."""

from __future__ import annotations

import math
import re


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def adaptive_segments(length: int, m: int) -> list[int]:
    """The segment of each token: P = min(m, T) segments with boundaries b_j = floor(j * T / P), j = 0..P."""
    parts = min(m, length)
    boundaries = [math.floor(j * length / parts) for j in range(parts + 1)]
    segments = []
    for j in range(parts):
        segments += [j] * (boundaries[j + 1] - boundaries[j])
    return segments


def segments_of(length: int, granularity: str, k: int, m: int) -> list[int]:
    if granularity == "static":
        return [t // k for t in range(length)]
    return adaptive_segments(length, m)


def segment_rewards(values: list[float], segments: list[int], beta: float, count: int) -> list[float]:
    rewards = [0.0] * count
    for value, segment in zip(values, segments):
        rewards[segment] += beta * value
    return rewards


def segment_margins(
    chosen: list[float],
    rejected: list[float],
    *,
    beta: float,
    granularity: str = "adaptive",
    k: int = 1,
    m: int = 256,
    chosen_segments: list[int] | None = None,
    rejected_segments: list[int] | None = None,
    chosen_weights: list[float] | None = None,
    rejected_weights: list[float] | None = None,
) -> list[float]:
    """R_w(j) - R_l(j) for each of the pair's max(S_w, S_l) segments; explicit segments override the granularity."""
    if chosen_segments is None:
        chosen_segments = segments_of(len(chosen), granularity, k, m)
    if rejected_segments is None:
        rejected_segments = segments_of(len(rejected), granularity, k, m)
    chosen = [a * s for a, s in zip(chosen_weights or [1.0] * len(chosen), chosen)]
    rejected = [a * s for a, s in zip(rejected_weights or [1.0] * len(rejected), rejected)]
    count = max(chosen_segments[-1], rejected_segments[-1]) + 1
    chosen_rewards = segment_rewards(chosen, chosen_segments, beta, count)
    rejected_rewards = segment_rewards(rejected, rejected_segments, beta, count)
    return [r_w - r_l for r_w, r_l in zip(chosen_rewards, rejected_rewards)]


def pair_loss(
    chosen: list[float], rejected: list[float], *, eps: float = 0.0, reduction: str = "sum", **segmentation
) -> float:
    """ADPO loss of one pair from its unpadded per-token log-ratios, by the formula of docs/objective.md."""
    margins = segment_margins(chosen, rejected, **segmentation)
    loss = sum(-(1 - eps) * log_sigmoid(d) - eps * log_sigmoid(-d) for d in margins)
    return loss / len(margins) if reduction == "mean" else loss


def dpo_pair_loss(
    chosen: list[float],
    rejected: list[float],
    *,
    beta: float,
    eps: float = 0.0,
    chosen_weights: list[float] | None = None,
    rejected_weights: list[float] | None = None,
) -> float:
    """DPO loss of one pair: the whole (weighted) sum inside one log-sigmoid; with weights, cDPO (Lin et al.)."""
    chosen_sum = sum(a * s for a, s in zip(chosen_weights or [1.0] * len(chosen), chosen))
    rejected_sum = sum(a * s for a, s in zip(rejected_weights or [1.0] * len(rejected), rejected))
    margin = beta * (chosen_sum - rejected_sum)
    return -(1 - eps) * log_sigmoid(margin) - eps * log_sigmoid(-margin)


def split_steps(text: str, delimiter: str = "\n", pattern: str | None = None) -> list[str]:
    """The steps of a text: split after each delimiter (kept with the step it ends), or before each pattern match."""
    if pattern is None:
        pieces = text.split(delimiter)
        return [piece + delimiter for piece in pieces[:-1]] + [pieces[-1]]
    cuts = sorted({0, len(text), *(match.start() for match in re.finditer(pattern, text))})
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


def step_segments(token_ids: list[int], tokenizer, delimiter: str = "\n", pattern: str | None = None) -> list[int]:
    """The step of each token: the step in which the token's first non-whitespace character lies (its first
    character if it has only whitespace), found by decoding prefixes; a token without text goes with the token before
    it; steps numbered 0, 1, ... in the order the tokens reach them."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    text = decode(token_ids)
    char_step = []
    for j, step in enumerate(split_steps(text, delimiter, pattern)):
        char_step += [j] * len(step)
    steps = []
    for i in range(len(token_ids)):
        start, end = len(decode(token_ids[:i])), len(decode(token_ids[: i + 1]))
        visible = next((c for c in range(start, end) if not text[c].isspace()), start)
        steps.append(char_step[visible] if end > start else (steps[-1] if steps else None))
    first = next((step for step in steps if step is not None), 0)
    steps = [first if step is None else step for step in steps]
    order = {step: n for n, step in enumerate(dict.fromkeys(steps))}
    return [order[step] for step in steps]
