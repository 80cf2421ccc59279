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


# --- the grading table: every verdict written out by hand ---------------------------------------------------------

MATCH, NO_MATCH = True, False
GRADING_CASES = [
    # MATH: equal values in other forms match
    ("math", r"\boxed{18.90}", r"\$18.90", MATCH, "money"),
    ("math", r"\boxed{1,000}", "1000", MATCH, "thousands separator"),
    ("math", r"\boxed{10\%}", "10", MATCH, "percent"),
    ("math", r"\boxed{3.0}", "3", MATCH, "a decimal point"),
    ("math", r"\boxed{\sqrt{2}}", r"\sqrt2", MATCH, "a short square root"),
    ("math", r"\boxed{x^2 + 1}", "x^{2}+1", MATCH, "an expression, spaced otherwise"),
    ("math", r"\boxed{5 \text{cm}^2}", "5", MATCH, "a unit"),
    ("math", r"\boxed{\frac{1}{2}}", "0.5", MATCH, "a fraction and its decimal"),
    ("math", r"The answer is $\boxed{\dfrac{14}{3}}$.", r"\frac{14}{3}", MATCH, r"\dfrac"),
    ("math", r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"(3,\frac{\pi}{2})", MATCH, r"\left( \right), a tuple"),
    ("math", r"\boxed{90^\circ}", "90", MATCH, "degrees"),
    ("math", r"\boxed{\text{(B)}}", "B", MATCH, "a multiple-choice letter"),
    ("math", r"\boxed{(-\infty, 3]}", r"(-\infty,3]", MATCH, "an interval"),
    ("math", r"\boxed{-7}", "-7", MATCH, "a negative number"),
    ("math", r"\boxed{1.5\times10^{3}}", "1500", MATCH, "scientific notation"),
    ("math", r"so \boxed{5}. Check: 2 + 3 = 5, done.", "5", MATCH, "text after the answer"),
    ("math", r"first \boxed{4}, corrected: \boxed{6}", "6", MATCH, "several boxed answers: the last"),
    ("math", r"\boxed{\text{odd}}", r"\text{odd}", MATCH, "a word"),
    ("math", r"\boxed{\{1, 2\}}", r"\{2, 1\}", MATCH, "a set in another order"),
    ("math", r"\boxed{0.75}", r"We find $x = \boxed{\dfrac{3}{4}}$.", MATCH, "a reference inside a solution"),
    # MATH: different values, words and letters do not
    ("math", r"\boxed{\text{odd}}", r"\text{even}", NO_MATCH, "another word"),
    ("math", r"\boxed{\text{(A)}}", r"\text{(C)}", NO_MATCH, "another letter"),
    ("math", r"\boxed{-3}", "3", NO_MATCH, "the sign"),
    ("math", r"\boxed{(1,2]}", "[1,2)", NO_MATCH, "interval ends"),
    ("math", r"\boxed{(1, 2)}", "(2, 1)", NO_MATCH, "a tuple in another order"),
    ("math", r"\boxed{B}", "C", NO_MATCH, "another bare letter"),
    ("math", r"\boxed{1.5\times10^{4}}", "1500", NO_MATCH, "scientific notation, off by ten"),
    ("math", "The answer is 5.", "5", NO_MATCH, "no boxed answer"),
    ("math", r"\boxed{5} then \boxed{6}", "5", NO_MATCH, "the last box counts"),
    ("math", "I could not solve it.", "5", NO_MATCH, "no answer at all"),
    ("math", r"\boxed{\frac{1}{3}}", "0.333", NO_MATCH, "a rounded decimal"),
    ("math", r"\boxed{18.91}", r"\$18.90", NO_MATCH, "money, a cent off"),
    ("math", r"\boxed{1,001}", "1000", NO_MATCH, "thousands, one off"),
    ("math", r"\boxed{2\sqrt{2}}", r"\sqrt{2}", NO_MATCH, "a factor"),
    ("math", r"\boxed{x^2 - 1}", "x^2+1", NO_MATCH, "a sign inside an expression"),
    ("math", r"\boxed{91^\circ}", "90", NO_MATCH, "degrees, one off"),
    ("math", r"\boxed{\dfrac{14}{5}}", r"\frac{14}{3}", NO_MATCH, "another denominator"),
    ("math", r"\boxed{\left( 3, \frac{\pi}{3} \right)}", r"(3,\frac{\pi}{2})", NO_MATCH, "a tuple's second value"),
    ("math", r"\boxed{}", "0", NO_MATCH, "an empty box"),
    ("math", r"\boxed{[1,2]}", "(1,2)", NO_MATCH, "closed against open"),
    # GSM8K: the stated answer, through markdown, units and dollars
    ("gsm8k", "The answer is **72**. That took 3 steps.", "#### 72", MATCH, "markdown bold, a number after"),
    ("gsm8k", "She sold 48 + 24 = 72 clips. The answer is 72.", "#### 72", MATCH, "the answer is"),
    ("gsm8k", "The answer is $72", "#### 72", MATCH, "a dollar sign"),
    ("gsm8k", "the final answer is: 72", "#### 72", MATCH, "the final answer is:"),
    ("gsm8k", "So 72 - 0 = 72\n#### 72", "#### 72", MATCH, "GSM8K's own ####"),
    ("gsm8k", "Altogether 24 + 48 = 72", "#### 72", MATCH, "no statement: the last number"),
    ("gsm8k", "The answer is 72.00.", "#### 72", MATCH, "trailing zeros"),
    ("gsm8k", "Final answer: 1,234,567 dollars", "#### 1234567", MATCH, "thousands and a unit"),
    ("gsm8k", "## Final answer\nAnswer: **18** apples", "#### 18", MATCH, "a markdown header, bold, a unit"),
    ("gsm8k", "The answer is 5 hours and 30 minutes", "#### 5.5", MATCH, "hours and minutes"),
    ("gsm8k", "Answer: -4", "#### -4", MATCH, "a negative number"),
    ("gsm8k", "#### 1.5e3", "#### 1500", MATCH, "scientific notation"),
    ("gsm8k", r"Therefore, the answer is $\boxed{25}$.", "#### 25", MATCH, "a boxed answer"),
    ("gsm8k", "First 10, then the answer is 72. Later: 1 2 3", "#### 72", MATCH, "text after the answer"),
    ("gsm8k", "The answer is 50%.", "#### 50", MATCH, "percent"),
    # GSM8K: other numbers do not
    ("gsm8k", "The answer is 720.", "#### 72", NO_MATCH, "a digit more"),
    ("gsm8k", "The answer is 7.2", "#### 72", NO_MATCH, "a decimal point"),
    ("gsm8k", "72 clips, so the answer is 73.", "#### 72", NO_MATCH, "the statement, not an earlier number"),
    ("gsm8k", "I do not know.", "#### 72", NO_MATCH, "no number at all"),
    ("gsm8k", "The answer is 72.5", "#### 72", NO_MATCH, "a fraction more"),
    ("gsm8k", "24 + 48 = 72 and then 10 more", "#### 72", NO_MATCH, "no statement: the last number is 10"),
    ("gsm8k", "The answer is **27**. That took 72 steps.", "#### 72", NO_MATCH, "bold statement, a later number"),
    ("gsm8k", "The answer is 5 hours and 30 minutes", "#### 5", NO_MATCH, "hours and minutes are 5.5"),
    ("gsm8k", "Answer: -4", "#### 4", NO_MATCH, "the sign"),
    ("gsm8k", "Final answer: 1,500", "#### 15", NO_MATCH, "a thousands separator is no decimal point"),
    ("gsm8k", "The answer is 15 apples; 3 were eaten", "#### 3", NO_MATCH, "the stated answer, not a later number"),
    ("gsm8k", "#### 1.5e4", "#### 1500", NO_MATCH, "scientific notation, off by ten"),
    ("gsm8k", "The answer is 50%.", "#### 5", NO_MATCH, "percent is no decimal shift"),
    ("gsm8k", "The answer is $0.50", "#### 50", NO_MATCH, "fifty cents"),
]


