"""Independent reference computations for the tests: plain Python, one pair at a time, straight from ADPO_SPEC.md."""

from __future__ import annotations

import math


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def segment_of(t: int, length: int, granularity: str, k: int, m: int) -> int:
    if granularity == "static":
        return t // k
    return math.floor(t * min(m, length) / length)


def segment_count(length: int, granularity: str, k: int, m: int) -> int:
    return math.ceil(length / k) if granularity == "static" else min(m, length)


def segment_rewards(values: list[float], beta: float, granularity: str, k: int, m: int, count: int) -> list[float]:
    rewards = [0.0] * count
    for t, value in enumerate(values):
        rewards[segment_of(t, len(values), granularity, k, m)] += beta * value
    return rewards


def segment_margins(
    chosen: list[float], rejected: list[float], *, beta: float, granularity: str, k: int = 1, m: int = 1
) -> list[float]:
    """R_w(j) - R_l(j) for each of the pair's max(S_w, S_l) segments."""
    count = max(segment_count(len(chosen), granularity, k, m), segment_count(len(rejected), granularity, k, m))
    chosen_rewards = segment_rewards(chosen, beta, granularity, k, m, count)
    rejected_rewards = segment_rewards(rejected, beta, granularity, k, m, count)
    return [r_w - r_l for r_w, r_l in zip(chosen_rewards, rejected_rewards)]


def pair_loss(
    chosen: list[float],
    rejected: list[float],
    *,
    beta: float,
    granularity: str,
    k: int = 1,
    m: int = 1,
    eps: float = 0.0,
    reduction: str = "sum",
) -> float:
    """ADPO loss of one pair from its unpadded per-token log-ratios, by the spec's formula."""
    margins = segment_margins(chosen, rejected, beta=beta, granularity=granularity, k=k, m=m)
    loss = sum(-(1 - eps) * log_sigmoid(d) - eps * log_sigmoid(-d) for d in margins)
    return loss / len(margins) if reduction == "mean" else loss


def dpo_pair_loss(chosen: list[float], rejected: list[float], *, beta: float, eps: float = 0.0) -> float:
    """DPO (cDPO when eps > 0) loss of one pair: the whole sum inside one log-sigmoid."""
    margin = beta * (sum(chosen) - sum(rejected))
    return -(1 - eps) * log_sigmoid(margin) - eps * log_sigmoid(-margin)
