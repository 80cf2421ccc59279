"""`trl-adpo sample`: verified samples, `n` completions per problem from a model, for preference pairs.

```bash
trl-adpo sample --task gsm8k --dataset_name openai/gsm8k --dataset_config main \
    --model_name_or_path meta-llama/Meta-Llama-3-8B --n 16 --temperature 0.8 --output samples.jsonl
```

Writes one JSON line per sample (`problem_id`, `prompt`, `completion`, `answer`, `reference`, `correct`). An
interrupted run resumes where it stopped when started again with the same options.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.files import OutputLock, refuse_output_among_inputs
from trl_adpo.pipeline.generation import GenerationArguments, generate_batches, load_for_generation
from trl_adpo.pipeline.grading import Grader
from trl_adpo.pipeline.io import check_model_source
from trl_adpo.pipeline.problems import Problem, ProblemSource, load_problems
from trl_adpo.pipeline.sampling import SampleSummary, check_sampling, sample_solutions


@dataclass
class SampleOutput:
    output: str = field(default="outputs/samples.jsonl", metadata={"help": "The JSON Lines file of verified samples."})


def run(source: ProblemSource, generation: GenerationArguments, output: SampleOutput) -> SampleSummary:
    check_sampling(generation)
    if generation.model_name_or_path is None:
        raise ValueError("model_name_or_path is not set: give the model to sample from.")
    problems, task, verifier = load_problems(source)  # every data check before the model loads
    stop = generation.stop if generation.stop is not None else task.stop

    def batches(todo: list[Problem], skip: set[int]):  # the model loads at the first batch, after every check
        check_model_source(generation.model_name_or_path, "model_name_or_path")
        model, tokenizer = load_for_generation(generation.model_name_or_path, generation.dtype)
        yield from generate_batches(
            model,
            tokenizer,
            [p.prompt for p in todo],
            keys=[p.id for p in todo],
            skip=skip,
            n=generation.n,
            temperature=generation.temperature,
            top_p=generation.top_p,
            max_new_tokens=generation.max_new_tokens,
            stop=stop,
            seed=generation.seed,
            batch_size=generation.batch_size,
        )

    record = {
        "model_name_or_path": generation.model_name_or_path,
        "dataset_name": source.dataset_name,
        "dataset_split": source.dataset_split,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "max_new_tokens": generation.max_new_tokens,
        "stop": list(stop),
        "template": task.template,
        "num_shots": task.shots,
        "chat": source.chat,
        "dtype": generation.dtype,
        "verifier": task.verifier,
    }
    refuse_output_among_inputs(
        {"output": output.output},
        {"dataset_name": source.dataset_name, "model_name_or_path": generation.model_name_or_path},
    )
    with OutputLock(output.output, "output"), Grader(verifier) as grader:
        summary = sample_solutions(
            problems, batches, grader, Path(output.output), n=generation.n, seed=generation.seed, record=record
        )
    print(f"Wrote {Path(output.output).resolve()}: {summary}")
    return summary


def make_parser() -> ConfigParser:
    return ConfigParser(
        (ProblemSource, GenerationArguments, SampleOutput), prog="trl-adpo sample", n=8, temperature=1.0
    )


def interrupted(argv: list[str]) -> str:
    """What an interrupted `trl-adpo sample` leaves, and how to go on (`trl_adpo.cli.main` prints it)."""
    output = make_parser().parse(argv)[2].output
    return (
        f"The samples written so far are in {output} (a problem with some of its samples is sampled again): "
        "the same command resumes it."
    )


def main(argv: list[str] | None = None) -> None:
    run(*make_parser().parse(sys.argv[1:] if argv is None else argv))
