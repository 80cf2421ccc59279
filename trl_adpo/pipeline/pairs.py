"""Preference pairs from verified samples, selected as cDPO selects them (Lin et al. 2025).

For each problem with both a correct and an incorrect sample: the most frequent correct final answer against the most
frequent wrong one, one sample of each (a sample without a final answer counts as the wrong answer "none"). Ties
between answers, and the sample among those with the chosen answer, are drawn with a random generator seeded by the
run's seed and the problem's id, so a problem's pair depends neither on the other problems nor on the order of the
samples.

The critical-token models' training sets, likewise per problem: one correct sample for the positive model, and for
the negative model the samples of the most frequent wrong answers that together make up at least half of the
problem's wrong samples.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass


def _completion(row: dict):
    """A sample's completion in its prompt's format: an assistant message after a conversational prompt."""
    if isinstance(row["prompt"], str):
        return row["completion"]
    return [{"role": "assistant", "content": row["completion"]}]


def _rng(seed: int, problem_id) -> random.Random:
    return random.Random(f"{seed}/{problem_id}")


def _by_problem(samples: list[dict]) -> dict:
    """Each problem's samples, in the order of their completions (so draws do not depend on the file's order)."""
    problems: dict = {}
    for row in samples:
        if row["completion"].strip():  # an empty completion can be no preference example
            problems.setdefault(row["problem_id"], []).append(row)
    return {problem: sorted(rows, key=lambda row: row["completion"]) for problem, rows in problems.items()}


def _answer_groups(rows: list[dict], rng: random.Random) -> list[list[dict]]:
    """The rows grouped by final answer, most frequent first; ties in a random order."""
    counts = Counter(str(row["answer"]) for row in rows)
    answers = sorted(counts, key=lambda answer: (-counts[answer], rng.random()))
    return [[row for row in rows if str(row["answer"]) == answer] for answer in answers]


@dataclass
class PairSummary:
    problems: int
    pairs: int
    without_correct: int
    without_incorrect: int

    def __str__(self) -> str:
        return (
            f"{self.pairs} pairs from {self.problems} problems ({self.without_correct} had no correct sample, "
            f"{self.without_incorrect} no incorrect one)"
        )


def select_pairs(samples: list[dict], seed: int = 0, per_problem: int = 1) -> tuple[list[dict], PairSummary]:
    """Up to `per_problem` (chosen, rejected) pairs per problem, in TRL's preference format, and a summary.

    The first pair is cDPO's (the most frequent correct answer against the most frequent wrong one). Further pairs
    (`per_problem` > 1) take the problem's other distinct wrong completions as rejected, most frequent answers first,
    each once, against its distinct correct completions in turn. Conversational samples (prompts that are messages)
    give conversational pairs: the completions become assistant messages."""
    if per_problem < 1:
        raise ValueError(f"pairs_per_problem must be >= 1, got {per_problem}.")
    pairs, without_correct, without_incorrect = [], 0, 0
    problems = _by_problem(samples)
    for problem_id, rows in problems.items():
        rng = _rng(seed, problem_id)
        correct = [row for row in rows if row["correct"]]
        wrong = [row for row in rows if not row["correct"]]
        without_correct += not correct
        without_incorrect += not wrong
        if not (correct and wrong):
            continue
        chosen = [rng.choice(_answer_groups(correct, rng)[0])]
        rejected = [rng.choice(_answer_groups(wrong, rng)[0])]
        if per_problem > 1:
            chosen += _distinct([row for group in _answer_groups(correct, rng) for row in group], chosen)
            rejected += _distinct([row for group in _answer_groups(wrong, rng) for row in group], rejected)
        for index, bad in enumerate(rejected[:per_problem]):
            good = chosen[index % len(chosen)]
            pairs.append(
                {
                    "problem_id": problem_id,
                    "prompt": good["prompt"],
                    "chosen": _completion(good),
                    "rejected": _completion(bad),
                }
            )
    return pairs, PairSummary(len(problems), len(pairs), without_correct, without_incorrect)


def _distinct(rows: list[dict], taken: list[dict]) -> list[dict]:
    """`rows` whose completions are not among `taken`'s nor repeated, in order."""
    seen = {row["completion"] for row in taken}
    found = []
    for row in rows:
        if row["completion"] not in seen:
            seen.add(row["completion"])
            found.append(row)
    return found


def critical_training_samples(samples: list[dict], seed: int = 0) -> list[dict]:
    """The positive and negative models' training rows (`prompt`, `completion`, `correct`), as cDPO selects them."""
    selected = []
    for problem_id, rows in _by_problem(samples).items():
        rng = _rng(seed, problem_id)
        correct = [row for row in rows if row["correct"]]
        wrong = [row for row in rows if not row["correct"]]
        if correct:
            selected.append(rng.choice(correct))
        covered = []
        for group in _answer_groups(wrong, rng):
            if 2 * len(covered) >= len(wrong):
                break
            covered += group
        selected += covered
    return [
        {
            "problem_id": row["problem_id"],
            "prompt": row["prompt"],
            "completion": _completion(row),
            "correct": row["correct"],
        }
        for row in selected
    ]
