"""The GPU check, in one call: bf16 step time and peak memory of DPO, ADPO and cADPO on real architectures' shapes,
with full fine-tuning, LoRA and 4-bit QLoRA; the critical-token precompute; the objective alone.

    bash benchmarks/gpu/run.sh            # on a GPU machine: installs the carried wheels, then runs this (< 8 minutes)
    python benchmarks/gpu/run.py --smoke  # on the CPU: tiny shapes, a few steps, no 4-bit (the test suite runs it)

Parts, each with its own time budget (seconds, `BUDGETS`), skipped with a note when the budget is spent:

1. objective (30 s): `adpo_loss` (adaptive m = 256, static k = 1, with critical-token weights) against DPO's two
   sums, forward + backward, bf16, 16 pairs of 1,024 and 2,048 tokens; median of 50.
2. critical tokens (45 s): `CriticalTokenModels.token_probs` with two Qwen2.5-0.5B-shaped models (vocabulary
   151,936) on 8 sequences of 1,024 tokens: scored tokens per second and peak memory.
3. trainers (330 s): for a Qwen2.5-0.5B- and a 1.5B-shaped model (random weights: speed and memory do not depend on
   them), pairs of 1,024 and 2,048 tokens (a 256-token prompt), with full fine-tuning, LoRA r = 16 and 4-bit nf4
   QLoRA r = 16 (when bitsandbytes loads): TRL's DPOTrainer, ADPO m = 256, ADPO static k = 1 and cADPO m = 256 with
   its weights given (no models scoring them). Each is built alone and trained a few steps (`--steps`, default 6), in
   an order rotated from cell to cell (interleaved); step time is the median after the first step (every step's
   time is kept), peak memory the GPU's peak allocation while it lived. Cells run small shapes first, so that a spent
   budget drops the largest; a cell that fails (out of memory, say) is recorded as failed and the others still run.
   `--trainers-only` runs this part alone, within its own budget.

Writes results.json (every figure, the GPU, the versions) and results.md (the tables, ratios to DPO) into `$OUT` when
it is set (the device tool's folder), else benchmarks/gpu/results/, after every part and trainer cell, so that a run
cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_objective import dpo_loss, median_seconds  # noqa: E402

from trl_adpo import adpo_loss  # noqa: E402
from trl_adpo.files import write_atomically  # noqa: E402

BUDGETS = {"objective": 30, "critical tokens": 45, "trainers": 330}
QWEN_SHAPES = {  # Qwen2.5-0.5B and -1.5B (config.json on the Hub), untied from their weights
    "0.5B": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2
    ),
    "1.5B": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2
    ),
}
VOCABULARY = 151936
METHODS = {
    "DPO": None,  # TRL's own DPOTrainer
    "ADPO m=256": dict(granularity="adaptive", num_segments=256),
    "ADPO static k=1": dict(granularity="static", window_size=1),
    "cADPO m=256": dict(granularity="adaptive", num_segments=256, positive_model="given", negative_model="given"),
}


@dataclass
class Plan:
    """The shapes and counts of a run: the GPU check, or the CPU smoke run."""

    device: str
    dtype: torch.dtype
    shapes: dict
    vocabulary: int
    lengths: tuple[int, ...]
    prompt: int
    modes: tuple[str, ...]
    pairs: int
    batch: int
    steps: int
    repeats: int
    critical_batch: tuple[int, int]


def gpu_plan() -> Plan:
    return Plan(
        "cuda",
        torch.bfloat16,
        QWEN_SHAPES,
        VOCABULARY,
        (1024, 2048),
        256,
        ("full", "lora", "qlora"),
        pairs=16,
        batch=2,
        steps=6,
        repeats=50,
        critical_batch=(8, 1024),
    )


def smoke_plan() -> Plan:
    tiny = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    return Plan(
        "cpu",
        torch.float32,
        {"tiny": tiny},
        1000,
        (48,),
        16,
        ("full", "lora"),
        pairs=4,
        batch=2,
        steps=3,
        repeats=3,
        critical_batch=(2, 48),
    )


def synchronize(plan: Plan) -> None:
    if plan.device == "cuda":
        torch.cuda.synchronize()


def peak_memory_mib(plan: Plan) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if plan.device == "cuda" else None


# --- 1. the objective ---------------------------------------------------------------------------------------------


def objective(plan: Plan) -> list[dict]:
    device, rows = torch.device(plan.device), []
    generator = torch.Generator().manual_seed(0)
    for length in plan.lengths:
        masks = [
            (torch.arange(length) < torch.randint(length // 2, length + 1, (16, 1), generator=generator)).to(device)
            for _ in range(2)
        ]
        leaves = [
            torch.randn(16, length, generator=generator).to(device, plan.dtype).requires_grad_(True) for _ in range(2)
        ]
        weights = torch.rand(16, length, generator=generator).to(device)
        losses = {
            "DPO": lambda: dpo_loss(*leaves, *masks, beta=0.1),
            "ADPO m=256": lambda: adpo_loss(*leaves, *masks, beta=0.1).losses,
            "ADPO static k=1": lambda: adpo_loss(*leaves, *masks, beta=0.1, granularity="static").losses,
            "cADPO m=256": lambda: adpo_loss(*leaves, *masks, beta=0.1, rejected_weights=weights).losses,
        }
        for name, loss in losses.items():
            seconds = median_seconds(lambda: loss().mean().backward(), device, plan.repeats)
            rows.append({"tokens": length, "method": name, "ms": 1e3 * seconds})
    return rows


# --- 2. the critical-token precompute -----------------------------------------------------------------------------


def build_model(plan: Plan, shape: dict, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=plan.vocabulary, tie_word_embeddings=True, max_position_embeddings=4096, **shape)
    with torch.device(plan.device):
        return Qwen2ForCausalLM(config).to(plan.dtype).eval()


def critical_tokens(plan: Plan) -> dict:
    from trl_adpo.critical_models import CriticalTokenModels

    shape = next(iter(plan.shapes.values()))
    models = CriticalTokenModels(
        {"positive": build_model(plan, shape, 1), "negative": build_model(plan, shape, 2)},
        {"positive": "positive", "negative": "negative"},
    )
    sequences, length = plan.critical_batch
    ids = torch.randint(plan.vocabulary, (sequences, length), device=plan.device)
    mask = torch.ones_like(ids)
    scored = torch.zeros(sequences, length - 1, dtype=torch.bool, device=plan.device)
    scored[:, length // 4 :] = True
    models.token_probs(ids, mask, scored)  # the first call checks the heads
    if plan.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    synchronize(plan)
    started = time.perf_counter()
    runs = 3
    for _ in range(runs):
        models.token_probs(ids, mask, scored)
    synchronize(plan)
    seconds = (time.perf_counter() - started) / runs
    result = {
        "model": f"Qwen2.5-{next(iter(plan.shapes))}-shaped, x2",
        "vocabulary": plan.vocabulary,
        "sequences": sequences,
        "tokens": length,
        "scored_tokens_per_second": int(scored.sum()) / seconds,
        "peak_mib": peak_memory_mib(plan),
    }
    models.free()
    return result


# --- 3. the trainers ----------------------------------------------------------------------------------------------


def word_tokenizer(vocabulary: int):
    """A word-level tokenizer of `vocabulary` words t0, t1, ... (t0 pads, t1 ends): text of any length in tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocabulary)}, unk_token="t2"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", eos_token="t1", unk_token="t2")