def test_the_grading_table_is_balanced_and_large():
    matching = sum(case[3] for case in GRADING_CASES)
    assert len(GRADING_CASES) >= 60 and abs(matching - (len(GRADING_CASES) - matching)) <= 2


@pytest.mark.parametrize("name,completion,reference,expected,what", GRADING_CASES, ids=[c[4] for c in GRADING_CASES])
def test_grading_verdicts(name, completion, reference, expected, what):
    verifier = VERIFIERS[name]
    parsed = verifier.reference(reference)
    assert parsed is not None, f"the reference {reference!r} must parse"
    assert verifier.is_correct(completion, parsed) is expected


@pytest.mark.parametrize("reference", ["", "  ", r"\text{}", r"\boxed{}", r"\mbox{ }", r"\frac{"])
def test_a_math_reference_that_cannot_be_parsed_is_refused(reference):
    assert MATH.reference(reference) is None


def test_pathological_math_completions_are_judged_within_seconds():
    """A 20,000-character expression is wrong without being parsed; deeply nested braces within the length limit
    stop at math-verify's timeout. (A guard against a hang, not a speed measurement: scripts/bench_verifiers.py.)"""
    import time

    long = r"\boxed{" + "+".join(f"x^{{{i}}}" for i in range(2500)) + "}"
    nested = r"\boxed{" + "{" * 200 + "x" + "}" * 200 + "}"
    assert len(long) > 20000
    for completion in (long, nested):
        started = time.perf_counter()
        assert not MATH.is_correct(completion, MATH.reference("x"))
        assert time.perf_counter() - started < 30


