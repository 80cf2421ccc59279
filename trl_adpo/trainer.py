"""`ADPOTrainer`: TRL's `DPOTrainer` (0.28.x) trained with the ADPO loss.

The glue is three overrides. `concatenated_forward` also returns the per-token log-probs of each completion, aligned
so that column 0 is its first scored token; `dpo_loss` turns the per-token log-ratios into the ADPO loss with
`trl_adpo.objective.adpo_loss`; and the reference side (`compute_ref_log_probs`, `precompute_ref_log_probs=True`)
works on per-token log-probs instead of sums. Everything else, from data preparation to PEFT and model cards, is
TRL's own. Checked against TRL 0.28.0.
"""

from __future__ import annotations

import textwrap
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import tqdm
from datasets import Dataset, load_from_disk
from torch import nn
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl.trainer.utils import flush_left, flush_right, get_config_model_id, pad, pad_to_length, selective_log_softmax

from .config import ADPOConfig
from .data import check_preference_dataset, check_tokenized_dataset
from .objective import adpo_loss

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
REFERENCE_DIR = "adpo_reference_logps"  # in a checkpoint: the precomputed per-token reference log-probs

ADPO_CITATION = textwrap.dedent("""\
    @inproceedings{oi2026adpo,
        title         = {{Autoregressive Direct Preference Optimization}},
        author        = {Masanari Oi and Mahiro Ukai and Masahiro Kaneko and Naoaki Okazaki and Nakamasa Inoue},
        year          = 2026,
        booktitle     = {International Conference on Machine Learning (ICML)},
        eprint        = {2602.09533},
        archivePrefix = {arXiv},
    }""")


