"""Verifiers: is a completion's final answer the reference answer?

A `Verifier` parses a dataset's reference answer, extracts a completion's final answer, and compares the two. Built
in (`VERIFIERS`):

- ``gsm8k``: the reference is the number after ``####``. A completion's answer is the number of its last stated
  answer (``#### N``, "The answer is N", "Final answer: N", "Answer: N", ``\\boxed{N}``), read after markdown
  emphasis and headers (``**72**``), ``$`` signs and ``\\text{}`` are removed, and with a unit after it ("12 apples",
  "5 hours and 30 minutes", read as 5.5); with no stated answer, the last number of the completion. Commas, a
  ``$``, a trailing ``.`` and ``%`` are ignored; numbers are equal when their values are (``18``, ``18.0``,
  ``1.8e1``); ``18.5`` and ``18`` are not.
- ``math``: the reference is the content of the last ``\\boxed{...}`` of a solution, or the answer text itself; a
  completion's answer is the content of its last ``\\boxed{...}`` (or ``\\fbox``, nested braces handled). Both go to
  Hugging Face's math-verify (the grader of TRL's accuracy reward: LaTeX parsed to sympy, compared symbolically and
  numerically), so equal values in other forms match (``\\frac{1}{2}`` and ``0.5``, ``1,000`` and ``1000``,
  ``\\sqrt2`` and ``\\sqrt{2}``, ``10\\%`` and ``10``, ``x=5`` and ``5``, ``1,2`` and ``2,1`` as sets, units dropped)
  and different values, texts or letters do not (``\\text{odd}`` and ``\\text{even}``, ``(A)`` and ``(C)``, an open
  interval and a closed one). This project's own rules, where math-verify alone is weaker: the last boxed answer is
  the one graded (MATH's convention); ``\\$`` currency signs are removed before parsing (math-verify reads ``\\$18.90``
  as nothing); an answer of more than `MAX_MATH_ANSWER` characters is wrong without being parsed, and parsing and
  comparing stop after `MATH_TIMEOUT` seconds, so that a pathological completion never hangs `evaluate` or `pairs`.
- ``arithmetic``: the offline chained-arithmetic task (`trl_adpo.examples.arithmetic`): the digit after the first
  ``answer``. A wrong chain ends on the right digit one time in ten by chance, so ``arithmetic_steps`` checks every
  step instead: the reference is the worked solution (the problems' ``solution`` column), and a completion is correct
  when its steps up to ``answer D`` are the same.

Your own: name ``module:attribute`` (`load_verifier`), where the attribute is a `Verifier` or a function
``(completion, reference) -> bool``; a function's "final answer", which cDPO's pair selection groups by, is the whole
stripped completion.
"""

from __future__ import annotations

import importlib
import logging
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache


@dataclass(frozen=True)
class Verifier:
    """How to check completions against reference answers.

    Attributes:
        name: the verifier's name in messages.
        reference: the reference answer of a dataset's answer text, normalised; None when it cannot be parsed.
        answer: the final answer of a completion, normalised; None when it has none.
        same: whether two normalised answers are equal.
    """

    name: str
    reference: Callable[[str], str | None]
    answer: Callable[[str], str | None]
    same: Callable[[str, str], bool] = operator.eq

    def is_correct(self, completion: str, reference: str) -> bool:
        """Whether `completion`'s final answer equals `reference` (already parsed by `self.reference`)."""
        answer = self.answer(completion)
        return answer is not None and self.same(answer, reference)


# --- GSM8K --------------------------------------------------------------------------------------------------------

NUMBER = r"-?\$?\s?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
NUMBERS = re.compile(NUMBER)
HOURS_AND_MINUTES = re.compile(rf"({NUMBER})\s*hours?,?\s*(?:and\s*)?({NUMBER})\s*minutes?", re.IGNORECASE)
STATED = re.compile(
    rf"(?:####|\bthe\s+(?:final\s+)?answer\s+is|\b(?:final\s+)?answer\s*[:=]|\\boxed\{{)\s*:?\s*({NUMBER})",
    re.IGNORECASE,
)
MARKUP = re.compile(r"\*\*|__|`|^#{1,3}(?=\s)|\\text\{|\\textbf\{|\\\(|\\\)|\\\[|\\\]", re.MULTILINE)


MAX_DIGITS = 50
"""Digits before or after the decimal point beyond which a number is no answer (judged wrong, a reference refused):
``1e5000`` would otherwise cost seconds to write out, or exceed Python's limit on the digits of an integer."""


def normalise_number(text: str) -> str | None:
    """A number's canonical text (no commas, no ``$``, no trailing zeros), or None if `text` is no number or one of
    more than `MAX_DIGITS` digits."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".").rstrip("%")
    if len(cleaned) > 4 * MAX_DIGITS:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or (value and abs(value.adjusted()) > MAX_DIGITS):
        return None
    value = value.normalize()
    return format(value, "f") if value != value.to_integral() else str(int(value))


def gsm8k_reference(text: str) -> str | None:
    """The number after ``####`` of a GSM8K answer (or the text itself, if it is a number)."""
    return normalise_number(text.split("####")[-1])