def test_arithmetic_answers():
    assert ARITHMETIC.is_correct("c = 7 + 5 = 2 ; answer 2", ARITHMETIC.reference("2"))
    assert not ARITHMETIC.is_correct("c = 7 + 5 = 2 ; answer 3 ; answer 2", "2")  # the first answer counts
    assert not ARITHMETIC.is_correct("c = 7 + 5 = 2", "2")
    assert ARITHMETIC.reference("12") is None and ARITHMETIC.reference(7) == "7"


def test_arithmetic_steps_checks_every_step_not_only_the_answer():
    steps = VERIFIERS["arithmetic_steps"]
    reference = steps.reference("c = 7 + 5 = 2 ; d = 2 * 7 = 4 ; answer 4")
    assert steps.is_correct("c = 7 + 5 = 2 ;  d = 2 * 7 = 4 ; answer 4 <eos> more", reference)  # spacing, text after
    assert not steps.is_correct("c = 7 + 5 = 3 ; d = 3 * 7 = 4 ; answer 4", reference)  # the right digit by chance
    assert ARITHMETIC.is_correct("c = 7 + 5 = 3 ; d = 3 * 7 = 4 ; answer 4", "4")  # which the answer alone accepts
    assert steps.reference("no answer here") is None


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
        ("gsm9k", r"verifier 'gsm9k' is unknown: use one of \['arithmetic', 'arithmetic_steps', 'gsm8k', 'math'\]"),
        ("no_such_module:f", r"verifier 'no_such_module:f': cannot import 'f'"),
        ("test_verifiers:GSM8K_NOT_HERE", "cannot import 'GSM8K_NOT_HERE'"),
        ("test_verifiers:ARITHMETIC_ANSWERS", "is a tuple: give a Verifier or a function"),
    ],
)
def test_bad_verifier_names(name, message):
    with pytest.raises(ValueError, match=message):
        load_verifier(name)


ARITHMETIC_ANSWERS = ("1", "2")
