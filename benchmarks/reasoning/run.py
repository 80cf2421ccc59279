"""DPO against the ADPO families on a verifiable reasoning task, in miniature: on 2 CPU cores, offline, ~20 minutes.

    python benchmarks/reasoning/run.py             # the full run; writes benchmarks/reasoning/results/
    python benchmarks/reasoning/run.py --quick     # a seconds-long smoke run of every stage

1. Task: chained arithmetic modulo 10 (`trl_adpo.examples.arithmetic`), each problem with an exact verifier; disjoint
   sets of prompts for SFT, preference pairs, SFT early stopping (dev) and the final evaluation (held out).
2. SFT: a small Llama, built in code, learns from correct worked solutions until its greedy accuracy on the dev
   prompts reaches `sft_target` (a meaningful but incomplete share, so preference training has room).
3. Pairs, on-policy as in math DPO: several samples per preference prompt from the SFT model, verified; a correct
   and an incorrect one make a pair. Wrong samples go astray at some step inside an otherwise shared prefix.
4. Preference training from the same SFT model with the same steps, batch, learning rate and beta for every method,
   through scripts/train_adpo.py with benchmarks/reasoning/preference.yaml; the seeds change which samples are
   paired and the order of training.
5. Greedy accuracy on the held-out prompts: a markdown table (mean +- std over seeds, and the SFT start), a
   Figure-2-style plot of the chosen and rejected log-probs over training, and the raw numbers in results.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from trl_adpo.cli import train as train_cli
from trl_adpo.examples.arithmetic import WORDS, Problem, sample_problem
from trl_adpo.pipeline.io import write_jsonl
from trl_adpo.examples.tiny import build_tiny_llama, build_word_tokenizer

HERE = Path(__file__).resolve().parent
METHODS = {
    "DPO": ["--granularity", "adaptive", "--num_segments", "1"],
    "conservative DPO": ["--granularity", "adaptive", "--num_segments", "1", "--label_smoothing", "0.1"],
    "ADPO static k=1": ["--granularity", "static", "--window_size", "1"],
    "ADPO static k=2": ["--granularity", "static", "--window_size", "2"],
    "ADPO adaptive m=4": ["--granularity", "adaptive", "--num_segments", "4"],
    "ADPO adaptive m=16": ["--granularity", "adaptive", "--num_segments", "16"],
    "conservative ADPO adaptive m=16": ["--granularity", "adaptive", "--num_segments", "16", "--label_smoothing", "0.1"],
}
PLOTTED = ("DPO", "ADPO static k=1", "ADPO adaptive m=16")


@dataclass(frozen=True)
class Settings:
    num_initial: int = 3  # variables given a digit in the prompt
    num_steps: int = 6  # derived variables, one worked step each
    sft_problems: int = 20000
    preference_prompts: int = 1536
    dev_prompts: int = 150
    heldout_prompts: int = 500
    sft_batch_size: int = 64
    sft_learning_rate: float = 1e-3
    sft_max_steps: int = 1500
    sft_eval_every: int = 50
    sft_target: float = 0.4  # dev accuracy at which SFT stops
    samples_per_prompt: int = 8
    temperature: float = 1.0
    preference_steps: int = 144
    logging_steps: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    reference_fallback: bool = False  # chosen = the reference solution when no sample is correct (smoke run only)


QUICK = Settings(
    sft_problems=256, preference_prompts=32, dev_prompts=16, heldout_prompts=16, sft_max_steps=10, sft_eval_every=5,
    samples_per_prompt=2, preference_steps=2, logging_steps=1, seeds=(0,), reference_fallback=True,
)


def make_problems(settings: Settings) -> dict[str, list[Problem]]:
    """Disjoint problem sets (no prompt in two of them)."""
    rng, seen, sets = random.Random(1234), set(), {}
    sizes = {"heldout": settings.heldout_prompts, "dev": settings.dev_prompts,
             "preference": settings.preference_prompts, "sft": settings.sft_problems}
    for name, size in sizes.items():
        sets[name] = []
        while len(sets[name]) < size:
            problem = sample_problem(rng, settings.num_steps, settings.num_initial)
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                sets[name].append(problem)
    return sets


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, samples: int = 1, temperature: float = 0.0,
             batch_size: int = 256) -> list[list[str]]:
    """`samples` completions per prompt: greedy when temperature is 0, sampled otherwise."""
    model.eval()
    tokenizer.padding_side = "left"
    completions = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start : start + batch_size], add_special_tokens=False, padding=True,
                          return_tensors="pt")
        sampling = dict(do_sample=True, temperature=temperature, top_k=0) if temperature > 0 else dict(do_sample=False)
        output = model.generate(**batch, max_new_tokens=max_new_tokens, num_return_sequences=samples,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions += [texts[i : i + samples] for i in range(0, len(texts), samples)]
    return completions


def accuracy(model, tokenizer, problems: list[Problem], max_new_tokens: int) -> float:
    completions = generate(model, tokenizer, [p.prompt for p in problems], max_new_tokens)
    return sum(p.is_correct(c[0]) for p, c in zip(problems, completions)) / len(problems)


def sft(settings: Settings, problems: dict[str, list[Problem]], directory: Path, max_new_tokens: int) -> dict:
    """Train a small Llama from scratch on correct solutions until the dev accuracy reaches the target; save it."""
    tokenizer = build_word_tokenizer(WORDS)
    model = build_tiny_llama(len(tokenizer), hidden_size=128, num_layers=4, num_heads=4, max_positions=256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.sft_learning_rate, weight_decay=0.0)
    examples = [(encode(tokenizer, p.prompt), encode(tokenizer, p.solution()) + [tokenizer.eos_token_id])
                for p in problems["sft"]]
    rng, history = random.Random(0), []
    for step in range(1, settings.sft_max_steps + 1):
        model.train()
        rows = rng.sample(examples, settings.sft_batch_size)
        width = max(len(prompt) + len(solution) for prompt, solution in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (prompt, solution) in enumerate(rows):
            tokens = prompt + solution
            input_ids[i, : len(tokens)] = torch.tensor(tokens)
            attention_mask[i, : len(tokens)] = 1
            labels[i, len(prompt) : len(tokens)] = torch.tensor(solution)  # loss on the solution only
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % settings.sft_eval_every == 0:
            dev = accuracy(model, tokenizer, problems["dev"], max_new_tokens)
            history.append({"step": step, "loss": round(loss.item(), 4), "dev_accuracy": dev})
            print(f"  SFT step {step}: loss {loss.item():.3f}, dev accuracy {dev:.3f}", flush=True)
            if dev >= settings.sft_target:
                break
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {"steps": step, "history": history}


def preference_pairs(settings: Settings, problems: list[Problem], samples: list[list[str]], seed: int) -> list[dict]:
    """One (correct, incorrect) pair of samples per prompt that has both, drawn with `seed`."""
    rng, rows = random.Random(seed), []
    for problem, completions in zip(problems, samples):
        correct = [c for c in completions if problem.is_correct(c)]
        wrong = [c for c in completions if c.strip() and not problem.is_correct(c)]  # no empty completions
        if not correct and settings.reference_fallback:
            correct = [problem.solution()]
        if correct and wrong:
            rows.append({"prompt": problem.prompt, "chosen": rng.choice(correct), "rejected": rng.choice(wrong)})
    return rows


def write_report(settings: Settings, results: dict, output_dir: Path, command: str) -> None:
    """results.md (the table), training_dynamics.png (Figure-2 style) and results.json (everything)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean_std(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} +- {100 * std:.1f}"

    lines = [
        "# DPO vs ADPO on chained arithmetic (mod 10), in miniature",
        "",
        f"Made by `{command}` in {results['wall_minutes']:.1f} minutes on {results['machine']}.",
        "",
        f"Held-out greedy accuracy (%) on {settings.heldout_prompts} problems of {settings.num_initial} given and "
        f"{settings.num_steps} derived variables; mean +- std over seeds {list(settings.seeds)}. Every method starts "
        f"from the same SFT model and trains {settings.preference_steps} steps on on-policy pairs "
        f"({results['pairs']} pairs per seed on average) with the same batch, learning rate and beta.",
        "",
        "| method | held-out accuracy (%) | final reward accuracy (train) |",
        "| --- | --- | --- |",
        f"| SFT (start) | {100 * results['sft_accuracy']:.1f} | |",
    ]
    for name, runs in results["methods"].items():
        reward_accuracies = [run["final"]["rewards/accuracies"] for run in runs]
        lines.append(f"| {name} | {mean_std([run['accuracy'] for run in runs])} | "
                     f"{statistics.mean(reward_accuracies):.2f} |")
    lines += ["", f"Majority-answer baseline on the held-out set: {100 * results['majority_baseline']:.1f} %.", ""]
    (output_dir / "results.md").write_text("\n".join(lines))

    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2), sharey=True)
    for axis, name in zip(axes, PLOTTED):
        curves = [run["curve"] for run in results["methods"][name]]
        steps = [point["step"] for point in curves[0]]
        for key, style in (("logps/chosen", "-"), ("logps/rejected", "--")):
            mean = [statistics.mean(curve[i][key] for curve in curves) for i in range(len(steps))]
            axis.plot(steps, mean, style, color="C0" if key.endswith("chosen") else "C3",
                      label="chosen" if key.endswith("chosen") else "rejected")
        axis.set_title(name)
        axis.set_xlabel("training step")
    axes[0].set_ylabel("log-prob of the completion")
    axes[0].legend()
    figure.suptitle("Log-probs of preferred (solid) and dispreferred (dashed) completions during training")
    figure.tight_layout()
    figure.savefig(output_dir / "training_dynamics.png", dpi=120)
    (output_dir / "results.json").write_text(json.dumps({"settings": asdict(settings), **results}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run of every stage")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results", help="where the report is written")
    args = parser.parse_args()
    settings = QUICK if args.quick else Settings()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    command = "python benchmarks/reasoning/run.py" + (" --quick" if args.quick else "")
    torch.manual_seed(0)
    started = time.time()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    problems = make_problems(settings)
    max_new_tokens = 8 * settings.num_steps + 4

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("1-2. SFT from scratch on correct solutions", flush=True)
        sft_result = sft(settings, problems, work / "sft", max_new_tokens)
        sft_model = AutoModelForCausalLM.from_pretrained(work / "sft")
        tokenizer = AutoTokenizer.from_pretrained(work / "sft")
        sft_accuracy = accuracy(sft_model, tokenizer, problems["heldout"], max_new_tokens)
        print(f"   SFT held-out accuracy {sft_accuracy:.3f} after {sft_result['steps']} steps", flush=True)

        print("3. on-policy preference pairs", flush=True)
        prompts = [p.prompt for p in problems["preference"]]
        samples = generate(sft_model, tokenizer, prompts, max_new_tokens, settings.samples_per_prompt,
                           settings.temperature)
        pair_counts = []
        for seed in settings.seeds:
            rows = preference_pairs(settings, problems["preference"], samples, seed)
            write_jsonl(rows, work / f"pairs-{seed}.jsonl")
            pair_counts.append(len(rows))
        print(f"   pairs per seed: {pair_counts}", flush=True)

        print("4-5. preference training and held-out evaluation", flush=True)
        methods: dict[str, list[dict]] = {name: [] for name in METHODS}
        for seed in settings.seeds:
            for name, flags in METHODS.items():
                run_dir = work / "runs" / f"{name.replace(' ', '_').replace('=', '')}-{seed}"
                trainer = train_cli.run(*train_cli.parse_args([
                    "--config", str(HERE / "preference.yaml"), "--model_name_or_path", str(work / "sft"),
                    "--dataset_name", str(work / f"pairs-{seed}.jsonl"), "--output_dir", str(run_dir),
                    "--max_steps", str(settings.preference_steps), "--logging_steps", str(settings.logging_steps),
                    "--seed", str(seed), *flags,
                ]))
                logs = [entry for entry in trainer.state.log_history if "logps/chosen" in entry]
                curve = [{key: entry[key] for key in ("step", "logps/chosen", "logps/rejected")} for entry in logs]
                final = {key: logs[-1][key] for key in ("loss", "rewards/accuracies", "rewards/margins")}
                result = {"seed": seed, "accuracy": accuracy(trainer.model, tokenizer, problems["heldout"],
                                                             max_new_tokens), "final": final, "curve": curve}
                methods[name].append(result)
                print(f"   seed {seed} {name:<20} held-out accuracy {result['accuracy']:.3f}", flush=True)

    answers = [p.answer for p in problems["heldout"]]
    results = {
        "sft": sft_result, "sft_accuracy": sft_accuracy, "pairs": round(statistics.mean(pair_counts)),
        "majority_baseline": max(answers.count(a) for a in set(answers)) / len(answers), "methods": methods,
        "wall_minutes": (time.time() - started) / 60, "machine": f"CPU, {torch.get_num_threads()} threads",
    }
    write_report(settings, results, args.output_dir, command)
    print((args.output_dir / "results.md").read_text())
    print(f"Wrote {args.output_dir / 'results.md'} and {args.output_dir / 'training_dynamics.png'}")


if __name__ == "__main__":
    main()
