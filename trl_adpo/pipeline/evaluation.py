"""Accuracy on verified problems: greedy (one completion) or, with `n` samples, pass@k and majority vote.

The accuracy's 95% interval is over problems: Wilson's score interval with one sample per problem, and with several
the normal interval of the mean of the problems' shares of correct samples (their samples are not independent).
pass@k is the unbiased estimator of Chen et al. 2021 from `n` samples, ``1 - C(n - c, k) / C(n, k)`` with `c`
correct; majority vote takes the most frequent final answer among the samples (ties: the first reached) and checks it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .grading import Grader
from .problems import Problem


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (by default) Wilson score interval of a proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int, rng: np.random.Generator) -> dict:
    """The mean of `a - b` over seeds and problems (two ``(seeds, problems)`` arrays of 0/1 verdicts of the same
    problems), with a 95% bootstrap interval that resamples seeds and problems: the same draws for both, so that the
    difference is paired."""
    difference = a.astype(float) - b.astype(float)
    seeds, problems = difference.shape
    draws = [
        difference[rng.integers(0, seeds, seeds)][:, rng.integers(0, problems, problems)].mean()
        for _ in range(resamples)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"mean": float(difference.mean()), "low": float(low), "high": float(high)}


def first_verdicts(path: str | Path) -> list[bool]:
    """The verdict on each problem's first sample (the greedy one) in an evaluation file of `trl-adpo evaluate`."""
    return [problem["correct"][0] for problem in json.loads(Path(path).read_text())["problems"]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_answer(answers: list[str | None]) -> str | None:
    """The most frequent final answer (None if no sample has one); ties go to the answer reached first."""
    counts = Counter(answer for answer in answers if answer is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(answer for answer in answers if answer is not None and counts[answer] == best)


@dataclass
class Evaluation:
    """Per-problem results and the summary figures."""

    problems: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def __str__(self) -> str:
        s = self.summary
        lines = [
            f"accuracy {s['accuracy']:.2%} (95% interval {s['accuracy_low']:.2%} - {s['accuracy_high']:.2%}) on "
            f"{s['problems']} problems, {s['samples_per_problem']} sample(s) each"
        ]
        if s["samples_per_problem"] > 1:
            lines.append(
                f"majority vote {s['majority_vote']:.2%}; "
                + ", ".join(f"pass@{k} {value:.2%}" for k, value in s["pass_at_k"].items())
            )
        return "\n".join(lines)


def score(problems: list[Problem], completions: list[list[str]], grader: Grader) -> Evaluation:
    """Verify each problem's completions and summarise.

    `accuracy` is the share of correct samples (with one greedy sample per problem, greedy accuracy; with several,
    pass@1), with its 95% interval over problems.
    """
    flat = [(problem.reference, sample) for problem, samples in zip(problems, completions) for sample in samples]
    answers, verdicts = grader.grade([sample for _, sample in flat], [reference for reference, _ in flat])
    offsets = list(itertools.accumulate((len(samples) for samples in completions), initial=0))
    spans = list(zip(offsets, offsets[1:]))
    votes = grader.same([majority_answer(answers[a:b]) for a, b in spans], [problem.reference for problem in problems])
    results = [
        {
            "problem_id": problem.id,
            "reference": problem.reference,
            "completions": samples,
            "answers": answers[a:b],
            "correct": verdicts[a:b],
            "majority_correct": vote,
        }
        for problem, samples, (a, b), vote in zip(problems, completions, spans, votes)
    ]
    n = len(completions[0]) if completions else 0
    shares = [sum(r["correct"]) / n for r in results]
    accuracy = sum(shares) / len(shares) if shares else 0.0
    if n == 1:
        low, high = wilson_interval(round(sum(shares)), len(shares))
    else:
        spread = math.sqrt(sum((x - accuracy) ** 2 for x in shares) / max(len(shares) - 1, 1) / max(len(shares), 1))
        low, high = max(0.0, accuracy - 1.96 * spread), min(1.0, accuracy + 1.96 * spread)
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, n) if k <= n})
    summary = {
        "problems": len(results),
        "samples_per_problem": n,
        "accuracy": accuracy,
        "accuracy_low": low,
        "accuracy_high": high,
        "majority_vote": sum(r["majority_correct"] for r in results) / len(results) if results else 0.0,
        "pass_at_k": {k: sum(pass_at_k(n, sum(r["correct"]), k) for r in results) / len(results) for k in ks},
    }
    return Evaluation(results, summary)
