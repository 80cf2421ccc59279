"""The `Grader`: the same verdicts as the verifier judging one completion at a time, each (answer, reference) judged
once, and MATH answers judged by worker processes when there are many."""

from __future__ import annotations

import random

from trl_adpo.pipeline import grading
from trl_adpo.pipeline.grading import Grader
from trl_adpo.pipeline.verifiers import VERIFIERS, Verifier


def test_each_answer_and_reference_is_judged_once_and_no_answer_is_wrong():
    judged = []

    def same(answer, reference):
        judged.append((answer, reference))
        return answer == reference

    verifier = Verifier(
        "counting", reference=str.strip, answer=lambda c: c.split()[-1] if c.split() else None, same=same
    )
    completions = ["so 4", "it is 4", "so 5", "", "so 4", "so 4"]
    references = ["4", "4", "4", "4", "5", "4"]
    with Grader(verifier) as grader:
        answers, verdicts = grader.grade(completions, references)
        assert answers == ["4", "4", "5", None, "4", "4"]
        assert verdicts == [True, True, False, False, False, True]
        assert judged == [("4", "4"), ("5", "4"), ("4", "5")]
        assert grader.grade(["then 5"], ["4"])[1] == [False] and len(judged) == 3  # known: not judged again


def test_math_answers_in_worker_processes_get_the_verdicts_of_one_at_a_time(monkeypatch):
    rng = random.Random(0)
    cases = []
    for problem in range(150):
        a, b = rng.randint(1, 40) + 50 * problem, rng.choice([2, 3, 4])
        for answer in (rf"\frac{{{a}}}{{{b}}}", rf"\dfrac{{{a}}}{{{b}}}", f"{a + 1}/{b}", str(a)):
            cases.append((f"so $\\boxed{{{answer}}}$", rf"\frac{{{a}}}{{{b}}}"))
    verifier = VERIFIERS["math"]
    references = [verifier.reference(reference) for _, reference in cases]
    expected = [verifier.is_correct(completion, reference) for (completion, _), reference in zip(cases, references)]
    pooled = []
    monkeypatch.setattr(grading, "ProcessPoolExecutor", _recording(grading.ProcessPoolExecutor, pooled))
    with Grader(verifier, processes=2) as grader:
        assert grader.grade([completion for completion, _ in cases], references)[1] == expected
    assert pooled == [2] and 0 < sum(expected) < len(expected)  # the pool judged them, and both verdicts occur


def _recording(pool_class, record: list):
    """`pool_class`, noting the number of workers of each pool made."""

    class Recorded(pool_class):
        def __init__(self, workers, **kwargs):
            record.append(workers)
            super().__init__(workers, **kwargs)

    return Recorded