def pairs(plan: Plan, length: int):
    from datasets import Dataset

    generator = torch.Generator().manual_seed(length)

    def text(count: int) -> str:
        return " ".join(f"t{i}" for i in torch.randint(3, plan.vocabulary, (count,), generator=generator).tolist())

    completion = length - plan.prompt - 1  # EOS ends it
    return Dataset.from_list(
        [
            {"prompt": text(plan.prompt), "chosen": " " + text(completion), "rejected": " " + text(completion)}
            for _ in range(plan.pairs)
        ]
    )


class StepTimes:
    """A Trainer callback: the wall time of each optimizer step, synchronised with the device."""

    def __init__(self, plan: Plan):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_step_begin(inner, *args, **kwargs):
                synchronize(plan)
                inner.started = time.perf_counter()

            def on_step_end(inner, *args, **kwargs):
                synchronize(plan)
                self.times.append(time.perf_counter() - inner.started)

        self.times: list[float] = []
        self.callback = Callback()


def trainer_for(plan: Plan, shape: dict, mode: str, method: str, dataset, tokenizer, output_dir: Path):
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, Qwen2ForCausalLM
    from trl import DPOConfig, DPOTrainer

    from trl_adpo import ADPOConfig, ADPOTrainer

    common = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=plan.batch,
        max_steps=plan.steps,
        learning_rate=1e-6,
        logging_steps=plan.steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        max_length=None,
        bf16=plan.dtype == torch.bfloat16,
        use_cpu=plan.device == "cpu",
        gradient_checkpointing=False,
    )
    if mode == "qlora":  # transformers quantizes at load: the random weights go through a saved copy, once a size
        base = output_dir.parent / f"base-{'x'.join(str(v) for v in shape.values())}"
        if not (base / "config.json").is_file():
            build_model(plan, shape, 0).save_pretrained(base)
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=plan.dtype
        )
        model = Qwen2ForCausalLM.from_pretrained(base, quantization_config=quantization, device_map={"": 0})
    else:
        model = build_model(plan, shape, 0).train()
    lora = (
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if mode != "full" else None
    )
    ref_model = build_model(plan, shape, 0) if mode == "full" else None
    if METHODS[method] is None:
        return DPOTrainer(
            model,
            ref_model=ref_model,
            args=DPOConfig(**common),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
        )
    trainer_class = given_weights_trainer() if "positive_model" in METHODS[method] else ADPOTrainer
    return trainer_class(
        model,
        ref_model=ref_model,
        args=ADPOConfig(**common, **METHODS[method]),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
    )


