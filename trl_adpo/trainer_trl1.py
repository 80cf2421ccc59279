"""`ADPOTrainer` on TRL 1.x, whose `DPOTrainer` computes forward passes, loss and metrics in one `_compute_loss`.

TRL 1.x has no hook between its forward passes and its loss, so this glue keeps TRL's `_compute_loss` whole, for its
forwards and its metrics, and records with forward hooks the per-token log-probs those forwards return (TRL's fused
LM head puts them on `outputs.log_probs`); the loss it returns is replaced by the ADPO loss of the same log-probs.
Precomputed reference log-probs are stored per token (TRL stores sums) and summed again for TRL's own metrics.
Checked against TRL 1.16.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import trl
from datasets import Dataset
from torch import nn
from trl import DPOTrainer
from trl.models import prepare_deepspeed

from .compat import INSTALL_TESTED
from .config import ADPOConfig
from .data import BadRowError, check_preference_dataset, check_tokenized_dataset
from .per_token import (
    LOSS_COLUMNS,
    REF_COLUMNS,
    PerTokenCollator,
    left_align,
    with_step_columns,
    without_per_token_columns,
)
from .trainer_common import ADPOTrainerMixin

ROW_COLUMN = "adpo_row"  # the row numbers of a raw dataset, to name rows that TRL's tokenization drops


@contextmanager
def recorded_log_probs(*modules: nn.Module) -> Iterator[dict[nn.Module, list[torch.Tensor | None]]]:
    """Record the `log_probs` output of every forward call of `modules`, in call order, while the context is open."""
    records: dict[nn.Module, list[torch.Tensor | None]] = {module: [] for module in modules}
    handles = [
        module.register_forward_hook(lambda m, args, output: records[m].append(getattr(output, "log_probs", None)))
        for module in modules
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def check_forwards(
    records: dict[nn.Module, list[torch.Tensor | None]], policy: nn.Module, reference: nn.Module | None, training: bool
) -> None:
    """Fail loudly, naming the TRL version, unless TRL's forwards were the ones this glue reads: one forward of the
    policy, then one of the reference (the policy again, adapters disabled, when it is its own reference; none when
    reference log-probs are precomputed), each returning per-token `log_probs`. In training, the policy's forward is
    the one that carries gradients, which tells the two apart when the policy is its own reference."""
    expected = {policy: 2 if reference is policy else 1, **({reference: 1} if reference not in (None, policy) else {})}
    found = {module: len(calls) for module, calls in records.items()}
    problem = None
    if found != expected:

        def counts(table: dict) -> str:
            return ", ".join(
                f"{'the policy' if module is policy else 'the reference'} {n}" for module, n in table.items()
            )

        problem = f"forwards recorded: {counts(found)}, where the glue expects {counts(expected)}"
    elif any(call is None for calls in records.values() for call in calls):
        problem = "a forward returned no per-token `log_probs` (TRL's fused LM head no longer gives them)"
    elif training and not (
        records[policy][0].requires_grad and (reference is not policy or not records[policy][1].requires_grad)
    ):
        problem = "the policy's forward (the one with gradients) did not come before the reference's"
    if problem:
        raise RuntimeError(
            f"TRL {trl.__version__}: DPOTrainer's forwards are not the ones ADPOTrainer's TRL 1.x glue reads "
            f"(checked against TRL 1.16): {problem}. Install a tested TRL: {INSTALL_TESTED}."
        )


class ADPOTrainer(ADPOTrainerMixin, DPOTrainer):
    """Drop-in replacement for `trl.DPOTrainer` that trains with the ADPO loss.

    Takes the same arguments as `DPOTrainer`, with an `ADPOConfig` as `args`. The reference is whatever the user set
    up: an explicit `ref_model`, the PEFT base model with adapters disabled, or reference log-probs precomputed per
    token (`precompute_ref_log_probs=True`). Logs TRL's DPO metrics, whose rewards stay `beta * summed log-ratio`,
    plus `adpo/feedback_length`, `adpo/segment_accuracy` and `adpo/segment_margin`.
    """

    def __init__(self, model, ref_model=None, args: ADPOConfig | None = None, data_collator=None, **kwargs):
        self._check_reference_vocabulary(model, ref_model)
        super().__init__(model, ref_model, self._adpo_args(model, args), data_collator, **kwargs)
        self._refuse_unsupported_models(
            getattr(self.model.config, "is_encoder_decoder", False), self._is_vision_dataset
        )
        self.data_collator = PerTokenCollator(self.data_collator)
        self._add_critical_token_weights()

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """TRL's preparation, between the checks of the raw rows and of the tokenized ones.

        TRL drops the rows whose prompt alone fills `max_length`; ADPO refuses them instead, by their row number.
        """
        dataset = without_per_token_columns(dataset, dataset_name)
        if not isinstance(dataset, Dataset):  # streamed: no row checks (step granularity is refused)
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            return with_step_columns(dataset, processing_class, args, dataset_name, "_ids")
        check_preference_dataset(dataset, dataset_name)
        rows = len(dataset)
        dataset = super()._prepare_dataset(
            dataset.add_column(ROW_COLUMN, list(range(rows))), processing_class, args, dataset_name
        )
        if len(dataset) < rows:
            dropped = sorted(set(range(rows)) - set(dataset[ROW_COLUMN]))
            raise BadRowError(
                dataset_name,
                dropped[0],
                f" has no `chosen` token left to score after truncation to "
                f"max_length={args.max_length} (truncation_mode={args.truncation_mode!r}): its prompt alone fills "
                f"max_length; {len(dropped)} row(s) in all. Raise `max_length` or drop those rows.",
            )
        dataset = dataset.remove_columns(ROW_COLUMN)
        check_tokenized_dataset(dataset, dataset_name, args.max_length, args.truncation_mode, suffix="_ids")
        return with_step_columns(dataset, processing_class, args, dataset_name, "_ids")

    def _reference_token_logps(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned per-token reference log-probs ``(2B, T)`` of a batch (chosen rows first) and their mask."""
        with recorded_log_probs(model) as records:
            super().compute_ref_log_probs(model, batch)
        check_forwards(records, model, None, training=False)
        scored = batch["completion_mask"][:, 1:].bool()
        return left_align(records[model][0][:, -scored.shape[1] :], scored)

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """`dataset` plus each row's per-token reference log-probs (TRL stores their sums).

        As TRL does: this runs before the model is prepared, so with DeepSpeed and no `ref_model` the policy goes
        through an inference engine that places (ZeRO-1/2) or gathers (ZeRO-3) its parameters.
        """
        model = self.ref_model or self.model
        if self.ref_model is None and self.is_deepspeed_enabled:
            if self._precompute_engine is None:
                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            model = self._precompute_engine

        def reference(batch):
            logps, mask = self._reference_token_logps(model, batch)
            return logps.chunk(2), mask.chunk(2)

        return self._add_per_token_columns(
            dataset, batch_size, f"Per-token reference log-probs of the {name} dataset", REF_COLUMNS, reference
        )

    def _scored_sequences(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return batch["input_ids"], batch["attention_mask"], batch["completion_mask"][:, 1:].bool()

    def _compute_loss(self, model, inputs, return_outputs):
        """TRL's forward passes and metrics, with the ADPO loss of the per-token log-probs they computed."""
        per_token = {column: inputs[column] for column in LOSS_COLUMNS if column in inputs}
        precomputed = self.precompute_ref_logps
        # TRL passes the rest to the model; reference columns only where this config precomputes them
        inputs = {
            key: value
            for key, value in inputs.items()
            if key not in per_token and (precomputed or key not in REF_COLUMNS)
        }
        if precomputed:  # TRL's metrics read summed reference log-probs
            reference_logps = (inputs[REF_COLUMNS[0]], inputs[REF_COLUMNS[1]])
            inputs = {**inputs, **{column: inputs[column].sum(dim=1) for column in REF_COLUMNS}}
        policy = self.accelerator.unwrap_model(model)
        reference = None if precomputed else (self.ref_model if self.ref_model is not None else policy)
        with recorded_log_probs(*{policy, reference} - {None}) as records:
            result = super()._compute_loss(model, inputs, return_outputs)

        check_forwards(records, policy, reference, training=self.model.training and torch.is_grad_enabled())
        scored = inputs["completion_mask"][:, 1:].bool()
        logps, mask = left_align(records[policy][0][:, -scored.shape[1] :], scored)
        if not precomputed:  # the policy's own second forward when the reference is its adapter-free base
            reference_calls = records[reference][1 if reference is policy else 0]
            reference_logps = left_align(reference_calls[:, -scored.shape[1] :], scored)[0].chunk(2)
        output = self._adpo(logps.chunk(2), reference_logps, mask.chunk(2), per_token)
        mode = "train" if self.model.training else "eval"
        for key, value in self._segment_metrics().items():
            self._metrics[mode][key].append(value)
        adpo_weight, nll_weight = self.args.loss_term_weights
        loss, nll = adpo_weight * output.losses.mean(), None
        if nll_weight > 0:  # loss type "sft": the chosen completions' NLL
            nll = self._nll(logps.chunk(2)[0], mask.chunk(2)[0])
            loss = loss + nll_weight * nll
            self._metrics[mode]["adpo/nll"].append(self.accelerator.gather_for_metrics(nll.detach()).mean().item())
        self._stop_on_non_finite(loss, nll)
        return (loss, result[1]) if return_outputs else loss
