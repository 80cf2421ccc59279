"""`ADPOTrainer` on TRL 0.28.x, whose `DPOTrainer` exposes `concatenated_forward` and `dpo_loss`.

The glue is three overrides. `concatenated_forward` also returns the per-token log-probs of each completion, aligned
so that column 0 is its first scored token; `dpo_loss` turns the per-token log-ratios into the ADPO loss; and the
reference side (`compute_ref_log_probs`, `precompute_ref_log_probs=True`) works on per-token log-probs instead of
sums. Everything else, from data preparation to PEFT and model cards, is TRL's own. Checked against TRL 0.28.0.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_from_disk
from torch import nn
from torch.utils.data import DataLoader
from transformers import set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import DPOTrainer
from trl.trainer.utils import flush_left, flush_right, selective_log_softmax

from .checkpoints import resolve_checkpoint
from .config import ADPOConfig
from .data import check_preference_dataset, check_tokenized_dataset
from .per_token import (
    LOSS_COLUMNS,
    REF_COLUMNS,
    PerTokenCollator,
    left_align,
    with_step_columns,
    without_per_token_columns,
)
from .trainer_common import ADPOTrainerMixin

REFERENCE_DIR = "adpo_reference_logps"  # in a checkpoint: the precomputed per-token reference log-probs


class ADPOTrainer(ADPOTrainerMixin, DPOTrainer):
    """Drop-in replacement for `trl.DPOTrainer` that trains with the ADPO loss.

    Takes the same arguments as `DPOTrainer`, with an `ADPOConfig` as `args`. The reference is whatever the user set
    up: an explicit `ref_model`, the PEFT base model with adapters disabled, or reference log-probs precomputed
    per token (`precompute_ref_log_probs=True`). Logs TRL's DPO metrics, whose rewards stay
    `beta * summed log-ratio`, plus `adpo/feedback_length` (segments per pair), `adpo/segment_accuracy` (share of
    segments whose chosen reward is higher) and `adpo/segment_margin` (mean segment reward margin).
    """

    _last_nll: torch.Tensor | None = None

    def __init__(self, model, ref_model=None, args: ADPOConfig | None = None, data_collator=None, **kwargs):
        self._check_reference_vocabulary(model, ref_model)
        args = self._adpo_args(model, args)
        if kwargs.get("peft_config") is not None:
            # TRL 0.28 creates the LoRA adapters before Trainer seeds: seed first, so that they start the same in every
            # run and every process (as on TRL 1.x)
            set_seed(args.seed)
        super().__init__(model, ref_model, args, data_collator, **kwargs)
        self._refuse_unsupported_models(self.is_encoder_decoder, self.is_vision_model)
        self.data_collator = PerTokenCollator(self.data_collator)
        self._add_critical_token_weights()

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = without_per_token_columns(dataset, dataset_name)
        if isinstance(dataset, Dataset):
            check_preference_dataset(dataset, dataset_name)
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if isinstance(dataset, Dataset):
            check_tokenized_dataset(dataset, dataset_name, args.max_length, args.truncation_mode)
        return with_step_columns(dataset, processing_class, args, dataset_name, "_input_ids")

    def _flush_and_truncate(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flush rows left and truncate them to `max_length` as `DPOTrainer` does; the first tensor is the mask."""
        if self.max_length is None or self.max_length >= tensors[0].shape[1]:
            return flush_left(*tensors)
        if self.truncation_mode == "keep_start":
            return tuple(t[:, : self.max_length] for t in flush_left(*tensors))
        return flush_left(*(t[:, -self.max_length :] for t in flush_right(*tensors)))

    def _sequences(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``(2B, L)`` input ids, attention mask and completion-token mask of a batch (chosen rows first), flushed
        left and truncated as `DPOTrainer` does."""
        inputs = self.concatenated_inputs(batch, padding_value=self.pad_token_id)
        prompt_mask, completion_mask = inputs["prompt_attention_mask"], inputs["completion_attention_mask"]
        attention_mask, input_ids, completion_positions = self._flush_and_truncate(
            torch.cat((prompt_mask, completion_mask), dim=1),
            torch.cat((inputs["prompt_input_ids"], inputs["completion_input_ids"]), dim=1),
            torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1),
        )
        return input_ids, attention_mask, completion_positions

    def _scored_sequences(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        input_ids, attention_mask, completion_positions = self._sequences(batch)
        return input_ids, attention_mask, completion_positions[:, 1:].bool()

    def concatenated_forward(
        self, model: nn.Module, batch: dict[str, Any], is_ref_model: bool = False
    ) -> dict[str, torch.Tensor]:
        """Run `model` on the chosen and rejected sequences of `batch` in one pass.

        Returns TRL's outputs (`chosen_logps`, `rejected_logps`: ``(B,)`` summed log-probs; `mean_chosen_logits`,
        `mean_rejected_logits`) and the per-token log-probs behind them: `chosen_token_logps` and
        `rejected_token_logps` ``(B, T)``, column 0 the first scored completion token, with their boolean masks
        `chosen_mask` and `rejected_mask` ``(B, T)``, and the batch's per-token loss columns (step segment ids,
        critical-token weights), aligned alike, when it has them; with an NLL term, the chosen completions' `nll_loss`,
        except for the reference (`is_ref_model`).
        """
        num_pairs = batch["prompt_input_ids"].shape[0]
        input_ids, attention_mask, completion_positions = self._sequences(batch)
        # Logits at position i predict token i + 1: score tokens from `first` on (the first position has no context).
        first = 1
        model_kwargs: dict[str, Any] = {"attention_mask": attention_mask, "use_cache": False}
        if self.use_logits_to_keep:
            first = max(1, int(completion_positions.nonzero(as_tuple=True)[1].min()))
            model_kwargs["logits_to_keep"] = input_ids.shape[1] - first + 1
        logits = model(input_ids, **model_kwargs).logits[:, -(input_ids.shape[1] - first + 1) : -1]
        scored = completion_positions[:, first:].bool()
        token_logps = selective_log_softmax(logits, input_ids[:, first:])

        aligned, mask = left_align(token_logps, scored)
        sums = aligned.sum(dim=1)
        nll = {}
        if self.args.loss_term_weights[1] > 0 and not is_ref_model:  # the NLL term (rpo_alpha, loss type "sft")
            nll["nll_loss"] = self._nll(aligned[:num_pairs], mask[:num_pairs])
            self._last_nll = nll["nll_loss"].detach()

        return {
            **nll,
            "chosen_logps": sums[:num_pairs],
            "rejected_logps": sums[num_pairs:],
            "mean_chosen_logits": logits[:num_pairs][scored[:num_pairs]].mean(),
            "mean_rejected_logits": logits[num_pairs:][scored[num_pairs:]].mean(),
            "chosen_token_logps": aligned[:num_pairs],
            "rejected_token_logps": aligned[num_pairs:],
            "chosen_mask": mask[:num_pairs],
            "rejected_mask": mask[num_pairs:],
            **{column: batch[column] for column in LOSS_COLUMNS if column in batch},
        }

    def _reference_forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """`concatenated_forward` of the reference: `ref_model`, or the policy with its adapters disabled."""
        if self.ref_model is None and not self.is_peft_model and self.state.global_step > 0:
            raise ValueError(
                "precompute_ref_log_probs=True without a ref_model makes the initial policy the reference, so "
                "reference log-probs can only be computed before the first training step, and this batch has none. "
                "Pass every eval dataset to the trainer at construction (they are precomputed with the train "
                "dataset), or pass a `ref_model`."
            )
        autocast = (
            torch.autocast(self.accelerator.device.type) if self._peft_has_been_casted_to_bf16 else nullcontext()
        )
        with torch.no_grad(), autocast:
            if self.ref_model is None:
                with self.null_ref_context():
                    return self.concatenated_forward(self.model, batch, is_ref_model=True)
            return self.concatenated_forward(self.ref_model, batch, is_ref_model=True)

    def compute_ref_log_probs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token reference log-probs ``(B, T)`` of the chosen and rejected completions, aligned as the policy's."""
        output = self._reference_forward(batch)
        return output["chosen_token_logps"], output["rejected_token_logps"]

    def _with_reference_columns(self, dataset: Dataset, batch_size: int, name: str) -> Dataset:
        """`dataset` with each row's per-token reference log-probs, unless it has them already."""
        if REF_COLUMNS[0] in dataset.column_names:
            return dataset

        def reference(batch):
            output = self._reference_forward(batch)
            logps = (output["chosen_token_logps"], output["rejected_token_logps"])
            return logps, (output["chosen_mask"], output["rejected_mask"])

        return self._add_per_token_columns(
            dataset, batch_size, f"Per-token reference log-probs of the {name} dataset", REF_COLUMNS, reference
        )

    def _precompute_eval_datasets(self) -> None:
        """Add per-token reference log-probs to every eval dataset given at construction."""
        batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
        self._set_datasets(
            {
                name: self._with_reference_columns(dataset, batch_size, name)
                for name, dataset in self._datasets().items()
                if name != "train"
            }
        )

    def get_train_dataloader(self) -> DataLoader:
        """TRL's train dataloader; with `precompute_ref_log_probs`, first adds per-token reference log-probs to the
        train and eval datasets, while the policy is still the reference."""
        if self.precompute_ref_log_probs:
            batch_size = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
            self.train_dataset = self._with_reference_columns(self.train_dataset, batch_size, "train")
            self._precompute_eval_datasets()
        self._precomputed_train_ref_log_probs = True  # TRL's own precomputation stores sums: skip it
        return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        """TRL's eval dataloader; with `precompute_ref_log_probs`, the dataset gets per-token reference log-probs."""
        if self.precompute_ref_log_probs:
            given_at_construction = eval_dataset is None or eval_dataset is self.eval_dataset
            self._precompute_eval_datasets()
            if given_at_construction:
                eval_dataset = self.eval_dataset
            elif isinstance(eval_dataset, Dataset):
                batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
                eval_dataset = self._with_reference_columns(eval_dataset, batch_size, "eval")
        self._precomputed_eval_ref_log_probs = True  # TRL's own precomputation stores sums: skip it
        return super().get_eval_dataloader(eval_dataset)

    def _reference_snapshots(self) -> dict[str, Dataset]:
        """The datasets whose per-token reference log-probs a checkpoint keeps, by name."""
        return {name: d for name, d in self._datasets().items() if REF_COLUMNS[0] in d.column_names}

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, plus the precomputed per-token reference log-probs, which resuming needs. They are written
        first, so that trainer_state.json stays the checkpoint's last file (what marks it complete)."""
        if self.precompute_ref_log_probs and self.is_world_process_zero():
            checkpoint = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            for name, dataset in self._reference_snapshots().items():
                dataset.select_columns(list(REF_COLUMNS)).save_to_disk(checkpoint / REFERENCE_DIR / name)
        super()._save_checkpoint(model, trial)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, from the newest complete checkpoint; on resuming with `precompute_ref_log_probs`, first
        restores the per-token reference log-probs the checkpoint saved: the weights it restores are no longer the
        reference."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if self.precompute_ref_log_probs and checkpoint is not None:
            self._restore_reference_columns(Path(checkpoint) / REFERENCE_DIR)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _restore_reference_columns(self, directory: Path) -> None:
        if not directory.is_dir():
            if self.ref_model is None and not self.is_peft_model:
                raise ValueError(
                    f"{directory.parent} holds no per-token reference log-probs, and with "
                    "precompute_ref_log_probs=True and no ref_model the reference was the initial policy, which the "
                    "checkpoint no longer holds. Resume from a checkpoint saved by ADPOTrainer, or pass a ref_model."
                )
            return  # the reference (ref_model, or the PEFT base) is unchanged: it is computed again
        datasets = self._datasets()
        self._set_datasets(
            {
                saved.name: self._add_columns(datasets[saved.name], load_from_disk(saved))
                for saved in sorted(directory.iterdir())
            }
        )

    @staticmethod
    def _add_columns(dataset: Dataset, columns: Dataset) -> Dataset:
        if len(columns) != len(dataset):
            raise ValueError(
                f"The checkpoint's reference log-probs cover {len(columns)} rows but the dataset has {len(dataset)}: "
                "resume with the dataset the run started with."
            )
        for column in REF_COLUMNS:
            if column not in dataset.column_names:
                dataset = dataset.add_column(column, columns[column])
        return dataset

    def dpo_loss(
        self,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor,
        ref_rejected_logps: torch.Tensor,
        loss_type: str = "sigmoid",
        model_output: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ADPO loss of a batch from the per-token log-probs of the policy (in `model_output`) and the reference.

        Unlike `DPOTrainer.dpo_loss`, `ref_chosen_logps` and `ref_rejected_logps` are per-token ``(B, T')``, aligned
        as `model_output["chosen_token_logps"]`; `chosen_logps` and `rejected_logps` (sums) are not used.

        With `loss_type` "sft" (the NLL term, which TRL weighs and adds), the batch's NLL for every pair.

        Returns:
            ``(B,)`` per-pair losses, and the chosen and rejected rewards ``(B,)``: `beta` times the log-ratio summed
            over the whole completion, as DPO's (unweighted, whatever the critical-token weights).
        """
        if loss_type == "sft":
            nll = model_output["nll_loss"].expand(chosen_logps.shape[0])
            return nll, torch.zeros_like(chosen_logps), torch.zeros_like(rejected_logps)
        output = self._adpo(
            (model_output["chosen_token_logps"], model_output["rejected_token_logps"]),
            (ref_chosen_logps, ref_rejected_logps),
            (model_output["chosen_mask"], model_output["rejected_mask"]),
            model_output,
        )
        return output.losses, *self._last_rewards

    def get_batch_loss_metrics(self, model, batch, train_eval="train"):
        """TRL's loss and metrics, plus the ADPO segment metrics gathered over all processes, the NLL term on its own
        (`adpo/nll`), and DPO's rewards whatever the loss weights (TRL 0.28 weighs them as the losses)."""
        loss, metrics = super().get_batch_loss_metrics(model, batch, train_eval)
        self._stop_on_non_finite(loss, self._last_nll)
        prefix = "eval_" if train_eval == "eval" else ""
        metrics.update({f"{prefix}{key}": value for key, value in self._segment_metrics().items()})
        if f"{prefix}nll_loss" in metrics:
            metrics[f"{prefix}adpo/nll"] = metrics[f"{prefix}nll_loss"]
        chosen, rejected = self.accelerator.gather_for_metrics(self._last_rewards)
        metrics.update(
            {
                f"{prefix}rewards/chosen": chosen.mean().item(),
                f"{prefix}rewards/rejected": rejected.mean().item(),
                f"{prefix}rewards/accuracies": (chosen > rejected).float().mean().item(),
                f"{prefix}rewards/margins": (chosen - rejected).mean().item(),
            }
        )
        return loss, metrics
