"""The few lines a run ends with: what changed on the eval pairs from before training to after."""

from __future__ import annotations

ROWS = (
    ("rewards/accuracies", "reward accuracy", "{:.2f}"),
    ("logps/chosen", "chosen log-prob", "{:.1f}"),
    ("logps/rejected", "rejected log-prob", "{:.1f}"),
    ("adpo/segment_accuracy", "segment accuracy", "{:.2f}"),
)


def eval_summary(history: list[dict]) -> str | None:
    """Before -> after on the eval pairs, from a run's log history; "before" needs an evaluation at step 0
    (`eval_on_start`). None when the run never evaluated."""
    evaluations = [entry for entry in history if "eval_loss" in entry]
    if not evaluations:
        return None
    before = evaluations[0] if evaluations[0].get("step") == 0 and len(evaluations) > 1 else None
    after = evaluations[-1]
    lines = ["On the eval pairs, " + ("before -> after training:" if before else "after training:")]
    for key, name, form in ROWS:
        if f"eval_{key}" not in after:
            continue
        value = form.format(after[f"eval_{key}"])
        if before is not None:
            change = after[f"eval_{key}"] - before[f"eval_{key}"]
            value = f"{form.format(before[f'eval_{key}'])} -> {value}" + (
                f"  ({change:+.1f})" if key.startswith("logps") else ""
            )
        lines.append(f"  {name:<18} {value}")
    return "\n".join(lines)
