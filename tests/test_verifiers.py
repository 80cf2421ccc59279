"""The verifiers on hand-written completions: each rule, and the answers that must not match."""

from __future__ import annotations

import pytest

from trl_adpo.pipeline.verifiers import VERIFIERS, Verifier, last_boxed, load_verifier

GSM8K = VERIFIERS["gsm8k"]
MATH = VERIFIERS["math"]
ARITHMETIC = VERIFIERS["arithmetic"]


@pytest.mark.parametrize(
    "answer_text,reference",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
        ("He pays 1,200 + 300 = 1500\n#### 1,500", "1500"),
        ("#### -3", "-3"),
        ("#### 0.50", "0.5"),
    ],
)
def test_gsm8k_reference_is_the_number_after_the_hashes(answer_text, reference):
    assert GSM8K.reference(answer_text) == reference


@pytest.mark.parametrize(
    "completion",
    [
        "She sold 48 + 24 = 72 clips. The answer is 72.",
        "The answer is $72",
        "the final answer is: 72",
        "So 72 - 0 = 72\n#### 72",
        "Altogether 24 + 48 = 72",  # no statement: the last number
        "The answer is 72.00.",
        "First 10, then the answer is 72. Later I wrote 5 more numbers: 1 2 3",  # the statement wins
    ],
)
def test_gsm8k_completions_that_match(completion):
    assert GSM8K.is_correct(completion, "72")


@pytest.mark.parametrize(
    "completion",
    [
        "The answer is 720.",
        "The answer is 7.2",
        "72 clips, so the answer is 73.",  # the statement, not an earlier number
        "I do not know.",  # no number at all
        "The answer is 72.5",
        "24 + 48 = 72 and then 10 more",  # the last number is 10
    ],
)
def test_gsm8k_completions_that_must_not_match(completion):
    assert not GSM8K.is_correct(completion, "72")


def test_gsm8k_commas_and_dollars_in_large_answers():
    assert GSM8K.is_correct("The answer is $1,234,567.", GSM8K.reference("#### 1234567"))
    assert GSM8K.reference("no number here") is None


@pytest.mark.parametrize(
    "text,content",
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}} and then \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        ("\\fbox{x^{2}}", "x^{2}"),
        ("\\boxed{ {a}+{b} }", " {a}+{b} "),
        ("no box", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed_handles_nested_braces(text, content):
    assert last_boxed(text) == content


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("The answer is $\\boxed{\\dfrac{14}{3}}$.", "\\frac{14}{3}"),
        ("\\boxed{\\tfrac12}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}2}", "\\frac{1}{2}"),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3,\\frac{\\pi}{2})"),
        ("\\boxed{90^\\circ}", "90"),
        ("\\boxed{90^{\\circ}}", "90"),
        ("\\boxed{12\\text{ cm}}", "12"),
        ("\\boxed{x + 1.}", "x+1"),
        ("\\boxed{\\!\\,5}", "5"),
    ],
)
def test_math_completions_that_match(completion, reference):
    assert MATH.is_correct(completion, MATH.reference(reference))


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("\\boxed{0.5}", "\\frac{1}{2}"),  # another form of the value
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}"),  # not reduced
        ("\\boxed{x=5}", "5"),
        ("\\boxed{2,1}", "1,2"),  # order matters
        ("The answer is 5.", "5"),  # no box
        ("\\boxed{5} then \\boxed{6}", "5"),  # the last box counts
    ],
)
def test_math_completions_that_must_not_match(completion, reference):
    assert not MATH.is_correct(completion, MATH.reference(reference))


def test_math_reference_from_a_solution_or_an_answer():
    assert MATH.reference("We get $\\boxed{\\dfrac{3}{4}}$ in the end.") == "\\frac{3}{4}"
    assert MATH.reference("\\dfrac{3}{4}") == "\\frac{3}{4}"
    assert MATH.reference("  ") is None


def test_arithmetic_answers():
    assert ARITHMETIC.is_correct("c = 7 + 5 = 2 ; answer 2", ARITHMETIC.reference("2"))
    assert not ARITHMETIC.is_correct("c = 7 + 5 = 2 ; answer 3 ; answer 2", "2")  # the first answer counts
    assert not ARITHMETIC.is_correct("c = 7 + 5 = 2", "2")
    assert ARITHMETIC.reference("12") is None and ARITHMETIC.reference(7) == "7"


def shout(completion: str, reference: str) -> bool:
    return completion.upper() == reference.upper()


CUSTOM = Verifier("custom", reference=str.strip, answer=lambda c: c.split()[-1] if c.split() else None)


def test_a_users_verifier_by_module_and_name():
    function = load_verifier("test_verifiers:shout")
    assert function.is_correct("  yes ", "YES") and not function.is_correct("no", "yes")
    assert function.answer("  yes ") == "yes"  # a plain function's final answer is the stripped completion
    assert load_verifier("test_verifiers:CUSTOM") is CUSTOM


@pytest.mark.parametrize(
    "name,message",
    [
        ("gsm9k", r"verifier 'gsm9k' is unknown: use one of \['arithmetic', 'gsm8k', 'math'\]"),
        ("no_such_module:f", r"verifier 'no_such_module:f': cannot import 'f'"),
        ("test_verifiers:GSM8K_NOT_HERE", "cannot import 'GSM8K_NOT_HERE'"),
        ("test_verifiers:ARITHMETIC_ANSWERS", "is a tuple: give a Verifier or a function"),
    ],
)
def test_bad_verifier_names(name, message):
    with pytest.raises(ValueError, match=message):
        load_verifier(name)


ARITHMETIC_ANSWERS = ("1", "2")
