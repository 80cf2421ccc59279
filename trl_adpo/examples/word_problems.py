"""Simple arithmetic word problems with exact answers, for the real-model demo (`configs/smollm2_demo.yaml`).

Each problem tells a short story of operations on small whole numbers (one, by default)::

    Mia has 17 apples. She buys 9 more apples. How many apples does Mia have now?

The `question` column is the story, `answer` the number (which the gsm8k verifier reads), `solution` a worked
solution ending in "The answer is N.". SmolLM2-135M-Instruct, asked through its chat template, answers about
29% of the one-operation problems right greedily and 12% of its samples at temperature 0.7 (48 problems): right often
enough and wrong often enough for verified on-policy preference pairs.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..pipeline.io import write_jsonl

NAMES = [("Mia", "She"), ("Tom", "He"), ("Ana", "She"), ("Leo", "He"), ("Zoe", "She"), ("Sam", "He")]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "cards"]


def word_problem(rng: random.Random, num_operations: int) -> dict[str, str]:
    """One problem of `num_operations` (1-3) steps: a start, then additions, removals or a doubling/tripling."""
    name, pronoun = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    total = rng.randint(3, 20)
    story = [f"{name} has {total} {item}."]
    steps = []
    for _ in range(num_operations):
        kinds = ["add"] + (["remove"] if total > 1 else []) + (["multiply"] if total <= 30 else [])
        kind = rng.choice(kinds)
        if kind == "add":
            amount = rng.randint(2, 12)
            story.append(f"{pronoun} buys {amount} more {item}.")
            steps.append(f"{total} + {amount} = {total + amount}")
            total += amount
        elif kind == "remove":
            amount = rng.randint(1, total - 1)
            story.append(f"{pronoun} gives {amount} {item} to a friend.")
            steps.append(f"{total} - {amount} = {total - amount}")
            total -= amount
        else:
            factor = rng.choice([2, 3])
            story.append(f"Then the number of {item} {pronoun.lower()} has {'doubles' if factor == 2 else 'triples'}.")
            steps.append(f"{total} * {factor} = {total * factor}")
            total *= factor
    story.append(f"How many {item} does {name} have now?")
    solution = "\n".join(steps) + f"\nThe answer is {total}."
    return {"question": " ".join(story), "answer": str(total), "solution": solution}


def word_problem_rows(count: int, seed: int, operations: tuple[int, ...] = (1,)) -> list[dict[str, str]]:
    """`count` problems, each of a number of operations drawn from `operations`."""
    rng = random.Random(seed)
    return [word_problem(rng, rng.choice(operations)) for _ in range(count)]


def save_word_problems(
    directory: str | Path, train: int = 256, heldout: int = 500, operations: tuple[int, ...] = (1,)
) -> Path:
    """Write `problems.jsonl` (to sample pairs from) and `heldout.jsonl` (other problems, to evaluate on), each
    problem of a number of operations drawn from `operations`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_jsonl(word_problem_rows(train, seed=0, operations=operations), directory / "problems.jsonl")
    write_jsonl(word_problem_rows(heldout, seed=1, operations=operations), directory / "heldout.jsonl")
    return directory


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write problems.jsonl and heldout.jsonl of word problems.")
    parser.add_argument("directory")
    parser.add_argument("--train", type=int, default=256, help="problems to sample pairs from")
    parser.add_argument("--heldout", type=int, default=500, help="other problems, to evaluate on")
    parser.add_argument(
        "--operations",
        type=int,
        nargs="+",
        default=[1],
        choices=[1, 2, 3],
        help="operations per problem, drawn from these (repeat one to weigh it)",
    )
    args = parser.parse_args()
    print(save_word_problems(args.directory, args.train, args.heldout, tuple(args.operations)))
