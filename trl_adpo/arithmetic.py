"""A synthetic multi-step reasoning task with an exact verifier: chained arithmetic modulo 10.

A problem starts a variable at a digit and derives each next variable from the previous one::

    prompt:   a = 7 ; b = a + 5 ; c = b * 3 ; c = ?
    solution: b = 7 + 5 = 2 ; c = 2 * 3 = 6 ; answer 6

Every number is one word-level token. A wrong solution that goes astray at one step and computes consistently from
there shares its prefix with the right one, which is where token-level credit assignment should matter. It feeds
the offline quickstart (`save_quickstart`) and the reasoning benchmark.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .synthetic import save_tiny_model

VARIABLES = "abcdefghij"
OPERATIONS = {"+": lambda x, y: (x + y) % 10, "-": lambda x, y: (x - y) % 10, "*": lambda x, y: (x * y) % 10}
WORDS = [str(digit) for digit in range(10)] + list(VARIABLES) + ["=", ";", "?", "answer", *OPERATIONS]
ANSWER = re.compile(r"answer (\d)\b")


@dataclass(frozen=True)
class Problem:
    """A chain ``start, op_1 operand_1, ..., op_n operand_n``; each step applies one operation to the last value."""

    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def prompt(self) -> str:
        parts = [f"a = {self.start}"]
        parts += [f"{VARIABLES[i + 1]} = {VARIABLES[i]} {op} {operand}" for i, (op, operand) in enumerate(self.steps)]
        return " ; ".join(parts) + f" ; {VARIABLES[len(self.steps)]} = ?"

    @property
    def answer(self) -> int:
        value = self.start
        for op, operand in self.steps:
            value = OPERATIONS[op](value, operand)
        return value

    def solution(self, wrong_step: int | None = None, wrong_value: int | None = None) -> str:
        """The worked solution; with `wrong_step`, that step's result is `wrong_value` and later steps follow it."""
        value, parts = self.start, []
        for i, (op, operand) in enumerate(self.steps):
            result = OPERATIONS[op](value, operand)
            if i == wrong_step:
                result = wrong_value
            parts.append(f"{VARIABLES[i + 1]} = {value} {op} {operand} = {result}")
            value = result
        return " ; ".join(parts) + f" ; answer {value}"

    def is_correct(self, completion: str) -> bool:
        """Whether the completion's first `answer D` is this problem's answer."""
        match = ANSWER.search(completion)
        return match is not None and int(match.group(1)) == self.answer


def sample_problem(rng: random.Random, num_steps: int) -> Problem:
    steps = tuple((rng.choice(list(OPERATIONS)), rng.randrange(1, 10)) for _ in range(num_steps))
    return Problem(rng.randrange(10), steps)


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


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def save_quickstart(directory: str | Path) -> Path:
    """Build the offline quickstart in `directory`, unless it is there already.

    Writes `model/` (a tiny Llama and its word-level tokenizer, in HF format), `train.jsonl` (512 preference pairs)
    and `eval.jsonl` (64 pairs of other problems).
    """
    directory = Path(directory)
    if (directory / "eval.jsonl").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    save_tiny_model(directory / "model", WORDS, hidden_size=64, num_layers=2, num_heads=4)
    write_jsonl(preference_rows(512, seed=0), directory / "train.jsonl")
    write_jsonl(preference_rows(64, seed=1), directory / "eval.jsonl")
    return directory
