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
from trl_adpo.pipeline.evaluation import Evaluation, score
from trl_adpo.pipeline.io import check_model_source
from trl_adpo.pipeline.generation import GenerationArguments, generate, load_for_generation
from trl_adpo.pipeline.problems import ProblemSource, load_problems
from trl_adpo.pipeline.sampling import check_sampling


@dataclass
class EvaluationOutput:
    output: str = field(default="outputs/evaluation.json", metadata={"help": "The JSON file of per-problem results."})


def run(source: ProblemSource, generation: GenerationArguments, output: EvaluationOutput) -> Evaluation:
    check_sampling(generation.n, generation.temperature)
    check_model_source(generation.model_name_or_path, "model_name_or_path")
    if generation.model_name_or_path is None:
        raise ValueError("model_name_or_path is not set: give the model to evaluate.")
    problems, task, verifier = load_problems(source)
    model, tokenizer = load_for_generation(generation.model_name_or_path, generation.dtype)
    stop = generation.stop if generation.stop is not None else task.stop
    completions = []
    for b in tqdm(range(0, len(problems), generation.batch_size), desc="Evaluating", unit="batch"):
        batch = problems[b : b + generation.batch_size]
        completions += generate(
            model, tokenizer, [p.prompt for p in batch], n=generation.n, temperature=generation.temperature,
            top_p=generation.top_p, max_new_tokens=generation.max_new_tokens, stop=stop,
            seed=generation.seed * 100003 + b // generation.batch_size,
        )
    evaluation = score(problems, completions, verifier)
    Path(output.output).parent.mkdir(parents=True, exist_ok=True)
    Path(output.output).write_text(json.dumps(
        {"summary": evaluation.summary, "options": {**asdict(source), **asdict(generation)}, "problems": evaluation.problems},
        indent=1, default=str,
    ))
    print(f"{evaluation}\nWrote {Path(output.output).resolve()}")
    return evaluation


def make_parser() -> ConfigParser:
    return ConfigParser((ProblemSource, GenerationArguments, EvaluationOutput), prog="trl-adpo evaluate",
                        dataset_split="test")


def main(argv: list[str] | None = None) -> None:
    run(*make_parser().parse(sys.argv[1:] if argv is None else argv))