def given_weights_trainer():
    from trl_adpo import ADPOTrainer

    class GivenWeightsTrainer(ADPOTrainer):
        """cADPO whose critical-token weights are given (uniform random), not scored by two models: a step of cADPO
        costs what it costs with real weights, which are data."""

        def _add_critical_token_weights(self):
            column = "rejected_ids" if "rejected_ids" in self.train_dataset.column_names else "rejected_input_ids"
            generator = torch.Generator().manual_seed(0)
            weights = [torch.rand(len(ids), generator=generator).tolist() for ids in self.train_dataset[column]]
            self.train_dataset = self.train_dataset.add_column("rejected_weights", weights)

    return GivenWeightsTrainer


def trainers(plan: Plan, deadline: float, work: Path, results: dict, save: Callable[[dict], None]) -> None:
    """The trainer cells, each appended to `results["trainers"]` and saved as it finishes."""
    rows, cell = results["trainers"], 0
    tokenizer = word_tokenizer(plan.vocabulary)
    for size, shape in plan.shapes.items():
        for length in plan.lengths:
            dataset = pairs(plan, length)
            for mode in plan.modes:
                if mode == "qlora" and not bitsandbytes_loads():
                    rows.append(
                        {"size": size, "tokens": length, "mode": mode, "skipped": "bitsandbytes does not load"}
                    )
                    save(results)
                    continue
                methods = list(METHODS)
                methods = methods[cell % len(methods) :] + methods[: cell % len(methods)]  # rotated: interleaved
                cell += 1
                for method in methods:
                    if time.perf_counter() > deadline:
                        rows.append(
                            {
                                "size": size,
                                "tokens": length,
                                "mode": mode,
                                "method": method,
                                "skipped": "time budget spent",
                            }
                        )
                        continue
                    try:
                        rows.append(train_one(plan, shape, size, mode, method, length, dataset, tokenizer, work))
                    except Exception as error:  # one cell's failure (out of memory, a version clash) is a figure too
                        failed = repr(error)[:300]
                        rows.append({"size": size, "tokens": length, "mode": mode, "method": method, "failed": failed})
                    print(f"   {json.dumps(rows[-1])}", flush=True)
                    save(results)


def train_one(plan, shape, size, mode, method, length, dataset, tokenizer, work) -> dict:
    from transformers.trainer_callback import PrinterCallback

    cuda = plan.device == "cuda"
    gc.collect()  # what the cell before left, also when it failed
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.reset_accumulated_memory_stats()
    leftover = torch.cuda.memory_allocated() / 2**20 if cuda else None  # what earlier cells still hold
    trainer = trainer_for(plan, shape, mode, method, dataset, tokenizer, work / f"{size}-{length}-{mode}-{method}")
    timer = StepTimes(plan)
    trainer.add_callback(timer.callback)
    trainer.remove_callback(PrinterCallback)  # the metrics of each log: the step times are what this measures
    trainer.train()
    return {
        "size": size,
        "tokens": length,
        "mode": mode,
        "method": method,
        "pairs_per_step": plan.batch,
        "step_seconds": statistics.median(timer.times[1:]),
        "step_times": timer.times,
        "peak_mib": peak_memory_mib(plan),
        # the slow first trainer of a full fine-tuning cell (docs/results.md): memory left over, allocator retries
        "leftover_mib": leftover,
        "allocation_retries": torch.cuda.memory_stats()["num_alloc_retries"] if cuda else None,
    }


def bitsandbytes_loads() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


# --- report -------------------------------------------------------------------------------------------------------


