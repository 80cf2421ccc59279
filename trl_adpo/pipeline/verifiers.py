"""Verifiers: is a completion's final answer the reference answer?

A `Verifier` parses a dataset's reference answer, extracts a completion's final answer, and compares the two after
normalising both. Built in (`VERIFIERS`):

- ``gsm8k``: the reference is the number after ``####``. A completion's answer is the number after its last "The
  answer is" (or "####"), else its last number. Commas, a ``$``, a trailing ``.`` and a trailing ``%`` are ignored;
  numbers are equal when their values are (``18``, ``18.0`` and ``18.00`` are equal; ``18.5`` and ``18`` are not).
- ``math``: the reference is the content of the last ``\\boxed{...}`` of a solution, or the answer text itself; a
  completion's answer is the content of its last ``\\boxed{...}`` (nested braces handled; ``\\fbox`` too). Both are
  compared after removing spaces, ``\\left``/``\\right``, ``\\!``, ``\\,``, ``$`` and a trailing ``.``, reading
  ``\\dfrac``/``\\tfrac`` as ``\\frac``, ``\\frac12`` as ``\\frac{1}{2}``, and dropping trailing degrees
  (``^\\circ``, ``^{\\circ}``) and a trailing ``\\text{...}`` or ``\\mbox{...}`` unit. Not equal: different forms of
  one value (``0.5`` and ``\\frac{1}{2}``, ``\\frac{2}{4}`` and ``\\frac{1}{2}``, ``x=5`` and ``5``), and
  reorderings (``1,2`` and ``2,1``).
- ``arithmetic``: the offline chained-arithmetic task (`trl_adpo.examples.arithmetic`): the digit after the first
  ``answer``.

Your own: name ``module:attribute`` (`load_verifier`), where the attribute is a `Verifier` or a function
``(completion, reference) -> bool``; a function's "final answer", which cDPO's pair selection groups by, is the whole
stripped completion.
"""

from __future__ import annotations

import importlib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


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

NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")
ANSWER_IS = re.compile(r"(?:the (?:final )?answer is|####)\s*:?\s*(-?\$?\s?[\d.,]+)", re.IGNORECASE)


def normalise_number(text: str) -> str | None:
    """A number's canonical text (no commas, no ``$``, no trailing zeros), or None if `text` is no number."""
    cleaned = text.strip().replace(",", "").replace("$", "").replace(" ", "").rstrip(".").rstrip("%")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    value = value.normalize()
    return format(value, "f") if value != value.to_integral() else str(int(value))


def gsm8k_reference(text: str) -> str | None:
    """The number after ``####`` of a GSM8K answer (or the text itself, if it is a number)."""
    return normalise_number(text.split("####")[-1])


def gsm8k_answer(completion: str) -> str | None:
    """The number after the last "The answer is" (or ``####``), else the last number of the completion."""
    stated = ANSWER_IS.findall(completion)
    if stated:
        return normalise_number(stated[-1])
    numbers = NUMBER.findall(completion)
    return normalise_number(numbers[-1]) if numbers else None


# --- MATH ---------------------------------------------------------------------------------------------------------


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


UNIT = re.compile(r"\\(?:text|mbox|mathrm)\{[^{}]*\}$")
SHORT_FRACTION = re.compile(r"\\frac(\d)(\d)")
SHORT_FRACTION_DENOMINATOR = re.compile(r"\\frac\{([^{}]*)\}(\d)")


def normalise_latex(text: str) -> str:
    """A LaTeX answer with the spacing and notation differences listed in the module docstring removed."""
    text = text.strip()
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("$", ""),
                     ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^{\\circ}", ""), ("^\\circ", "")):
        text = text.replace(old, new)
    text = re.sub(r"\s+", "", text).rstrip(".")
    text = UNIT.sub("", text)
    text = SHORT_FRACTION.sub(r"\\frac{\1}{\2}", text)
    return SHORT_FRACTION_DENOMINATOR.sub(r"\\frac{\1}{\2}", text)


def math_reference(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` of a solution, or the answer text itself."""
    boxed = last_boxed(text) if "\\boxed" in text or "\\fbox" in text else text
    return normalise_latex(boxed) if boxed is not None and boxed.strip() else None


def math_answer(completion: str) -> str | None:
    boxed = last_boxed(completion)
    return normalise_latex(boxed) if boxed is not None else None


# --- the arithmetic task ------------------------------------------------------------------------------------------

ARITHMETIC_ANSWER = re.compile(r"answer (\d)\b")


def arithmetic_reference(text: str) -> str | None:
    text = str(text).strip()
    return text if re.fullmatch(r"\d", text) else None


def arithmetic_answer(completion: str) -> str | None:
    match = ARITHMETIC_ANSWER.search(completion)
    return match.group(1) if match else None


VERIFIERS = {
    "gsm8k": Verifier("gsm8k", gsm8k_reference, gsm8k_answer),
    "math": Verifier("math", math_reference, math_answer),
    "arithmetic": Verifier("arithmetic", arithmetic_reference, arithmetic_answer),
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
