"""Generation speed of the pipeline (`trl_adpo.pipeline.generation.generate_batches`, what `trl-adpo sample`,
`evaluate` and `iterate` run) against the plain `model.generate` loop a user would write (batches in file order, each
prompt repeated n times by `num_return_sequences`, stop strings passed to `generate`), on the same model and prompts.

    python scripts/bench_generation.py            # (a), (b) and (c) below: about 25 minutes on 2 CPU cores
    python scripts/bench_generation.py --quick    # the tiny model only, a few seconds (the test suite runs it)

(a) SmolLM2-135M-Instruct on the real-model demo's word problems through its chat template: greedy (as `trl-adpo
    evaluate` in the demo), and n = 6 at temperature 0.6 (as its `trl-adpo sample`); the plain loop takes the demo
    configs' batch sizes (50 and 16 problems).
(b) The same model and problems asked 8-shot in plain text ("Question: ... Answer: ..." with 8 worked solutions
    before each problem, about a thousand tokens), greedy; the plain loop at 16 problems a batch.
(c) The tiny quickstart Llama (random weights) on the arithmetic task: greedy, and n = 4 at temperature 1.0.

Prints, per setup and path, problems/s and generated tokens/s (tokens of the completions as returned), the
speed-up, and for greedy setups how many completions and verdicts differ from the plain loop's. Each difference is
traced: the model scores, in float64 and unbatched, the prompt and the tokens both completions share, and the gap
between the logits of the two tokens where they part is printed; a gap near float32 rounding means the two paths
only summed in another order. Sampled completions differ by design (the package draws each from a stream of its
own): their share of correct answers is printed for both paths instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trl_adpo.pipeline.generation import cut_at_stop, generate, render
from trl_adpo.pipeline.verifiers import VERIFIERS


@dataclass
class Setup:
    name: str
    model: str
    prompts: list
    references: list[str]
    verifier: str
    n: int
    temperature: float
    max_new_tokens: int
    stop: tuple[str, ...]
    plain_batch_size: int


def plain_generate(model, tokenizer, prompts, setup: Setup, seed: int = 0) -> list[list[str]]:
    """What a user writes: batches in file order, each prompt repeated n times, stop strings given to generate."""
    completions = []
    chat = any(not isinstance(prompt, str) for prompt in prompts)
    sampling = (
        dict(do_sample=True, temperature=setup.temperature, top_p=1.0, top_k=0)
        if setup.temperature > 0
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    )
    stopping = dict(stop_strings=list(setup.stop), tokenizer=tokenizer) if setup.stop else {}
    for start in range(0, len(prompts), setup.plain_batch_size):
        torch.manual_seed(seed * 100003 + start)
        texts = [render(tokenizer, prompt) for prompt in prompts[start : start + setup.plain_batch_size]]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat).to(model.device)
        output = model.generate(
            **batch,
            max_new_tokens=setup.max_new_tokens,
            num_return_sequences=setup.n,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
            **stopping,
        )
        decoded = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        decoded = [cut_at_stop(text, setup.stop) for text in decoded]
        completions += [decoded[i : i + setup.n] for i in range(0, len(decoded), setup.n)]
    return completions


def divergence_gap(model, tokenizer, prompt, first: str, second: str) -> tuple[int, float]:
    """Where two completions of a prompt part (in tokens) and the float64 logit gap of their tokens there."""
    chat = not isinstance(prompt, str)
    prompt_ids = tokenizer(render(tokenizer, prompt), add_special_tokens=not chat)["input_ids"]
    a, b = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (first, second))
    shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if shared >= min(len(a), len(b)):
        return shared, float("nan")  # one ends where the other goes on (EOS against a token)
    model64 = model.double()
    with torch.no_grad():
        logits = model64(torch.tensor([prompt_ids + a[:shared]], device=model.device)).logits[0, -1]
    model.float()
    return shared, abs(float(logits[a[shared]] - logits[b[shared]]))


def tokens_of(tokenizer, completions: list[list[str]]) -> int:
    return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for texts in completions for text in texts)


def measure(setup: Setup, model, tokenizer) -> dict:
    verifier = VERIFIERS[setup.verifier]
    results = {}
    for path in ("plain", "package"):
        started = time.perf_counter()
        if path == "plain":
            completions = plain_generate(model, tokenizer, setup.prompts, setup)
        else:
            completions = generate(
                model,
                tokenizer,
                setup.prompts,
                n=setup.n,
                temperature=setup.temperature,
                max_new_tokens=setup.max_new_tokens,
                stop=setup.stop,
            )
        wall = time.perf_counter() - started
        verdicts = [
            [verifier.is_correct(text, reference) for text in texts]
            for texts, reference in zip(completions, setup.references)
        ]
        results[path] = dict(
            wall_s=wall,
            problems_per_s=len(setup.prompts) / wall,
            tokens_per_s=tokens_of(tokenizer, completions) / wall,
            completions=completions,
            correct=sum(map(sum, verdicts)) / (len(verdicts) * setup.n),
            verdicts=verdicts,
        )
    if setup.temperature == 0:
        plain, package = results["plain"], results["package"]
        differ = [i for i, (x, y) in enumerate(zip(plain["completions"], package["completions"])) if x != y]
        results["differences"] = [
            dict(
                problem=i,
                verdict_differs=plain["verdicts"][i] != package["verdicts"][i],
                **dict(
                    zip(
                        ("token", "logit_gap"),
                        divergence_gap(
                            model,
                            tokenizer,
                            setup.prompts[i],
                            plain["completions"][i][0],
                            package["completions"][i][0],
                        ),
                    )
                ),
            )
            for i in differ
        ]
    return results


def word_problem_setups(count: int, sampled: int, few_shot: int) -> list[Setup]:
    from trl_adpo.examples.smollm2 import smollm2_directory
    from trl_adpo.examples.word_problems import word_problem_rows
    from trl_adpo.pipeline.prompts import TASKS

    model = str(smollm2_directory())
    heldout = word_problem_rows(max(count, few_shot), seed=1)
    exemplars = word_problem_rows(8, seed=0)
    shots = "".join(f"Question: {row['question']}\nAnswer: {row['solution']}\n\n" for row in exemplars)
    gsm8k = TASKS["gsm8k"]
    chat = [[{"role": "user", "content": row["question"]}] for row in heldout]
    references = [row["answer"] for row in heldout]
    return [
        Setup("(a) chat, greedy", model, chat[:count], references[:count], "gsm8k", 1, 0.0, 80, (), 50),
        Setup("(a) chat, n=6 T=0.6", model, chat[:sampled], references[:sampled], "gsm8k", 6, 0.6, 80, (), 16),
        Setup(
            "(b) 8-shot, greedy",
            model,
            [shots + gsm8k.template.format(question=row["question"]) for row in heldout[:few_shot]],
            references[:few_shot],
            "gsm8k",
            1,
            0.0,
            80,
            gsm8k.stop,
            16,
        ),
    ]


def tiny_setups(directory: Path, count: int) -> list[Setup]:
    from trl_adpo.examples.arithmetic import problem_rows, save_quickstart

    model = str(save_quickstart(directory) / "model")
    rows = problem_rows(count, seed=5)
    prompts, references = [row["prompt"] for row in rows], [row["answer"] for row in rows]
    return [
        Setup("(c) tiny, greedy", model, prompts, references, "arithmetic", 1, 0.0, 40, (), 8),
        Setup("(c) tiny, n=4 T=1", model, prompts, references, "arithmetic", 4, 1.0, 40, (), 8),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny model only, few problems")
    parser.add_argument("--problems", type=int, default=200, help="(a) greedy: problems")
    parser.add_argument("--sampled-problems", type=int, default=48, help="(a) sampled: problems")
    parser.add_argument("--few-shot-problems", type=int, default=64, help="(b): problems")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_generation"), help="the tiny model's folder")
    parser.add_argument("--json", type=Path, help="also write every figure (and the completions) to this file")
    args = parser.parse_args()

    from trl_adpo.pipeline.generation import load_for_generation

    setups = tiny_setups(args.work, 16 if args.quick else 200)
    if not args.quick:
        setups = word_problem_setups(args.problems, args.sampled_problems, args.few_shot_problems) + setups
    print(
        f"{'setup':<22} {'path':<8} {'problems':>8} {'wall s':>7} {'problems/s':>10} {'tokens/s':>9} "
        f"{'speed-up':>8} {'correct':>7}"
    )
    report, loaded = [], {}
    for setup in setups:
        if setup.model not in loaded:
            loaded = {setup.model: load_for_generation(setup.model, "float32")}
        model, tokenizer = loaded[setup.model]
        results = measure(setup, model, tokenizer)
        for path in ("plain", "package"):
            r = results[path]
            speed = r["problems_per_s"] / results["plain"]["problems_per_s"]
            print(
                f"{setup.name if path == 'plain' else '':<22} {path:<8} {len(setup.prompts):>8} {r['wall_s']:>7.1f} "
                f"{r['problems_per_s']:>10.2f} {r['tokens_per_s']:>9.0f} {speed:>7.2f}x {r['correct']:>7.1%}"
            )
        if "differences" in results:
            differences = results["differences"]
            verdicts = sum(d["verdict_differs"] for d in differences)
            gaps = ", ".join(f"{d['logit_gap']:.1e}" for d in differences)
            print(
                f"{'':<22} greedy: {len(differences)} of {len(setup.prompts)} completions differ, {verdicts} verdicts"
                + (f"; float64 logit gaps where they part: {gaps}" if differences else "")
            )
        report.append(
            {
                "setup": setup.name,
                "problems": len(setup.prompts),
                "n": setup.n,
                "max_new_tokens": setup.max_new_tokens,
                **results,
            }
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
