"""What grading costs: completions judged per second by the `math` and `gsm8k` verifiers, and the time of
pathological completions (a 20,000-character expression, deeply nested braces).

    python scripts/bench_verifiers.py            # 1,000 MATH-style and 1,000 GSM8K-style completions

The MATH-style completions are worked text ending in a boxed answer of a common form (integers, fractions, roots,
decimals, tuples, intervals, expressions), half of them equal to their reference in another form. Each answer is new
to the verifier's cache, as in an evaluation.
"""

from __future__ import annotations

import argparse
import random
import time

from trl_adpo.pipeline.verifiers import VERIFIERS, parsed_math


def math_case(rng: random.Random, index: int) -> tuple[str, str]:
    """A (completion, reference) pair; the index makes every answer distinct."""
    a, b = rng.randint(1, 9) + 10 * index, rng.randint(2, 9)
    forms = [
        (str(a), f"{a}.0"), (rf"\frac{{{a}}}{{{b}}}", rf"\dfrac{{{a}}}{{{b}}}"), (rf"{a}\sqrt{{{b}}}", rf"{a}\sqrt{b}"),
        (f"({a}, {b})", rf"\left( {a},{b} \right)"), (f"[{a}, {a + b})", f"[{a},{a + b})"),
        (f"x^2 + {a}x", f"x^{{2}}+{a}x"), (f"{a}.5", rf"\frac{{{2 * a + 1}}}{{2}}"),
    ]
    reference, equal = forms[index % len(forms)]
    answer = equal if index % 2 == 0 else f"{equal}+1"
    return f"We work it out step by step, so the result is $\\boxed{{{answer}}}$.", reference


def rate(verifier, cases: list[tuple[str, str]]) -> tuple[float, int]:
    references = [verifier.reference(reference) for _, reference in cases]
    started = time.perf_counter()
    correct = sum(verifier.is_correct(completion, reference) for (completion, _), reference in zip(cases, references))
    return len(cases) / (time.perf_counter() - started), correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(0)
    math_cases = [math_case(rng, i) for i in range(args.completions)]
    gsm8k_cases = [(f"First {i} + {i} = {2 * i}. The answer is **{2 * i}** apples.", f"#### {2 * i + i % 2}")
                   for i in range(args.completions)]
    parsed_math.cache_clear()
    print(f"{'verifier':<10} {'completions':>11} {'per second':>10} {'judged correct':>14}")
    for name, cases in (("math", math_cases), ("gsm8k", gsm8k_cases)):
        per_second, correct = rate(VERIFIERS[name], cases)
        print(f"{name:<10} {len(cases):>11} {per_second:>10.0f} {correct:>14}")
    reference = VERIFIERS["math"].reference("x")
    for label, completion in (
        ("20,000-character expression", r"\boxed{" + "+".join(f"x^{{{i}}}" for i in range(2500)) + "}"),
        ("200 nested braces", r"\boxed{" + "{" * 200 + "x" + "}" * 200 + "}"),
    ):
        started = time.perf_counter()
        VERIFIERS["math"].is_correct(completion, reference)
        print(f"pathological, {label}: judged in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