def versions() -> dict:
    import importlib.metadata as metadata

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def report(results: dict) -> str:
    lines = [
        f"# The GPU check: {results['device']}",
        "",
        f"Made by `{results['command']}` in {results['wall_s']:.0f} s.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
        "",
        "## The objective alone (forward + backward, 16 pairs, median ms; ratio to DPO's two sums)",
        "",
        "| tokens | method | ms | ratio to DPO |",
        "| --- | --- | --- | --- |",
    ]
    for row in results["objective"]:
        dpo = next(r["ms"] for r in results["objective"] if r["tokens"] == row["tokens"] and r["method"] == "DPO")
        lines.append(f"| {row['tokens']} | {row['method']} | {row['ms']:.3f} | {row['ms'] / dpo:.2f} |")
    c = results["critical_tokens"]
    if c:
        peak = f", peak {c['peak_mib']:.0f} MiB" if c["peak_mib"] is not None else ""
        lines += [
            "",
            "## The critical-token precompute",
            "",
            f"{c['model']}, vocabulary {c['vocabulary']}, {c['sequences']} sequences of {c['tokens']} tokens: "
            f"{c['scored_tokens_per_second']:.0f} scored tokens per second{peak}.",
        ]
    lines += [
        "",
        "## Trainers: step time (median, s) and peak memory (MiB); ratios to DPO in the same cell",
        "",
        "| size | tokens | mode | method | step s | ratio | peak MiB | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["trainers"]:
        if "skipped" in row or "failed" in row:
            why = f"skipped: {row['skipped']}" if "skipped" in row else f"failed: {row['failed']}"
            method = row.get("method", "all")
            lines.append(f"| {row['size']} | {row['tokens']} | {row['mode']} | {method} | {why} | | | |")
            continue
        dpo = next(
            (
                r
                for r in results["trainers"]
                if r.get("method") == "DPO"
                and "step_seconds" in r
                and (r["size"], r["tokens"], r["mode"]) == (row["size"], row["tokens"], row["mode"])
            ),
            None,
        )
        time_ratio = f"{row['step_seconds'] / dpo['step_seconds']:.3f}" if dpo else ""
        memory = f"{row['peak_mib']:.0f}" if row["peak_mib"] is not None else "n/a"
        memory_ratio = f"{row['peak_mib'] / dpo['peak_mib']:.3f}" if dpo and row["peak_mib"] is not None else ""
        lines.append(
            f"| {row['size']} | {row['tokens']} | {row['mode']} | {row['method']} | {row['step_seconds']:.3f} | "
            f"{time_ratio} | {memory} | {memory_ratio} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, a few steps, no 4-bit")
    parser.add_argument("--output-dir", type=Path, help="default: $OUT, else benchmarks/gpu/results/")
    parser.add_argument("--steps", type=int, help="optimizer steps per trainer cell (default: 6 on a GPU, 3 smoke)")
    parser.add_argument("--trainers-only", action="store_true", help="skip parts 1 and 2 (the objective, critical)")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --smoke for the CPU smoke run")
    plan = smoke_plan() if args.smoke else gpu_plan()
    if args.steps is not None:
        if args.steps < 2:
            parser.error(f"--steps {args.steps}: the step time is the median after the first step, so at least 2")
        plan.steps = args.steps
    output = args.output_dir or Path(os.environ.get("OUT") or HERE / "results")
    output.mkdir(parents=True, exist_ok=True)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    started = time.perf_counter()
    results = {
        "command": " ".join(["python benchmarks/gpu/run.py", *sys.argv[1:]]),
        "device": torch.cuda.get_device_name()
        if plan.device == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)",
        "versions": versions(),
        "budgets_s": BUDGETS,
    }
    results.update(objective=[], critical_tokens=None, trainers=[], wall_s=0.0)

    def save(results: dict) -> None:  # after every part and trainer cell: a run cut short keeps what it measured
        results["wall_s"] = time.perf_counter() - started
        write_atomically(output / "results.json", json.dumps(results, indent=1, default=str))
        write_atomically(output / "results.md", report(results))

    if not args.trainers_only:
        print("1. the objective", flush=True)
        results["objective"] = objective(plan)
        save(results)
        print("2. the critical-token precompute", flush=True)
        if time.perf_counter() - started < sum(list(BUDGETS.values())[:2]):
            results["critical_tokens"] = critical_tokens(plan)
        save(results)
    print("3. the trainers", flush=True)
    work = output / "work"
    budget = BUDGETS["trainers"] if args.trainers_only else sum(BUDGETS.values())
    trainers(plan, started + budget, work, results, save)
    shutil.rmtree(work, ignore_errors=True)
    save(results)
    print(report(results))


if __name__ == "__main__":
    main()
