"""Iterative on-policy rounds (`trl-adpo iterate`): what each round's stages left, the merge that makes a LoRA round's
policy the next round's start and reference, and the per-round report.

A run lives in one directory::

    OUTPUT_DIR/progress.json          the run's config and every finished stage, with what it measured
    OUTPUT_DIR/config/STAGE.yaml      the options of each stage, as its `trl-adpo` command reads them
    OUTPUT_DIR/round-0/evaluation.json                 the start, evaluated
    OUTPUT_DIR/round-R/samples.jsonl, pairs.jsonl, train/, model/ (LoRA: the merged policy), evaluation.json
    OUTPUT_DIR/rounds.json, accuracy_per_round.png     the report

A stage counts as finished only once `progress.json` says so (the file is replaced atomically), so a run killed in a
stage redoes that stage and nothing before it; sampling resumes its own file batch by batch.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..files import write_atomically

PROGRESS_FILE = "progress.json"
PLOT_FILE = "accuracy_per_round.png"


@dataclass
class Progress:
    """The finished stages of a run (by name, "round-1/train" say) and what each measured."""

    path: Path
    config: dict
    done: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, output_dir: Path, config: dict, config_name: str) -> Progress:
        """The progress of the run in `output_dir`, or a new one; refuses a directory that holds another run.

        A finished run may be continued with more rounds: every option but `rounds` must be the same.
        """
        path = output_dir / PROGRESS_FILE
        if not path.is_file():
            if output_dir.is_dir() and any(output_dir.iterdir()):
                raise ValueError(
                    f"output_dir {str(output_dir)!r} is not empty and holds no {PROGRESS_FILE}: it is not an iterate "
                    "run this command could resume. Choose a new output_dir."
                )
            output_dir.mkdir(parents=True, exist_ok=True)
            progress = cls(path, config)
            progress.save()
            return progress
        try:
            saved = json.loads(path.read_text())
            saved["config"], saved["done"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}: not the progress file of an iterate run ({type(error).__name__}: {error}); it is damaged. "
                "Start "
                "the run again in a new output_dir (or delete this one to start it over)."
            ) from None
        for key in sorted(set(saved["config"]) | set(config)):
            if key != "rounds" and saved["config"].get(key) != config.get(key):
                raise ValueError(
                    f"output_dir {str(output_dir)!r} holds a run of another config: {key} was "
                    f"{saved['config'].get(key)!r} there and is {config.get(key)!r} in {config_name}. Resuming would "
                    "mix two runs' inputs: resume with the config it was started with, or choose a new output_dir."
                )
        return cls(path, config, saved["done"])

    def save(self) -> None:
        write_atomically(self.path, json.dumps({"config": self.config, "done": self.done}, indent=1))

    def finish(self, stage: str, result: dict) -> None:
        self.done[stage] = result
        self.save()


def merge_adapter(adapter_dir: Path, output: Path) -> Path:
    """Merge a LoRA adapter into its base, loaded in full precision (not quantized), and save the merged model and
    the adapter's tokenizer to `output`, through a temporary directory renamed at the end."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype="auto").merge_and_unload()
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(partial)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(partial, output)
    return output


def round_rows(progress: Progress, rounds: int) -> list[dict]:
    """One row per evaluated round: accuracy with its interval, pairs built, the final reward accuracy of training."""
    rows = []
    for r in range(rounds + 1):
        evaluation = progress.done.get(f"round-{r}/evaluate")
        if evaluation is None:
            continue
        rows.append(
            {
                "round": r,
                **evaluation,
                "pairs": progress.done.get(f"round-{r}/pairs", {}).get("pairs"),
                "reward_accuracy": progress.done.get(f"round-{r}/train", {}).get("reward_accuracy"),
            }
        )
    return rows


def round_table(rows: list[dict]) -> str:
    """The rows as an aligned terminal table."""
    lines = [f"{'round':>5}  {'accuracy':>8}  {'95% interval':>15}  {'pairs':>6}  {'reward acc.':>11}"]
    for row in rows:
        pairs = "" if row["pairs"] is None else str(row["pairs"])
        reward = "" if row["reward_accuracy"] is None else f"{row['reward_accuracy']:.2f}"
        lines.append(
            f"{row['round']:>5}  {row['accuracy']:>8.1%}  {row['accuracy_low']:>6.1%} - {row['accuracy_high']:>6.1%}  "
            f"{pairs:>6}  {reward:>11}"
        )
    return "\n".join(lines)


def plot_rounds(rows: list[dict], output: Path, title: str) -> Path:
    """Accuracy per round with its 95% interval, as a PNG; the drawn points go into its metadata (JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    rounds = [row["round"] for row in rows]
    accuracy = [100 * row["accuracy"] for row in rows]
    errors = [
        [a - 100 * row["accuracy_low"] for a, row in zip(accuracy, rows)],
        [100 * row["accuracy_high"] - a for a, row in zip(accuracy, rows)],
    ]
    axis.errorbar(rounds, accuracy, yerr=errors, fmt="o-", capsize=4)
    axis.set_xticks(rounds)
    axis.set_xlabel("round (0: the start)")
    axis.set_ylabel("held-out accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110, metadata={"Description": json.dumps(rows)})
    write_atomically(output, png.getvalue())
    plt.close(figure)
    return output


def evaluation_result(summary: dict) -> dict:
    """What the report keeps of an evaluation's summary (`trl_adpo.pipeline.evaluation.score`)."""
    return {key: summary[key] for key in ("accuracy", "accuracy_low", "accuracy_high", "problems")}
