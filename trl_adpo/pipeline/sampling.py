"""Verified samples: `n` completions per problem from a model, each checked against the reference answer.

Problems go to the model in fixed batches (batch `b` holds problems ``b * batch_size`` onwards) and batch `b` is
sampled with the seed ``seed * 100003 + b``, so a batch's samples do not depend on what ran before it. Each finished
batch is appended to the output (one JSON line per sample). An interrupted run, restarted with the same options,
keeps the batches it finished, drops a half-written one (and a partial last line), and goes on: it writes the same
rows as a run that was never interrupted.

The options that define a run (model, problems and a hash of their prompts and references, sampling options, seed,
batch size) are recorded beside the output (`OUTPUT.run.json`) when it is started. A restart resumes only when they
are the same: otherwise it is refused, naming the option, so that one file never mixes two runs' samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .io import read_jsonl, write_jsonl
from .problems import Problem
from .verifiers import Verifier

Generate = Callable[[Sequence[str], int], list[list[str]]]
"""``generate(prompts, seed)``: the completions of each prompt."""


@dataclass
class SampleSummary:
    problems: int
    samples: int
    correct: int
    problems_with_both: int
    resumed_problems: int = 0

    def __str__(self) -> str:
        share = self.correct / self.samples if self.samples else 0.0
        return (
            f"{self.problems} problems, {self.samples} samples, {share:.1%} correct; {self.problems_with_both} problems "
            f"have both a correct and an incorrect sample (the ones that make preference pairs)"
            + (f"; {self.resumed_problems} problems were already done" if self.resumed_problems else "")
        )


def check_sampling(n: int, temperature: float) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1 (samples per problem), got {n}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    if temperature == 0 and n > 1:
        raise ValueError(
            f"temperature=0 is greedy decoding, so the n={n} samples of a problem would all be the same: set a "
            "temperature > 0 (cDPO samples at about 0.7-1.0), or n=1."
        )


def sample_rows(problem: Problem, completions: list[str], verifier: Verifier) -> list[dict]:
    return [
        {
            "problem_id": problem.id,
            "prompt": problem.prompt,
            "completion": completion,
            "answer": verifier.answer(completion),
            "reference": problem.reference,
            "correct": verifier.is_correct(completion, problem.reference),
        }
        for completion in completions
    ]


def summarize(rows: list[dict]) -> SampleSummary:
    kinds: dict = {}
    for row in rows:
        kinds.setdefault(row["problem_id"], set()).add(row["correct"])
    return SampleSummary(
        problems=len(kinds),
        samples=len(rows),
        correct=sum(row["correct"] for row in rows),
        problems_with_both=sum(len(flags) == 2 for flags in kinds.values()),
    )


def finished_batches(output: Path, problems: list[Problem], n: int, batch_size: int) -> tuple[int, list[dict]]:
    """How many leading batches `output` holds completely, and their rows; the file is rewritten with just those."""
    if not output.exists():
        return 0, []
    rows = read_jsonl(output, partial_last_line=True)
    counts: dict = {}
    for row in rows:
        counts[row["problem_id"]] = counts.get(row["problem_id"], 0) + 1
    done = 0
    while done * batch_size < len(problems) and all(
        counts.get(p.id) == n for p in problems[done * batch_size : (done + 1) * batch_size]
    ):
        done += 1
    kept_ids = {p.id for p in problems[: done * batch_size]}
    kept = [row for row in rows if row["problem_id"] in kept_ids]
    write_jsonl(kept, output)
    return done, kept


def run_record_path(output: Path) -> Path:
    """Where the options of the run that writes `output` are recorded."""
    return output.with_name(output.name + ".run.json")


def problems_digest(problems: list[Problem]) -> str:
    """A hash of the problems as asked: ids, full prompts (template, shots, chat format) and parsed references."""
    text = json.dumps([[p.id, p.prompt, p.reference] for p in problems], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_same_run(output: Path, record: dict) -> None:
    """Record the run's options beside a new `output`; refuse to resume an existing one written by other options.

    Raises:
        ValueError: naming the option that differs (or the missing record) and how to start a fresh file.
    """
    path = run_record_path(output)
    if not output.exists():
        path.write_text(json.dumps(record, indent=1, default=str))
        return
    fresh = f"give another --output, or delete {output} (and {path.name}) to sample it anew"
    if not path.is_file():
        raise ValueError(
            f"{output} exists but has no record of the run that wrote it ({path.name}), so it cannot be resumed "
            f"safely: it may hold another run's samples. To start a fresh file, {fresh}."
        )
    saved = json.loads(path.read_text())
    for key, value in record.items():
        if json.loads(json.dumps(value, default=str)) != saved.get(key):
            raise ValueError(
                f"{output} holds the samples of another run: {key} was {saved.get(key)!r} there and is {value!r} now. "
                f"Resuming would mix two runs in one file: run with the options it was started with to resume, or, "
                f"to start a fresh file, {fresh}."
            )


def sample_solutions(
    problems: list[Problem],
    generate: Generate,
    verifier: Verifier,
    output: Path,
    *,
    n: int,
    batch_size: int,
    seed: int,
    record: dict | None = None,
) -> SampleSummary:
    """Sample and verify `n` completions per problem into `output` (JSON Lines), resuming what is there.

    Args:
        problems: the problems, in a fixed order (the same order on resuming).
        generate: ``generate(prompts, seed)``, the `n` completions of each prompt.
        verifier: checks each completion against its problem's reference.
        output: the JSON Lines file; rows of `problem_id`, `prompt`, `completion`, `answer` (the completion's final
            answer), `reference` and `correct`.
        n: samples per problem.
        batch_size: problems per batch.
        seed: the run's seed.
        record: the options that define the run, besides `n`, `batch_size`, `seed` and the problems; a restart
            resumes `output` only if they are the same (`check_same_run`).
    """
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids repeat: give an id_column whose values are unique, or leave it unset.")
    if output.is_dir():
        raise ValueError(f"output: {output} is a directory; give the JSON Lines file to write, e.g. {output / 'samples.jsonl'}.")
    output.parent.mkdir(parents=True, exist_ok=True)
    check_same_run(
        output, {**(record or {}), "n": n, "batch_size": batch_size, "seed": seed, "problems": len(problems),
                 "problems_sha256": problems_digest(problems)},
    )
    done, rows = finished_batches(output, problems, n, batch_size)
    batches = range(done, (len(problems) + batch_size - 1) // batch_size)
    with tqdm(total=len(problems), initial=done * batch_size, desc="Sampling", unit="problem") as progress:
        for b in batches:
            batch = problems[b * batch_size : (b + 1) * batch_size]
            completions = generate([p.prompt for p in batch], seed * 100003 + b)
            new_rows = [row for p, c in zip(batch, completions) for row in sample_rows(p, c, verifier)]
            write_jsonl(new_rows, output, append=True)
            rows += new_rows
            progress.update(len(batch))
    summary = summarize(rows)
    summary.resumed_problems = min(done * batch_size, len(problems))
    return summary
