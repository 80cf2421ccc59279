"""How problems are asked: built-in tasks and few-shot prompt templates.

A prompt is a few-shot prefix (exemplars drawn with a fixed seed from the training split, each a question and its
worked solution) followed by the template with the problem's question. The paper evaluates GSM8K 8-shot and MATH500
4-shot; the built-in tasks use those counts and the usual "Question: ... Answer:" / "Problem: ... Solution:" forms.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def gsm8k_solution(text: str) -> str:
    """A GSM8K worked solution as an exemplar: calculator notes removed, "#### N" read as "The answer is N."."""
    steps, _, answer = re.sub(r"<<[^>]*>>", "", text).partition("####")
    return f"{steps.strip()}\nThe answer is {answer.strip()}." if answer else steps.strip()


@dataclass(frozen=True)
class Task:
    """A dataset's columns, its verifier, and how its problems are asked.

    Attributes:
        verifier: the verifier's name (`trl_adpo.pipeline.verifiers.load_verifier`).
        question_column: the column with each problem's question.
        answer_column: the column with each problem's reference answer (as the verifier parses it).
        template: the prompt for one question; must contain ``{question}``.
        exemplar: one few-shot exemplar; ``{question}`` and ``{solution}``.
        solution_column: the column with an exemplar's worked solution.
        shots: exemplars in the prefix.
        stop: strings that end a completion (the start of a next question).
        format_solution: turns a worked solution into exemplar text.
    """

    verifier: str
    question_column: str
    answer_column: str
    template: str
    exemplar: str = "{question}{solution}\n\n"
    solution_column: str | None = None
    shots: int = 0
    stop: tuple[str, ...] = ()
    format_solution: Callable[[str], str] = str.strip


TASKS = {
    "gsm8k": Task(
        "gsm8k",
        "question",
        "answer",
        "Question: {question}\nAnswer:",
        "Question: {question}\nAnswer: {solution}\n\n",
        solution_column="answer",
        shots=8,
        stop=("\nQuestion:",),
        format_solution=gsm8k_solution,
    ),
    "math": Task(
        "math",
        "problem",
        "answer",
        "Problem: {question}\nSolution:",
        "Problem: {question}\nSolution: {solution}\n\n",
        solution_column="solution",
        shots=4,
        stop=("\nProblem:",),
    ),
    "arithmetic": Task("arithmetic", "prompt", "answer", "{question}", solution_column="solution"),
}
"""GSM8K (`openai/gsm8k`, 8-shot), MATH500 (`HuggingFaceH4/MATH-500`, 4-shot, exemplars from a MATH training split
with a `solution` column), and the offline arithmetic task (zero-shot)."""


def check_template(template: str, option: str, fields: Sequence[str] = ("question",)) -> None:
    """Raise naming `option` unless `template` has each of `fields` and no other."""
    found = set(re.findall(r"(?<!\{)\{(\w*)\}(?!\})", template))
    missing = [name for name in fields if name not in found]
    if missing:
        raise ValueError(f"{option} {template!r} has no {{{missing[0]}}} field: write where the {missing[0]} goes.")
    unknown = sorted(found - set(fields))
    if unknown:
        raise ValueError(f"{option} {template!r} has the unknown field {{{unknown[0]}}}; it takes {list(fields)}.")


def few_shot_prefix(
    questions: Sequence[str], solutions: Sequence[str], task: Task, shots: int, seed: int, exemplar: str
) -> str:
    """`shots` exemplars drawn with `seed` from (question, worked solution) rows, formatted with `exemplar`."""
    if shots == 0:
        return ""
    if shots > len(questions):
        raise ValueError(f"num_shots={shots}, but the exemplar split has only {len(questions)} rows.")
    chosen = random.Random(seed).sample(range(len(questions)), shots)
    return "".join(exemplar.format(question=questions[i], solution=task.format_solution(solutions[i])) for i in chosen)
