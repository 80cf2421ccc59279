"""`trl-adpo evaluate`: accuracy of a model (or LoRA adapter) on verified problems, few-shot.

```bash
trl-adpo evaluate --task gsm8k --dataset_name openai/gsm8k --dataset_config main --dataset_split test \
    --model_name_or_path Llama-3-8B-ADPO --output gsm8k_results.json
```

Greedy by default; with `--n` > 1 and a temperature, also pass@k and majority vote. Prints the accuracy with its 95%
interval and writes every problem's completions and verdicts to a JSON file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from trl_adpo.cli.parsing import ConfigParser
from trl_adpo.files import OutputLock, refuse_output_among_inputs, write_atomically
from trl_adpo.pipeline.evaluation import Evaluation, score
from trl_adpo.pipeline.generation import GenerationArguments, generate_batches, load_for_generation
from trl_adpo.pipeline.grading import Grader
from trl_adpo.pipeline.io import check_model_source
from trl_adpo.pipeline.problems import ProblemSource, load_problems
from trl_adpo.pipeline.sampling import check_sampling


@dataclass
class EvaluationOutput:
    output: str = field(default="outputs/evaluation.json", metadata={"help": "The JSON file of per-problem results."})


def run(source: ProblemSource, generation: GenerationArguments, output: EvaluationOutput) -> Evaluation:
    check_sampling(generation)
    check_model_source(generation.model_name_or_path, "model_name_or_path")
    if generation.model_name_or_path is None:
        raise ValueError("model_name_or_path is not set: give the model to evaluate.")
    problems, task, verifier = load_problems(source)
    refuse_output_among_inputs(
        {"output": output.output},
        {"dataset_name": source.dataset_name, "model_name_or_path": generation.model_name_or_path},
    )
    with OutputLock(output.output, "output"):
        return evaluate(problems, task, verifier, generation, source, output)


def evaluate(
    problems, task, verifier, generation: GenerationArguments, source: ProblemSource, output: EvaluationOutput
) -> Evaluation:
    """`run` once its options, data and output are checked."""
    model, tokenizer = load_for_generation(generation.model_name_or_path, generation.dtype)
    stop = generation.stop if generation.stop is not None else task.stop
    completions: list[list[str]] = [[] for _ in problems]
    with tqdm(total=len(problems), desc="Evaluating", unit="problem") as progress:
        for indices, texts in generate_batches(
            model,
            tokenizer,
            [p.prompt for p in problems],
            keys=[p.id for p in problems],
            n=generation.n,
            temperature=generation.temperature,
            top_p=generation.top_p,
            max_new_tokens=generation.max_new_tokens,
            stop=stop,
            seed=generation.seed,
            batch_size=generation.batch_size,
        ):
            for index, text in zip(indices, texts):
                completions[index] = text
            progress.update(len(indices))
    with Grader(verifier) as grader:
        evaluation = score(problems, completions, grader)
    write_atomically(
        Path(output.output),
        json.dumps(
            {
                "summary": evaluation.summary,
                "options": {**asdict(source), **asdict(generation)},
                "problems": evaluation.problems,
            },
            indent=1,
            default=str,
        ),
    )
    print(f"{evaluation}\nWrote {Path(output.output).resolve()}")
    return evaluation


def make_parser() -> ConfigParser:
    return ConfigParser(
        (ProblemSource, GenerationArguments, EvaluationOutput), prog="trl-adpo evaluate", dataset_split="test"
    )


def interrupted(argv: list[str]) -> str:
    """What an interrupted `trl-adpo evaluate` leaves (`trl_adpo.cli.main` prints it)."""
    output = make_parser().parse(argv)[2].output
    return f"Nothing was written ({output} is written whole at the end, an earlier one left as it was): run it again."


def main(argv: list[str] | None = None) -> None:
    run(*make_parser().parse(sys.argv[1:] if argv is None else argv))
