"""A synthetic multi-step reasoning task with an exact verifier: chained arithmetic modulo 10.

A problem gives the first variables a digit each and derives every next one from two earlier ones::

    prompt:   a = 7 ; b = 5 ; c = a + b ; d = c * a ; d = ?
    solution: c = 7 + 5 = 2 ; d = 2 * 7 = 4 ; answer 4

Every number is one word-level token. A wrong solution that goes astray at one step and computes consistently from
there shares its prefix with the right one, which is where token-level credit assignment should matter. It feeds
the offline quickstart (`save_quickstart`) and the reasoning benchmark.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..pipeline.io import write_jsonl
from .tiny import save_tiny_model

VARIABLES = "abcdefghij"
OPERATIONS = {"+": lambda x, y: (x + y) % 10, "-": lambda x, y: (x - y) % 10, "*": lambda x, y: (x * y) % 10}
WORDS = [str(digit) for digit in range(10)] + list(VARIABLES) + ["=", ";", "?", "answer", *OPERATIONS]
ANSWER = re.compile(r"answer (\d)\b")


@dataclass(frozen=True)
class Problem:
    """Digits for the first variables, then steps ``(op, i, j)``: the next variable is ``var_i op var_j`` mod 10."""

    initial: tuple[int, ...]
    steps: tuple[tuple[str, int, int], ...]

    @property
    def prompt(self) -> str:
        parts = [f"{VARIABLES[i]} = {value}" for i, value in enumerate(self.initial)]
        first = len(self.initial)
        parts += [f"{VARIABLES[first + n]} = {VARIABLES[i]} {op} {VARIABLES[j]}" for n, (op, i, j) in enumerate(self.steps)]
        return " ; ".join(parts) + f" ; {VARIABLES[first + len(self.steps) - 1]} = ?"

    def _values(self, wrong_step: int | None = None, wrong_value: int | None = None) -> list[int]:
        values = list(self.initial)
        for n, (op, i, j) in enumerate(self.steps):
            values.append(wrong_value if n == wrong_step else OPERATIONS[op](values[i], values[j]))
        return values

    @property
    def answer(self) -> int:
        return self._values()[-1]

    def solution(self, wrong_step: int | None = None, wrong_value: int | None = None) -> str:
        """The worked solution; with `wrong_step`, that step's result is `wrong_value` and later steps follow it."""
        values, first = self._values(wrong_step, wrong_value), len(self.initial)
        parts = [
            f"{VARIABLES[first + n]} = {values[i]} {op} {values[j]} = {values[first + n]}"
            for n, (op, i, j) in enumerate(self.steps)
        ]
        return " ; ".join(parts) + f" ; answer {values[-1]}"

    def is_correct(self, completion: str) -> bool:
        """Whether the completion's first `answer D` is this problem's answer."""
        match = ANSWER.search(completion)
        return match is not None and int(match.group(1)) == self.answer


def sample_problem(rng: random.Random, num_steps: int, num_initial: int = 2) -> Problem:
    """Random digits for the first `num_initial` variables, then `num_steps` steps over any earlier variables."""
    initial = tuple(rng.randrange(10) for _ in range(num_initial))
    steps = tuple(
        (rng.choice(list(OPERATIONS)), rng.randrange(num_initial + n), rng.randrange(num_initial + n))
        for n in range(num_steps)
    )
    return Problem(initial, steps)


def wrong_solution(problem: Problem, rng: random.Random) -> str:
    """A solution that goes wrong at one random step and computes consistently from there: a wrong answer."""
    while True:
        step = rng.randrange(len(problem.steps))
        solution = problem.solution(step, rng.randrange(10))
        if not problem.is_correct(solution):
            return solution


def preference_rows(count: int, seed: int, num_steps: int = 3) -> list[dict[str, str]]:
    """Pairs of a correct (chosen) and a wrong (rejected) worked solution, in TRL's standard preference format."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        problem = sample_problem(rng, num_steps)
        rows.append({"prompt": problem.prompt, "chosen": problem.solution(), "rejected": wrong_solution(problem, rng)})
    return rows


def problem_rows(count: int, seed: int, num_steps: int = 3) -> list[dict[str, str]]:
    """Problems for sampling and evaluation (`trl-adpo sample --task arithmetic`): `prompt`, `answer` (the digit) and
    `solution` (the worked solution)."""
    rng = random.Random(seed)
    problems = [sample_problem(rng, num_steps) for _ in range(count)]
    return [{"prompt": p.prompt, "answer": str(p.answer), "solution": p.solution()} for p in problems]


def save_quickstart(directory: str | Path) -> Path:
    """Build the offline quickstart in `directory`, unless it is there already.

    Writes `model/` (a tiny Llama and its word-level tokenizer, in HF format), `train.jsonl` (512 preference pairs),
    `eval.jsonl` (64 pairs of other problems), and `problems.jsonl` / `heldout.jsonl` (256 and 128 problems with
    their answers, for `trl-adpo sample` and `trl-adpo evaluate --task arithmetic`).
    """
    directory = Path(directory)
    if (directory / "heldout.jsonl").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    save_tiny_model(directory / "model", WORDS, hidden_size=64, num_layers=2, num_heads=4)
    write_jsonl(preference_rows(512, seed=0), directory / "train.jsonl")
    write_jsonl(preference_rows(64, seed=1), directory / "eval.jsonl")
    write_jsonl(problem_rows(256, seed=2), directory / "problems.jsonl")
    write_jsonl(problem_rows(128, seed=3), directory / "heldout.jsonl")
    return directory
