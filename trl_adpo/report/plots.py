"""The paper's Figure 2 for a run: how the chosen and rejected log-probs move during training, with the reward margin,
the reward and segment accuracies and the segment margin, from the run's `trainer_state.json`.

A second run is drawn on the same axes (e.g. DPO against ADPO). The number of points of each curve is written into
the PNG's metadata (key ``Description``, JSON), so that what was drawn can be checked against the logs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ..files import write_atomically

PANELS = (
    ("log-prob of the completion", (("logps/chosen", "chosen", "-"), ("logps/rejected", "rejected", "--"))),
    ("reward margin (chosen - rejected)", (("rewards/margins", "margin", "-"),)),
    ("accuracy", (("rewards/accuracies", "reward accuracy", "-"), ("adpo/segment_accuracy", "segment accuracy", ":"))),
    ("mean segment margin", (("adpo/segment_margin", "segment margin", "-"),)),
)
NLL_PANEL = ("NLL term of the chosen completions", (("adpo/nll", "NLL", "-"),))
"""Drawn as a fifth panel when a run logs the NLL term (`loss_type: [sigmoid, sft]`)."""


def log_history(run_dir: Path) -> list[dict]:
    """The logged entries of a run: its `trainer_state.json` (in the run or its last checkpoint)."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1]), reverse=True
    )
    state = next((path for path in candidates if path.is_file()), None)
    if state is None:
        raise FileNotFoundError(
            f"{run_dir} has no trainer_state.json: give the output_dir of a finished run (trl-adpo train saves the "
            "state at the end) or one of its checkpoint directories."
        )
    try:
        return json.loads(state.read_text())["log_history"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{state}: not a trainer state Trainer wrote ({type(error).__name__}: {error}); the file is damaged. Plot "
            "the run from one of its checkpoints' trainer_state.json, or train it again."
        ) from None


def has_metrics(history: list[dict]) -> bool:
    """Whether a log history holds any metric the plot draws."""
    keys = {prefix + key for _, panel in (*PANELS, NLL_PANEL) for key, _, _ in panel for prefix in ("", "eval_")}
    return any(keys & set(entry) for entry in history)


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of a logged metric (``eval_`` + key for evaluations)."""
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


def draw(histories: list[list[dict]], labels: list[str]):
    """The figure of one or more runs' log histories, and the points drawn of each metric, by run label.

    One panel per metric group (`PANELS`, and `NLL_PANEL` when a run logged the NLL term); a metric logged at a
    single step is drawn as a point; the legend sits below the panels, where it covers no line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(PANELS)
    if any("adpo/nll" in entry for history in histories for entry in history):
        panels.append(NLL_PANEL)
    columns = (len(panels) + 1) // 2
    figure, axes = plt.subplots(2, columns, figsize=(5.5 * columns, 7.5), sharex=True, squeeze=False)
    drawn: dict[str, dict[str, int]] = {}
    for run, (label, history) in enumerate(zip(labels, histories)):
        drawn[label] = {}
        for axis, (title, keys) in zip(axes.flat, panels):
            for (key, name, style), eval_marker in zip(keys, "ox"):
                for prefix, marker in (("", None), ("eval_", eval_marker)):
                    steps, values = series(history, prefix + key)
                    if not steps:
                        continue
                    drawn[label][prefix + key] = len(steps)
                    axis.plot(
                        steps,
                        values,
                        linestyle=style if marker is None else "none",
                        marker=marker or ("o" if len(steps) == 1 else None),
                        color=f"C{run}",
                        label=f"{label}: {name}" + (" (eval)" if prefix else ""),
                    )
            axis.set_title(title)
    for index, axis in enumerate(axes.flat[len(panels) :], start=len(panels)):
        axis.set_visible(False)  # an empty slot: the panel above it shows its steps
        axes.flat[index - columns].tick_params(labelbottom=True)
        axes.flat[index - columns].set_xlabel("training step")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("training step")
    handles = {line.get_label(): line for axis in axes.flat for line in axis.lines}
    figure.suptitle("Training dynamics: chosen (solid) and rejected (dashed) log-probs, margins, accuracies")
    if handles:
        figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    rows_of_legend = (len(handles) + 3) // 4
    figure.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.01, 1, 1))
    return figure, drawn


def plot_training_dynamics(run_dirs: list[Path], output: Path, labels: list[str] | None = None) -> Path:
    """Draw one or two runs' training dynamics into `output` (PNG) and return its path."""
    import matplotlib.pyplot as plt

    labels = labels or [Path(run_dir).resolve().name for run_dir in run_dirs]
    figure, drawn = draw([log_history(Path(run_dir)) for run_dir in run_dirs], labels)
    if not any(drawn.values()):
        plt.close(figure)
        raise ValueError(f"{', '.join(map(str, run_dirs))}: no training metrics were logged (set logging_steps).")
    output = Path(output)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110, metadata={"Description": json.dumps(drawn)})
    write_atomically(output, png.getvalue())
    plt.close(figure)
    return output
