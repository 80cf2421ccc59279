"""Verified samples: `n` completions per problem from a model, each checked against the reference answer.

Each completion is drawn from a random stream of its own, seeded by the run's seed, the problem's id and the sample's
number (`trl_adpo.pipeline.generation`), so a problem's samples do not depend on the batches. Each finished batch is
appended to the output (one JSON line per sample); once all are, the file is rewritten in the order of the problems.
An interrupted run, restarted with the same options, keeps the problems it finished (all `n` of their samples
written), drops the rest (and a partial last line), and goes on: it writes the same rows as a run that was never
interrupted.

The options that define a run (model, problems and a hash of their prompts and references, sampling options, seed)
are recorded beside the output (`OUTPUT.run.json`) when it is started. A restart resumes only when they are the same:
otherwise it is refused, naming the option, so that one file never mixes two runs' samples. The batch size is not
among them: it changes speed and memory, not the samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from ..files import write_atomically
from .grading import Grader
from .io import read_jsonl, write_jsonl
from .problems import Problem

if TYPE_CHECKING:
    from .generation import GenerationArguments

GenerateBatches = Callable[[list[Problem], set[int]], Iterator[tuple[list[int], list[list[str]]]]]
"""``generate(problems, skip)``: batch by batch, the indices of problems (none of `skip`) and their completions."""
SAMPLING_STREAMS = "one per completion, seeded by (seed, problem id, sample number)"
"""How samples are drawn, in the run record: files sampled otherwise (trl_adpo < 0.4) are not resumed."""


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
            f"{self.problems} problems, {self.samples} samples, {share:.1%} correct; {self.problems_with_both} "
            "problems "
            f"have both a correct and an incorrect sample (the ones that make preference pairs)"
            + (f"; {self.resumed_problems} problems were already done" if self.resumed_problems else "")
        )


def check_sampling(options: GenerationArguments) -> None:
    """Refuse sampling options (`GenerationArguments`) that cannot work, naming the option."""
    n, temperature = options.n, options.temperature
    if n < 1:
        raise ValueError(f"n must be >= 1 (samples per problem), got {n}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    if temperature == 0 and n > 1:
        raise ValueError(
            f"temperature=0 is greedy decoding, so the n={n} samples of a problem would all be the same: set a "
            "temperature > 0 (cDPO samples at about 0.7-1.0), or n=1."
        )
    if not 0 < options.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {options.top_p} (1 samples from the whole distribution).")
    if options.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {options.max_new_tokens}.")
    if options.batch_size is not None and options.batch_size < 1:
        raise ValueError(
            f"batch_size must be >= 1 (problems per generation batch), got {options.batch_size}; leave it unset for "
            "the device's default."
        )


def sample_rows(problems: list[Problem], completions: list[list[str]], grader: Grader) -> list[dict]:
    """One row per completion of each problem, graded."""
    flat = [(problem, completion) for problem, texts in zip(problems, completions) for completion in texts]
    answers, verdicts = grader.grade([c for _, c in flat], [p.reference for p, _ in flat])
    return [
        {
            "problem_id": problem.id,
            "prompt": problem.prompt,
            "completion": completion,
            "answer": answer,
            "reference": problem.reference,
            "correct": correct,
        }
        for (problem, completion), answer, correct in zip(flat, answers, verdicts)
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


def finished_problems(output: Path, problems: list[Problem], n: int) -> list[dict]:
    """The rows of the problems `output` holds all `n` samples of; the file is rewritten with just those."""
    if not output.exists():
        return []
    rows = read_jsonl(output, partial_last_line=True)
    counts: dict = {}
    for row in rows:
        counts[row["problem_id"]] = counts.get(row["problem_id"], 0) + 1
    done = {p.id for p in problems if counts.get(p.id) == n}
    kept = [row for row in rows if row["problem_id"] in done]
    write_jsonl(kept, output)
    return kept


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
        write_atomically(path, json.dumps(record, indent=1, default=str))
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
    generate: GenerateBatches,
    grader: Grader,
    output: Path,
    *,
    n: int,
    seed: int,
    record: dict | None = None,
) -> SampleSummary:
    """Sample and verify `n` completions per problem into `output` (JSON Lines), resuming what is there.

    Args:
        problems: the problems.
        generate: ``generate(problems, skip)``, batch by batch the indices of problems not in `skip` and their `n`
            completions each (`trl_adpo.pipeline.generation.generate_batches`).
        grader: checks each completion against its problem's reference.
        output: the JSON Lines file; rows of `problem_id`, `prompt`, `completion`, `answer` (the completion's final
            answer), `reference` and `correct`, in the order of the problems.
        n: samples per problem.
        seed: the run's seed.
        record: the options that define the run, besides `n`, `seed` and the problems; a restart resumes `output`
            only if they are the same (`check_same_run`).
    """
    if len({p.id for p in problems}) != len(problems):
        raise ValueError("problem ids repeat: give an id_column whose values are unique, or leave it unset.")
    if output.is_dir():
        raise ValueError(
            f"output: {output} is a directory; give the JSON Lines file to write, e.g. {output / 'samples.jsonl'}."
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    check_same_run(
        output,
        {
            **(record or {}),
            "n": n,
            "seed": seed,
            "sampling_streams": SAMPLING_STREAMS,
            "problems": len(problems),
            "problems_sha256": problems_digest(problems),
        },
    )
    rows = finished_problems(output, problems, n)
    done = {row["problem_id"] for row in rows}
    skip = {index for index, problem in enumerate(problems) if problem.id in done}
    with tqdm(total=len(problems), initial=len(skip), desc="Sampling", unit="problem") as progress:
        for indices, completions in generate(problems, skip) if len(skip) < len(problems) else ():
            new_rows = sample_rows([problems[i] for i in indices], completions, grader)
            write_jsonl(new_rows, output, append=True)
            rows += new_rows
            progress.update(len(indices))
    position = {problem.id: index for index, problem in enumerate(problems)}
    rows.sort(key=lambda row: position[row["problem_id"]])  # stable: a problem's samples keep their order
    write_jsonl(rows, output)
    summary = summarize(rows)
    summary.resumed_problems = len(skip)
    return summary