@dataclass
class DataCollatorForADPO(DataCollatorForPreference):
    """TRL's preference collator, plus right-padding of precomputed per-token reference log-probs.

    With `precompute_ref_log_probs=True` each row holds `ref_chosen_logps` and `ref_rejected_logps` as lists of
    per-token log-probs; they are collated to ``(B, T)`` float tensors padded with 0.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        without_ref = [{k: v for k, v in example.items() if k not in REF_COLUMNS} for example in examples]
        output = super().torch_call(without_ref)
        if REF_COLUMNS[0] in examples[0]:
            for column in REF_COLUMNS:
                output[column] = pad([torch.tensor(example[column], dtype=torch.float32) for example in examples])
        return output


class ADPOTrainer(DPOTrainer):
    """Drop-in replacement for `trl.DPOTrainer` that trains with the ADPO (or cADPO) loss.

    Takes the same arguments as `DPOTrainer`, with an `ADPOConfig` as `args`. The reference is whatever the user set
    up: an explicit `ref_model`, the PEFT base model with adapters disabled, or reference log-probs precomputed
    per token (`precompute_ref_log_probs=True`). Logs TRL's DPO metrics, whose rewards stay
    `beta * summed log-ratio`, plus `adpo/feedback_length` (segments per pair), `adpo/segment_accuracy` (share of
    segments whose chosen reward is higher) and `adpo/segment_margin` (mean segment reward margin).
    """

    _tag_names = ["trl", "dpo", "adpo"]
    _name = "ADPO"
    _paper = {"title": "Autoregressive Direct Preference Optimization", "id": "2602.09533", "citation": ADPO_CITATION}

    def __init__(self, model, ref_model=None, args: ADPOConfig | None = None, data_collator=None, **kwargs):
        if args is None:
            model_id = model if isinstance(model, str) else get_config_model_id(model.config)
            args = ADPOConfig(f"{model_id.split('/')[-1]}-ADPO")
        if not isinstance(args, ADPOConfig):
            raise TypeError(
                f"ADPOTrainer needs an ADPOConfig as `args`, got {type(args).__name__}. Replace DPOConfig(...) with "
                "trl_adpo.ADPOConfig(...): it takes the same options plus the ADPO granularity."
            )
        super().__init__(model, ref_model, args, data_collator, **kwargs)
        if self.is_encoder_decoder or self.is_vision_model:
            raise ValueError(
                "ADPOTrainer supports decoder-only language models; this model is "
                f"{'encoder-decoder' if self.is_encoder_decoder else 'a vision-language model'}."
            )
        if self.aux_loss_enabled:
            raise ValueError(
                "ADPOTrainer does not add the router auxiliary loss of mixture-of-experts models: set "
                "`output_router_logits=False` in the model config."
            )
        if data_collator is None:
            self.data_collator = DataCollatorForADPO(pad_token_id=self.pad_token_id)
        self._segment_stats: tuple[torch.Tensor, ...] = ()  # (feedback length, wins, margin sum) of the last batch

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if isinstance(dataset, Dataset):
            check_preference_dataset(dataset, dataset_name)
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if isinstance(dataset, Dataset):
            check_tokenized_dataset(dataset, dataset_name, args.max_length, args.truncation_mode)
        return dataset

    def _flush_and_truncate(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flush rows left and truncate them to `max_length` as `DPOTrainer` does; the first tensor is the mask."""
        if self.max_length is None or self.max_length >= tensors[0].shape[1]:
            return flush_left(*tensors)
        if self.truncation_mode == "keep_start":
            return tuple(t[:, : self.max_length] for t in flush_left(*tensors))
        return flush_left(*(t[:, -self.max_length :] for t in flush_right(*tensors)))

    def concatenated_forward(
        self, model: nn.Module, batch: dict[str, Any], is_ref_model: bool = False
    ) -> dict[str, torch.Tensor]:
        """Run `model` on the chosen and rejected sequences of `batch` in one pass.

        Returns TRL's outputs (`chosen_logps`, `rejected_logps`: ``(B,)`` summed log-probs; `mean_chosen_logits`,
        `mean_rejected_logits`) and the per-token log-probs behind them: `chosen_token_logps` and
        `rejected_token_logps` ``(B, T)``, column 0 the first scored completion token, with their boolean masks
        `chosen_mask` and `rejected_mask` ``(B, T)``.
        """
        num_pairs = batch["prompt_input_ids"].shape[0]
        inputs = self.concatenated_inputs(batch, padding_value=self.pad_token_id)
        prompt_mask, completion_mask = inputs["prompt_attention_mask"], inputs["completion_attention_mask"]
        attention_mask, input_ids, completion_positions = self._flush_and_truncate(
            torch.cat((prompt_mask, completion_mask), dim=1),
            torch.cat((inputs["prompt_input_ids"], inputs["completion_input_ids"]), dim=1),
            torch.cat((torch.zeros_like(prompt_mask), completion_mask), dim=1),
        )
        # Logits at position i predict token i + 1: score tokens from `first` on (the first position has no context).
        first = 1
        model_kwargs: dict[str, Any] = {"attention_mask": attention_mask, "use_cache": False}
        if self.use_logits_to_keep:
            first = max(1, int(completion_positions.nonzero(as_tuple=True)[1].min()))
            model_kwargs["logits_to_keep"] = input_ids.shape[1] - first + 1
        logits = model(input_ids, **model_kwargs).logits[:, -(input_ids.shape[1] - first + 1) : -1]
        scored = completion_positions[:, first:].bool()
        token_logps = selective_log_softmax(logits, input_ids[:, first:])

        # Left-align each row's completion tokens (contiguous after flushing) to column 0.
        lengths = scored.sum(dim=1)
        width = int(lengths.max())
        columns = torch.arange(width, device=scored.device)
        start = scored.int().argmax(dim=1, keepdim=True)
        aligned = token_logps.gather(1, (start + columns).clamp(max=token_logps.shape[1] - 1))
        mask = columns < lengths.unsqueeze(1)
        aligned = aligned.masked_fill(~mask, 0.0)
        sums = aligned.sum(dim=1)

        return {
            "chosen_logps": sums[:num_pairs],
            "rejected_logps": sums[num_pairs:],
            "mean_chosen_logits": logits[:num_pairs][scored[:num_pairs]].mean(),
            "mean_rejected_logits": logits[num_pairs:][scored[num_pairs:]].mean(),
            "chosen_token_logps": aligned[:num_pairs],
            "rejected_token_logps": aligned[num_pairs:],
            "chosen_mask": mask[:num_pairs],
            "rejected_mask": mask[num_pairs:],
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
        autocast = torch.autocast(self.accelerator.device.type) if self._peft_has_been_casted_to_bf16 else nullcontext()
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
        """`dataset` with `ref_chosen_logps` and `ref_rejected_logps`: each row's per-token reference log-probs."""
        if REF_COLUMNS[0] in dataset.column_names:
            return dataset
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            shuffle=False,
        )
        rows: dict[str, list[list[float]]] = {column: [] for column in REF_COLUMNS}
        computed_here = 0
        for batch in tqdm(self.accelerator.prepare(loader), desc=f"Per-token reference log-probs of {name}"):
            output = self._reference_forward(batch)
            computed_here += len(batch["prompt_input_ids"])
            for column, side in zip(REF_COLUMNS, ("chosen", "rejected")):
                values = self.accelerator.pad_across_processes(output[f"{side}_token_logps"].float(), dim=1)
                mask = self.accelerator.pad_across_processes(output[f"{side}_mask"], dim=1)
                values, mask = self.accelerator.gather_for_metrics((values, mask))
                rows[column].extend(row[keep].tolist() for row, keep in zip(values.cpu(), mask.cpu()))
        shares = self.accelerator.gather(torch.tensor([computed_here], device=self.accelerator.device)).tolist()
        self.accelerator.print(
            f"Per-token reference log-probs of {name}: {len(rows[REF_COLUMNS[0]])} rows, computed by "
            f"{len(shares)} process(es) in shares of {shares} (the last batch padded to an even split)"
        )
        for column in REF_COLUMNS:
            dataset = dataset.add_column(column, rows[column])
        return dataset

    def _precompute_eval_datasets(self) -> None:
        """Add per-token reference log-probs to every eval dataset given at construction."""
        batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
        if isinstance(self.eval_dataset, dict):
            for key, dataset in self.eval_dataset.items():
                self.eval_dataset[key] = self._with_reference_columns(dataset, batch_size, f"eval dataset {key!r}")
        elif self.eval_dataset is not None:
            self.eval_dataset = self._with_reference_columns(self.eval_dataset, batch_size, "the eval dataset")

    def get_train_dataloader(self) -> DataLoader:
        """TRL's train dataloader; with `precompute_ref_log_probs`, first adds per-token reference log-probs to the
        train and eval datasets, while the policy is still the reference."""
        if self.precompute_ref_log_probs:
            batch_size = self.args.precompute_ref_batch_size or self.args.per_device_train_batch_size
            self.train_dataset = self._with_reference_columns(self.train_dataset, batch_size, "the train dataset")
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
                eval_dataset = self._with_reference_columns(eval_dataset, batch_size, "the eval dataset")
        self._precomputed_eval_ref_log_probs = True  # TRL's own precomputation stores sums: skip it
        return super().get_eval_dataloader(eval_dataset)

    def _reference_snapshots(self) -> dict[str, Dataset]:
        """The datasets whose per-token reference log-probs a checkpoint keeps, by name."""
        datasets = {"train": self.train_dataset}
        if isinstance(self.eval_dataset, dict):
            datasets.update({f"eval_{key}": dataset for key, dataset in self.eval_dataset.items()})
        elif self.eval_dataset is not None:
            datasets["eval"] = self.eval_dataset
        return {name: d for name, d in datasets.items() if REF_COLUMNS[0] in d.column_names}

    def _save_checkpoint(self, model, trial):
        """TRL's checkpoint, plus the precomputed per-token reference log-probs, which resuming needs."""
        super()._save_checkpoint(model, trial)
        if self.precompute_ref_log_probs and self.is_world_process_zero():
            checkpoint = Path(self._get_output_dir(trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            for name, dataset in self._reference_snapshots().items():
                dataset.select_columns(list(REF_COLUMNS)).save_to_disk(checkpoint / REFERENCE_DIR / name)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`; on resuming with `precompute_ref_log_probs`, first restores the per-token reference
        log-probs the checkpoint saved: the weights it restores are no longer the reference."""
        if self.precompute_ref_log_probs and resume_from_checkpoint:
            checkpoint = (
                get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            )
            if checkpoint is not None:
                self._restore_reference_columns(Path(checkpoint) / REFERENCE_DIR)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _restore_reference_columns(self, directory: Path) -> None:
        if not directory.is_dir():
            if self.ref_model is None and not self.is_peft_model:
                raise ValueError(
                    f"{directory.parent} holds no per-token reference log-probs, and with "
                    "precompute_ref_log_probs=True and no ref_model the reference was the initial policy, which the "
                    "checkpoint no longer holds. Resume from a checkpoint saved by ADPOTrainer, or pass a ref_model."
                )
            return  # the reference (ref_model, or the PEFT base) is unchanged: it is computed again
        for saved in sorted(directory.iterdir()):
            columns = load_from_disk(saved)
            if saved.name == "train":
                self.train_dataset = self._add_columns(self.train_dataset, columns)
            elif saved.name == "eval":
                self.eval_dataset = self._add_columns(self.eval_dataset, columns)
            else:
                key = saved.name.removeprefix("eval_")
                self.eval_dataset[key] = self._add_columns(self.eval_dataset[key], columns)

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

        Returns:
            ``(B,)`` per-pair losses, and the chosen and rejected rewards ``(B,)``: `beta` times the log-ratio summed
            over the whole completion, as DPO's.
        """
        logratios = []
        for side, reference in (("chosen", ref_chosen_logps), ("rejected", ref_rejected_logps)):
            policy = model_output[f"{side}_token_logps"]
            if reference.shape[1] > policy.shape[1]:
                raise ValueError(
                    f"The reference log-probs of the {side} completions have {reference.shape[1]} tokens but the "
                    f"policy scores at most {policy.shape[1]}: the precomputed `ref_{side}_logps` do not match "
                    "this dataset and `max_length`. Drop those columns and let the trainer recompute them."
                )
            logratios.append(policy - pad_to_length(reference.to(policy.device), policy.shape[1], pad_value=0.0))
        output = adpo_loss(
            logratios[0],
            logratios[1],
            model_output["chosen_mask"],
            model_output["rejected_mask"],
            beta=self.beta,
            granularity=self.args.granularity,
            window_size=self.args.window_size,
            num_segments=self.args.num_segments,
            label_smoothing=self.label_smoothing,
            reduction=self.args.segment_reduction,
        )
        self._segment_stats = (output.feedback_length, output.segment_wins, output.segment_margin_sum)
        return output.losses, output.chosen_rewards.sum(dim=1).detach(), output.rejected_rewards.sum(dim=1).detach()

    def get_batch_loss_metrics(self, model, batch, train_eval="train"):
        """TRL's loss and metrics, plus the ADPO segment metrics gathered over all processes."""
        loss, metrics = super().get_batch_loss_metrics(model, batch, train_eval)
        segments, wins, margins = self.accelerator.gather_for_metrics(self._segment_stats)
        prefix = "eval_" if train_eval == "eval" else ""
        metrics[f"{prefix}adpo/feedback_length"] = segments.float().mean().item()
        metrics[f"{prefix}adpo/segment_accuracy"] = (wins.sum() / segments.sum()).item()
        metrics[f"{prefix}adpo/segment_margin"] = (margins.sum() / segments.sum()).item()
        return loss, metrics

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card, naming ADPO and its paper, plus a section with the ADPO settings and the DPO citation."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        args = self.args
        method = "cADPO (conservative ADPO)" if args.label_smoothing > 0 else "ADPO"
        section = [
            "",
            "## ADPO settings",
            "",
            f"Trained with {method}, Autoregressive Direct Preference Optimization "
            "([arXiv 2602.09533](https://arxiv.org/abs/2602.09533)), with the trl_adpo `ADPOTrainer`. ADPO extends "
            "DPO ([arXiv 2305.18290](https://arxiv.org/abs/2305.18290)) by moving its sum over tokens outside the "
            "log-sigmoid, one log-sigmoid per segment of the completion.",
            "",
            "| setting | value |",
            "| --- | --- |",
            f"| granularity | {args.granularity_description} |",
            f"| segment reduction | {args.segment_reduction} |",
            f"| beta | {args.beta} |",
            f"| label smoothing | {args.label_smoothing} |",
            f"| dataset | {dataset_name or 'not recorded'} |",
            "",
            "Cite DPO as:",
            "",
            "```bibtex",
            DPOTrainer._paper["citation"],
            "```",
            "",
        ]
        card = Path(args.output_dir) / "README.md"
        card.write_text(card.read_text() + "\n".join(section))