def stated_number(text: str, start: int) -> str | None:
    """The number at `start` of `text`, read as hours when "H hours and M minutes" follows from there."""
    compound = HOURS_AND_MINUTES.match(text, start)
    if compound:
        hours, minutes = (Decimal(normalise_number(group)) for group in compound.groups())
        return normalise_number(str(hours + minutes / 60))
    return normalise_number(NUMBERS.match(text, start).group(0))


def gsm8k_answer(completion: str) -> str | None:
    """The number of the last stated answer (see the module docstring), else the last number of the completion."""
    text = MARKUP.sub("", completion).replace("\\$", "$")
    stated = list(STATED.finditer(text))
    if stated:
        return stated_number(text, stated[-1].start(1))
    numbers = list(NUMBERS.finditer(text))
    return stated_number(text, numbers[-1].start()) if numbers else None


# --- MATH ---------------------------------------------------------------------------------------------------------

MAX_MATH_ANSWER = 500
"""Characters of a MATH answer beyond which it is judged wrong without being parsed."""
MATH_TIMEOUT = 2
"""Seconds math-verify may spend parsing one answer, and comparing two (its own timeouts, in the main thread)."""
# math-verify logs every timed-out expression, whole, as a warning: noise that can run to thousands of characters
logging.getLogger("math_verify").setLevel(logging.ERROR)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces handled; None if there is none
    or it is not closed."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        return None
    depth = 0
    for position in range(brace, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : position]
    return None


def latex_answer(text: str) -> str:
    """An answer's LaTeX for math-verify: stripped, without ``$`` delimiters and ``\\$`` currency signs."""
    return text.replace("\\$", "").replace("$", "").strip()


@lru_cache(maxsize=65536)
def parsed_math(answer: str) -> tuple:
    """math-verify's reading of a LaTeX answer (sympy objects and the text); empty when it cannot be parsed."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    if not answer or len(answer) > MAX_MATH_ANSWER:
        return ()
    return tuple(parse(f"${answer}$", [LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=MATH_TIMEOUT))


def math_reference(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` of a solution, or the answer text itself; None if math-verify cannot
    read it as mathematics (an empty or all-markup answer, a broken expression)."""
    boxed = last_boxed(text) if "\\boxed" in text or "\\fbox" in text else text
    answer = latex_answer(boxed) if boxed is not None else ""
    readings = [value for value in parsed_math(answer) if not isinstance(value, str) and str(value).strip()]
    return answer if readings else None


def math_answer(completion: str) -> str | None:
    boxed = last_boxed(completion)
    return latex_answer(boxed) or None if boxed is not None else None


def math_same(answer: str, reference: str) -> bool:
    """Whether math-verify judges `answer` equal to `reference` (as `math_answer` and `math_reference` give them)."""
    from math_verify import verify

    target, gold = parsed_math(answer), parsed_math(reference)
    return bool(target and gold) and verify(list(gold), list(target), timeout_seconds=MATH_TIMEOUT)


# --- the arithmetic task ------------------------------------------------------------------------------------------

ARITHMETIC_ANSWER = re.compile(r"answer (\d)\b")


def arithmetic_reference(text: str) -> str | None:
    text = str(text).strip()
    return text if re.fullmatch(r"\d", text) else None


def arithmetic_answer(completion: str) -> str | None:
    match = ARITHMETIC_ANSWER.search(completion)
    return match.group(1) if match else None


def arithmetic_solution(text: str) -> str | None:
    """A worked solution up to and including its first ``answer D``, spacing normalised; None if it has none."""
    match = ARITHMETIC_ANSWER.search(str(text))
    return " ".join(str(text)[: match.end()].split()) if match else None


VERIFIERS = {
    "gsm8k": Verifier("gsm8k", gsm8k_reference, gsm8k_answer),
    "math": Verifier("math", math_reference, math_answer, math_same),
    "arithmetic": Verifier("arithmetic", arithmetic_reference, arithmetic_answer),
    "arithmetic_steps": Verifier("arithmetic_steps", arithmetic_solution, arithmetic_solution),
}


def load_verifier(name: str) -> Verifier:
    """A built-in verifier by name, or a user's as ``module:attribute`` (a `Verifier`, or a function
    ``(completion, reference) -> bool``)."""
    if name in VERIFIERS:
        return VERIFIERS[name]
    if ":" not in name:
        raise ValueError(
            f"verifier {name!r} is unknown: use one of {sorted(VERIFIERS)}, or name your own as module:function."
        )
    module_name, attribute = name.split(":", 1)
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"verifier {name!r}: cannot import {attribute!r} from {module_name!r} ({error}).") from None
    if isinstance(found, Verifier):
        return found
    if not callable(found):
        raise ValueError(f"verifier {name!r} is a {type(found).__name__}: give a Verifier or a function.")
    return Verifier(
        name,
        reference=lambda text: str(text).strip() or None,
        answer=lambda completion: completion.strip(),
        same=lambda answer, reference: bool(found(answer, reference)),
    )
