"""What grading costs: completions judged per second by the `math` and `gsm8k` verifiers, one by one and through the
pipeline's `Grader` (verdicts cached per answer, math-verify in worker processes), and the time of pathological
completions (a 20,000-character expression, deeply nested braces).

    python scripts/bench_verifiers.py            # 1,000 distinct answers; a file of 500 problems x 16 samples

Distinct answers: MATH-style completions (worked text ending in a boxed answer of a common form: integers, fractions,
roots, decimals, tuples, intervals, expressions), half of them equal to their reference in another form, each answer
new to the verifier, as no two completions of an evaluation share one.

A sampled file: what `trl-adpo sample` grades with `--n 16`. Each problem's 16 samples reach one of a few final
answers: its reference in two or three written forms (``\\frac{a}{b}``, ``\\dfrac{a}{b}``, a decimal) and three wrong
values, the most frequent first, as samples of one problem do. It is graded three ways, which must give the same
verdicts: one completion at a time (no cache), by a `Grader` in this process, and by a `Grader` with a worker
process per core. math-verify's parse of an answer is cached (`parsed_math`) in every way, as in the package;
the `Grader` adds a cache of verdicts and the worker processes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from trl_adpo.pipeline.grading import Grader
from trl_adpo.pipeline.verifiers import VERIFIERS, parsed_math


def math_case(rng: random.Random, index: int) -> tuple[str, str]:
    """A (completion, reference) pair; the index makes every answer distinct."""
    a, b = rng.randint(1, 9) + 10 * index, rng.randint(2, 9)
    forms = [
        (str(a), f"{a}.0"),
        (rf"\frac{{{a}}}{{{b}}}", rf"\dfrac{{{a}}}{{{b}}}"),
        (rf"{a}\sqrt{{{b}}}", rf"{a}\sqrt{b}"),
        (f"({a}, {b})", rf"\left( {a},{b} \right)"),
        (f"[{a}, {a + b})", f"[{a},{a + b})"),
        (f"x^2 + {a}x", f"x^{{2}}+{a}x"),
        (f"{a}.5", rf"\frac{{{2 * a + 1}}}{{2}}"),
    ]
    reference, equal = forms[index % len(forms)]
    answer = equal if index % 2 == 0 else f"{equal}+1"
    return f"We work it out step by step, so the result is $\\boxed{{{answer}}}$.", reference


def sampled_file(rng: random.Random, problems: int, samples: int) -> list[tuple[str, str]]:
    """(completion, reference) rows of `problems` x `samples`, each problem's answers drawn from a few, repeated."""
    rows = []
    for problem in range(problems):
        a, b = rng.randint(1, 50) + 100 * problem, rng.choice([2, 4, 5, 8])
        reference = rf"\frac{{{a}}}{{{b}}}"
        answers = [reference, rf"\dfrac{{{a}}}{{{b}}}", str(a / b), rf"\frac{{{a + 1}}}{{{b}}}", str(a), str(a * b)]
        weights = [6, 3, 1, 3, 2, 1]
        for sample in range(samples):
            answer = rng.choices(answers, weights)[0]
            rows.append((f"Sample {sample}: we simplify and find $\\boxed{{{answer}}}$.", reference))
    return rows


def rate(verifier, cases: list[tuple[str, str]]) -> tuple[float, list[bool]]:
    """Completions per second judged one at a time, and the verdicts."""
    references = [verifier.reference(reference) for _, reference in cases]
    started = time.perf_counter()
    verdicts = [verifier.is_correct(completion, reference) for (completion, _), reference in zip(cases, references)]
    return len(cases) / (time.perf_counter() - started), verdicts


def graded_rate(verifier, cases: list[tuple[str, str]], processes: int) -> tuple[float, list[bool]]:
    """Completions per second through a `Grader` (the pool's start-up included), and the verdicts."""
    references = [verifier.reference(reference) for _, reference in cases]
    started = time.perf_counter()
    with Grader(verifier, processes=processes) as grader:
        _, verdicts = grader.grade([completion for completion, _ in cases], references)
    return len(cases) / (time.perf_counter() - started), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=1000, help="distinct answers per verifier")
    parser.add_argument("--problems", type=int, default=500, help="problems of the sampled file")
    parser.add_argument("--samples", type=int, default=16, help="samples per problem of the sampled file")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way of grading the sampled file")
    args = parser.parse_args()
    rng = random.Random(0)
    math_cases = [math_case(rng, i) for i in range(args.completions)]
    gsm8k_cases = [
        (f"First {i} + {i} = {2 * i}. The answer is **{2 * i}** apples.", f"#### {2 * i + i % 2}")
        for i in range(args.completions)
    ]
    print("Distinct answers, one completion at a time:")
    print(f"  {'verifier':<10} {'completions':>11} {'per second':>10} {'judged correct':>14}")
    for name, cases in (("math", math_cases), ("gsm8k", gsm8k_cases)):
        parsed_math.cache_clear()
        per_second, verdicts = rate(VERIFIERS[name], cases)
        print(f"  {name:<10} {len(cases):>11} {per_second:>10.0f} {sum(verdicts):>14}")

    cases = sampled_file(rng, args.problems, args.samples)
    verifier = VERIFIERS["math"]
    unique = len({(verifier.answer(completion), reference) for completion, reference in cases})
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nA sampled file, math verifier: {args.problems} problems x {args.samples} samples = {len(cases)} "
        f"completions, {unique} distinct (answer, reference); the median of {args.repeats} runs each, every run "
        "with math-verify's parse cache emptied:"
    )
    print(f"  {'how':<40} {'per second':>10} {'speed-up':>8} {'verdicts as one by one':>22}")

    def median(measure) -> tuple[float, list[bool]]:
        runs = []
        for _ in range(args.repeats):
            parsed_math.cache_clear()
            runs.append(measure())
        return statistics.median(per_second for per_second, _ in runs), runs[0][1]

    baseline, expected = median(lambda: rate(verifier, cases))
    print(f"  {'one at a time (answers parsed once)':<40} {baseline:>10.0f} {1:>7.2f}x {'':>22}")
    for label, processes in (("Grader, this process", 1), (f"Grader, {cores} worker processes", cores)):
        per_second, verdicts = median(lambda: graded_rate(verifier, cases, processes))
        print(f"  {label:<40} {per_second:>10.0f} {per_second / baseline:>7.2f}x {str(verdicts == expected):>22}")

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
