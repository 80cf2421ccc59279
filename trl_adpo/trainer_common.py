"""What `ADPOTrainer` does the same way on every TRL line: the loss call and its metrics, the per-token columns it
computes before training (reference log-probs, critical-token weights) over the train and eval datasets, resuming,
and the model card. The line-specific glue subclasses `ADPOTrainerMixin`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import tqdm
from datasets import Dataset
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.models import prepare_deepspeed
from trl.trainer.utils import get_config_model_id

from .checkpoints import resolve_checkpoint
from .config import ADPOConfig
from .critical_models import CriticalTokenModels
from .files import write_atomically
from .model_card import ADPO_CITATION, adpo_section
from .objective import ADPOLossOutput, adpo_loss
from .per_token import (
    PER_TOKEN_COLUMNS,
    REF_COLUMNS,
    SEGMENT_COLUMNS,
    WEIGHT_COLUMNS,
    fit_width,
    gather_rows,
    left_align,
)


class ADPOTrainerMixin:
    """The line-independent part of `ADPOTrainer`; mixed in before TRL's `DPOTrainer`."""

    _tag_names = ["trl", "dpo", "adpo"]
    _name = "ADPO"
    _paper = {"title": "Autoregressive Direct Preference Optimization", "id": "2602.09533", "citation": ADPO_CITATION}

    last_adpo_output: ADPOLossOutput | None = None
    """The ADPO output of the last batch, detached: per-pair losses, segment rewards, feedback lengths."""
    _last_rewards: tuple[torch.Tensor, torch.Tensor] | None = None
    _last_weight_stats: torch.Tensor | None = None

    @staticmethod
    def _adpo_args(model, args: ADPOConfig | None) -> ADPOConfig:
        """`args`, or a default `ADPOConfig` named after the model; refuses a plain `DPOConfig`."""
        if args is None:
            model_id = model if isinstance(model, str) else get_config_model_id(model.config)
            return ADPOConfig(f"{model_id.split('/')[-1]}-ADPO")
        if not isinstance(args, ADPOConfig):
            raise TypeError(
                f"ADPOTrainer needs an ADPOConfig as `args`, got {type(args).__name__}. Replace DPOConfig(...) with "
                "trl_adpo.ADPOConfig(...): it takes the same options plus the ADPO granularity."
            )
        return args

    @staticmethod
    def _check_reference_vocabulary(model, ref_model) -> None:
        """Refuse a `ref_model` whose vocabulary size differs from the policy's: their log-probs of one token id would
        be of different tokens (`trl-adpo train` also compares the two tokenizers)."""
        sizes = [getattr(getattr(m, "config", None), "vocab_size", None) for m in (model, ref_model)]
        if None not in sizes and sizes[0] != sizes[1]:
            raise ValueError(
                f"The reference model has a vocabulary of {sizes[1]} tokens and the policy one of {sizes[0]}: a "
                "reference must score the policy's token ids, so it needs the policy's tokenizer. Give a reference "
                "of the same family (or none: the policy's starting weights)."
            )

    def _refuse_unsupported_models(self, is_encoder_decoder: bool, is_vision: bool) -> None:
        if is_encoder_decoder or is_vision:
            raise ValueError(
                "ADPOTrainer supports decoder-only language models; this model is "
                f"{'encoder-decoder' if is_encoder_decoder else 'a vision-language model'}. Use TRL's DPOTrainer."
            )
        if self.aux_loss_enabled:
            raise ValueError(
                "ADPOTrainer does not add the router auxiliary loss of mixture-of-experts models: turn it off, with "
                "`output_router_logits=False` in the model config (TRL 0.28) or `router_aux_loss_coef=0` (TRL 1.x)."
            )

    @classmethod
    def tokenize_dataset(
        cls, dataset: Dataset, processing_class, args: ADPOConfig, name: str = "inspected"
    ) -> Dataset:
        """`dataset` checked, tokenized and cut into steps exactly as the trainer prepares its data, without a model
        (what `trl-adpo inspect` scores)."""
        trainer = cls.__new__(cls)  # the preparation reads no other state of the trainer than these two
        trainer._tokenizer = getattr(processing_class, "tokenizer", processing_class)  # TRL 1.x's
        trainer.is_vision_model = False  # TRL 0.28's
        return trainer._prepare_dataset(dataset, processing_class, args, name)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, resuming from the newest complete checkpoint when the one named was cut short."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _set_signature_columns_if_needed(self):
        """TRL's columns, plus the per-token columns ADPO adds, so that `remove_unused_columns` keeps them."""
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in PER_TOKEN_COLUMNS if c not in self._signature_columns]

    def _adpo(
        self,
        policy: tuple[torch.Tensor, torch.Tensor],
        reference: tuple[torch.Tensor, torch.Tensor],
        masks: tuple[torch.Tensor, torch.Tensor],
        batch: dict[str, Any],
    ) -> ADPOLossOutput:
        """The ADPO loss of a batch from aligned per-token log-probs: (chosen, rejected) ``(B, T)`` each.

        `batch` holds the per-token columns of the rows (step segment ids, critical-token weights), aligned as the
        log-probs.
        """
        (chosen, rejected), (ref_chosen, ref_rejected) = policy, reference
        width_chosen, width_rejected = chosen.shape[1], rejected.shape[1]
        chosen = chosen - fit_width(ref_chosen.to(chosen.device), width_chosen, REF_COLUMNS[0])
        rejected = rejected - fit_width(ref_rejected.to(rejected.device), width_rejected, REF_COLUMNS[1])
        args = self.args
        if args.granularity == "step":
            segmentation = dict(
                granularity="explicit",
                chosen_segment_ids=fit_width(
                    batch[SEGMENT_COLUMNS[0]].to(chosen.device), width_chosen, SEGMENT_COLUMNS[0]
                ),
                rejected_segment_ids=fit_width(
                    batch[SEGMENT_COLUMNS[1]].to(rejected.device), width_rejected, SEGMENT_COLUMNS[1]
                ),
            )
        elif args.granularity == "static":
            segmentation = dict(granularity="static", window_size=args.window_size)
        else:
            segmentation = dict(granularity="adaptive", num_segments=args.num_segments)
        weight_columns = self._weight_columns()
        if any(column not in batch for column in weight_columns):
            raise ValueError(
                "This batch has no critical-token weights: ADPOTrainer computes them for the train and eval datasets "
                "given at construction. Pass every eval dataset to the trainer when you build it."
            )
        widths = dict(zip(WEIGHT_COLUMNS, (width_chosen, width_rejected)))
        weights = {
            column: fit_width(batch[column].to(chosen.device), widths[column], column) for column in weight_columns
        }
        output = adpo_loss(
            chosen,
            rejected,
            *masks,
            beta=args.beta,
            **segmentation,
            **weights,
            label_smoothing=args.label_smoothing,
            reduction=args.segment_reduction,
        )
        self.last_adpo_output = output.detach()
        # DPO's rewards, beta times the summed log-ratio, unweighted whatever the critical-token weights (as TRL 1.x
        # logs)
        self._last_rewards = tuple(
            args.beta * logratios.detach().masked_fill(~mask, 0.0).sum(dim=1)
            for logratios, mask in zip((chosen, rejected), masks)
        )
        self._last_weight_stats = None
        if WEIGHT_COLUMNS[1] in weights:
            rejected_weights = weights[WEIGHT_COLUMNS[1]][masks[1]]
            self._last_weight_stats = torch.stack(
                [
                    rejected_weights.sum(),
                    (rejected_weights < 0.5).sum(),
                    rejected_weights.new_tensor(rejected_weights.numel()),
                ]
            ).float()
        return output

    @staticmethod
    def _nll(chosen_logps: torch.Tensor, chosen_mask: torch.Tensor) -> torch.Tensor:
        """The chosen completions' negative log-likelihood, a mean over all their scored tokens in the batch, as both
        TRL lines normalise their NLL term (`rpo_alpha`, loss type "sft").

        Args:
            chosen_logps: ``(B, T)`` per-token log-probs of the chosen completions under the policy.
            chosen_mask: ``(B, T)`` boolean mask of their scored tokens.
        """
        return -chosen_logps[chosen_mask].sum() / chosen_mask.sum()

    def _stop_on_non_finite(self, loss: torch.Tensor, nll: torch.Tensor | None = None) -> None:
        """Raise `FloatingPointError` in every process, naming the step and the loss term, when a training loss is
        NaN or infinite: Trainer would go on, log nothing for it, and save a model of NaN weights."""
        if not self.model.training:
            return
        finite = self.accelerator.gather(torch.isfinite(loss.detach()).reshape(1)).all()
        if finite:
            return
        losses = self.last_adpo_output.losses
        if nll is not None and not torch.isfinite(nll):
            term = f"the NLL term is {nll.item()}"
        elif not torch.isfinite(losses).all():
            pair = int((~torch.isfinite(losses)).nonzero()[0])
            term = f"the ADPO loss of pair {pair} of the batch is {losses[pair].item()}"
        else:
            term = "in another process"
        raise FloatingPointError(
            f"Step {self.state.global_step + 1}: the training loss is not finite ({term}). Training stops here, "
            "before "
            "anything is saved, so that no model of NaN weights replaces a good one; the checkpoints already written "
            "are kept. Lower the learning rate (or beta), or look for a broken row in the data."
        )

    def _weight_columns(self) -> tuple[str, ...]:
        """The critical-token weight columns this config uses: none, the rejected side's, or both sides'."""
        if not self.args.critical_tokens:
            return ()
        return WEIGHT_COLUMNS if self.args.weight_chosen_tokens else WEIGHT_COLUMNS[1:]

    def _segment_metrics(self) -> dict[str, float]:
        """Feedback length (mean and max), segment accuracy and margin of the last batch, over all processes."""
        output = self.last_adpo_output
        segments, wins, margins = self.accelerator.gather_for_metrics(
            (output.feedback_length, output.segment_wins, output.segment_margin_sum)
        )
        metrics = {
            "adpo/feedback_length": segments.float().mean().item(),
            "adpo/feedback_length_max": float(segments.max()),
            "adpo/segment_accuracy": (wins.sum() / segments.sum()).item(),
            "adpo/segment_margin": (margins.sum() / segments.sum()).item(),
        }
        if self._last_weight_stats is not None:  # critical-token weights of the rejected tokens
            weight_sum, below_half, tokens = self.accelerator.reduce(self._last_weight_stats, reduction="sum").tolist()
            metrics["adpo/rejected_weight_mean"] = weight_sum / tokens
            metrics["adpo/rejected_weight_below_half"] = below_half / tokens
        return metrics

    def _add_per_token_columns(
        self,
        dataset: Dataset,
        batch_size: int,
        description: str,
        columns: tuple[str, ...],
        compute: Callable[[dict[str, Any]], tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]],
    ) -> Dataset:
        """`dataset` plus `columns`, each row's per-token values (reference log-probs, critical-token weights).

        `compute(batch)` gives, for each column, the aligned per-token values ``(B, T)`` of a collated batch and
        their masks. The processes share the batches; every process ends up with all the rows.
        """
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            shuffle=False,
        )
        rows: dict[str, list[list[float]]] = {column: [] for column in columns}
        computed_here = 0
        for batch in tqdm(self.accelerator.prepare(loader), desc=description):
            values, masks = compute(batch)
            computed_here += len(values[0])
            for column, value, mask in zip(columns, values, masks):
                rows[column] += gather_rows(self.accelerator, value, mask)
        shares = self.accelerator.gather(torch.tensor([computed_here], device=self.accelerator.device)).tolist()
        if len(shares) > 1:
            self.accelerator.print(
                f"{description}: {len(rows[columns[0]])} rows, computed by {len(shares)} processes in shares of "
                f"{shares} (the last batch padded to an even split)"
            )
        for column in columns:
            dataset = dataset.add_column(column, rows[column])
        return dataset

    def _scored_sequences(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``(2B, L)`` input ids and attention mask the policy sees for a collated batch (chosen rows first),
        and the ``(2B, L - 1)`` mask of the tokens it scores (True at column ``i`` for token ``i + 1``)."""
        raise NotImplementedError

    def _add_critical_token_weights(self) -> None:
        """With `positive_model` and `negative_model` set: load the two models, add each row's critical-token weights
        to the train and eval datasets (rejected tokens ``1 - p_ce``, chosen tokens ``p_ce`` with
        `weight_chosen_tokens`), and free the models."""
        args = self.args
        if not args.critical_tokens:
            return
        policy = self.accelerator.unwrap_model(self.model)
        models = CriticalTokenModels.load(
            args.positive_model,
            args.negative_model,
            gamma=args.critical_token_gamma,
            device=self.accelerator.device,
            dtype=policy.dtype,
            quantization_config=getattr(policy.config, "quantization_config", None),
        )
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        models.check_vocabulary(tokenizer, option="ADPOConfig: {side}_model")
        if self.is_deepspeed_enabled:  # ZeRO-3 loads them partitioned: an inference engine gathers what runs
            models.wrap(lambda model: prepare_deepspeed(model, self.accelerator))
        columns = self._weight_columns()

        def weights(batch: dict[str, Any]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
            input_ids, attention_mask, scored = self._scored_sequences(batch)
            probs, mask = left_align(models.token_probs(input_ids, attention_mask, scored), scored)
            (chosen, rejected), (chosen_mask, rejected_mask) = probs.chunk(2), mask.chunk(2)
            if args.weight_chosen_tokens:
                return (chosen, 1 - rejected), (chosen_mask, rejected_mask)
            return (1 - rejected,), (rejected_mask,)

        batch_size = args.precompute_ref_batch_size or args.per_device_eval_batch_size
        datasets = self._datasets()
        for name, dataset in datasets.items():
            if not isinstance(dataset, Dataset):
                raise ValueError(
                    f"Critical-token weights are computed once per row, which needs a map-style `datasets.Dataset`; "
                    f"the {name} dataset is a {type(dataset).__name__}."
                )
            datasets[name] = self._add_per_token_columns(
                dataset, batch_size, f"Critical-token weights of the {name} dataset", columns, weights
            )
        models.free()
        self._set_datasets(datasets)

    def _datasets(self) -> dict[str, Dataset]:
        """The train dataset and the eval datasets given at construction, by name: "train", and "eval" or, for a dict
        of eval datasets, "eval_KEY" (the names a checkpoint keeps their per-token columns under)."""
        datasets = {"train": self.train_dataset}
        if isinstance(self.eval_dataset, dict):
            datasets.update({f"eval_{key}": dataset for key, dataset in self.eval_dataset.items()})
        elif self.eval_dataset is not None:
            datasets["eval"] = self.eval_dataset
        return datasets

    def _set_datasets(self, datasets: dict[str, Dataset]) -> None:
        """Replace the datasets of `datasets`, named as `_datasets` names them (any of them)."""
        for name, dataset in datasets.items():
            if name == "train":
                self.train_dataset = dataset
            elif name == "eval":
                self.eval_dataset = dataset
            else:
                self.eval_dataset[name.removeprefix("eval_")] = dataset

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card, naming ADPO and its paper, plus a section with the ADPO settings and the DPO citation."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if self.is_world_process_zero():
            card = Path(self.args.output_dir) / "README.md"
            write_atomically(
                card, card.read_text() + adpo_section(self.args, dataset_name, DPOTrainer._paper["citation"])
            )
