"""Grading many completions: each (final answer, reference) judged once per run, slow verifiers in worker processes.

Many samples of a problem reach the same final answer, so a `Grader` keeps the verdict of every (answer, reference)
it has judged and judges only new ones. The `math` verifier (math-verify, which parses LaTeX into sympy) takes
milliseconds per answer; when a call brings at least `POOL_MIN_NEW` new ones, they are judged by a pool of worker
processes, one per CPU core, each keeping math-verify's own time limit per answer (`MATH_TIMEOUT`). The other built-in
verifiers are regular expressions, judged in the calling process, as are a user's (which may not survive pickling).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from .verifiers import VERIFIERS, Verifier

POOLED_VERIFIERS = ("math",)
"""Built-in verifiers slow enough that worker processes pay (scripts/bench_verifiers.py)."""
POOL_MIN_NEW = 256
"""New (answer, reference) pairs in one call from which the pool is used (it takes about a second to start)."""


def _same(verifier_name: str, pairs: list[tuple[str, str]]) -> list[bool]:
    """In a worker: the verdicts of a chunk of (answer, reference) pairs by a built-in verifier."""
    same = VERIFIERS[verifier_name].same
    return [bool(same(answer, reference)) for answer, reference in pairs]


class Grader:
    """Verdicts of completions by `verifier`, cached per (answer, reference) for the grader's lifetime.

    Use it as a context manager (or call `close`) so that its worker processes end with it.
    """

    def __init__(self, verifier: Verifier, processes: int | None = None):
        self.verifier = verifier
        self.processes = processes or len(os.sched_getaffinity(0))
        self.verdicts: dict[tuple[str, str], bool] = {}
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def same(self, answers: Sequence[str | None], references: Sequence[str]) -> list[bool]:
        """Whether each final answer (None: the completion has none, which is wrong) equals its reference."""
        pairs = [(answer, reference) for answer, reference in zip(answers, references) if answer is not None]
        new = list(dict.fromkeys(pair for pair in pairs if pair not in self.verdicts))
        if new:
            self.verdicts.update(zip(new, self._judge(new)))
        return [
            answer is not None and self.verdicts[(answer, reference)] for answer, reference in zip(answers, references)
        ]

    def grade(self, completions: Sequence[str], references: Sequence[str]) -> tuple[list[str | None], list[bool]]:
        """Each completion's final answer and whether it equals its reference (parsed by `verifier.reference`)."""
        answers = [self.verifier.answer(completion) for completion in completions]
        return answers, self.same(answers, references)

    def _judge(self, pairs: list[tuple[str, str]]) -> list[bool]:
        pooled = self.verifier.name in POOLED_VERIFIERS and VERIFIERS.get(self.verifier.name) is self.verifier
        if not pooled or self.processes < 2 or len(pairs) < POOL_MIN_NEW:
            return [bool(self.verifier.same(answer, reference)) for answer, reference in pairs]
        if self._pool is None:  # spawned, not forked: the parent holds torch's and the tokenizers' threads
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        size = -(-len(pairs) // (4 * self.processes))
        chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
        return [
            verdict for chunk in self._pool.map(_same, [self.verifier.name] * len(chunks), chunks) for verdict in chunk
        ]
