"""What a training run prints while it runs: Trainer's progress bar and, at each logging step, one aligned line of
the numbers that matter, instead of the whole metrics dictionary (which still goes to `trainer_state.json` and
`report_to`). Evaluation runs without a bar of its own.
"""

from __future__ import annotations

from transformers.trainer_callback import PrinterCallback, ProgressCallback

COLUMNS = (
    ("loss", "loss", "{:.4f}"),
    ("rewards/accuracies", "reward acc", "{:.2f}"),
    ("rewards/margins", "margin", "{:+.3f}"),
    ("logps/chosen", "logp chosen", "{:.1f}"),
    ("logps/rejected", "logp rejected", "{:.1f}"),
    ("adpo/segment_accuracy", "segment acc", "{:.2f}"),
    ("adpo/nll", "nll", "{:.3f}"),
    ("mean_token_accuracy", "token acc", "{:.2f}"),
)
"""The metrics a line shows where the run logs them (a train-critical SFT run has no rewards): key, heading, format."""


def width(heading: str) -> int:
    """A column's width: its heading, or a value such as -131.9 or 18.7150."""
    return max(len(heading), 8)


class CompactProgress(ProgressCallback):
    """Trainer's progress bar (none with `disable_tqdm`), and each log as one aligned line: the step, then the
    `COLUMNS` the run logs; evaluation logs are marked "eval"."""

    def __init__(self):
        super().__init__()
        self.columns: list[tuple[str, str, str]] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not args.disable_tqdm:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        """No bar for evaluation: it runs inside the training bar, or is short."""

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        evaluation = any(key.startswith("eval_") for key in logs)
        values = {key.removeprefix("eval_"): value for key, value in logs.items()}
        if self.columns is None:
            self.columns = [column for column in COLUMNS if column[0] in values]
            if "rewards/accuracies" in values:  # a preference run: its token accuracy is no headline
                self.columns = [column for column in self.columns if column[0] != "mean_token_accuracy"]
            if not self.columns:
                return
            self._write(
                f"{'':4} {'step':>6}  " + "  ".join(f"{heading:>{width(heading)}}" for _, heading, _ in self.columns)
            )
        if not any(key in values for key, _, _ in self.columns):
            return  # the closing summary (train_runtime...): the command prints its own
        cells = [
            f"{form.format(values[key]) if key in values else '':>{width(heading)}}"
            for key, heading, form in self.columns
        ]
        self._write(f"{'eval' if evaluation else '':4} {state.global_step:>6}  " + "  ".join(cells))

    def _write(self, line: str) -> None:
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line, flush=True)


def use_compact_progress(trainer) -> None:
    """Replace `trainer`'s progress bar and metrics printer by `CompactProgress`."""
    for callback in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(CompactProgress())
