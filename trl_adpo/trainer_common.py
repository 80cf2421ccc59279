"""What `ADPOTrainer` does the same way on every TRL line: the loss call, its metrics, per-token alignment, the
per-token dataset columns (reference log-probs, reasoning-step segment ids) and their collator, and the model card.
The line-specific glue subclasses `ADPOTrainerMixin`.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import tqdm
from datasets import Dataset
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.trainer.utils import get_config_model_id, pad

from .config import ADPOConfig
from .data import scored_completion_spans
from .objective import ADPOLossOutput, adpo_loss
from .segmentation import step_segment_ids

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
SEGMENT_COLUMNS = ("chosen_segment_ids", "rejected_segment_ids")
PER_TOKEN_COLUMNS = {**dict.fromkeys(REF_COLUMNS, torch.float32), **dict.fromkeys(SEGMENT_COLUMNS, torch.long)}
"""Dataset columns that hold one value per scored completion token (column 0 the first scored token), and their
dtypes once collated. TRL's collators do not know them: `PerTokenCollator` pads them."""

ADPO_CITATION = textwrap.dedent("""\
    @inproceedings{oi2026adpo,
        title         = {{Autoregressive Direct Preference Optimization}},
        author        = {Masanari Oi and Mahiro Ukai and Masahiro Kaneko and Naoaki Okazaki and Nakamasa Inoue},
        year          = 2026,
        booktitle     = {International Conference on Machine Learning (ICML)},
        eprint        = {2602.09533},
        archivePrefix = {arXiv},
    }""")


def left_align(token_logps: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's scored tokens, contiguous in the row, to column 0.

    Args:
        token_logps: ``(N, L)`` per-token log-probs.
        scored: ``(N, L)`` boolean, True on the completion tokens that have a log-prob.

    Returns:
        ``(N, T)`` log-probs, column 0 the first scored token, zero past the end, and their ``(N, T)`` mask, with
        ``T`` the longest row's count of scored tokens.
    """
    lengths = scored.sum(dim=1)
    columns = torch.arange(int(lengths.max()), device=scored.device)
    start = scored.int().argmax(dim=1, keepdim=True)
    aligned = token_logps.gather(1, (start + columns).clamp(max=token_logps.shape[1] - 1))
    mask = columns < lengths.unsqueeze(1)
    return aligned.masked_fill(~mask, 0.0), mask


def fit_width(values: torch.Tensor, width: int, column: str) -> torch.Tensor:
    """Right-pad a ``(B, T')`` per-token column with zeros to the policy's width ``T >= T'``."""
    if values.shape[1] > width:
        raise ValueError(
            f"The per-token column `{column}` has {values.shape[1]} tokens but the policy scores at most {width}: it "
            "does not match this dataset and `max_length`. Drop that column and let the trainer compute it again."
        )
    return torch.nn.functional.pad(values, (0, width - values.shape[1]))


@dataclass
class PerTokenCollator:
    """Wraps a preference collator: the `PER_TOKEN_COLUMNS` (lists per row) are taken out of the examples, the rest
    is collated by `collator`, and the lists come back as ``(B, T)`` tensors padded with 0."""

    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = self.collator([{k: v for k, v in row.items() if k not in PER_TOKEN_COLUMNS} for row in examples])
        for column, dtype in PER_TOKEN_COLUMNS.items():
            if column in examples[0]:
                output[column] = pad([torch.tensor(row[column], dtype=dtype) for row in examples])
        return output


def scored_step_ids(
    prompt_ids: list[int], completion_ids: list[int], tokenizer, args: ADPOConfig
) -> list[int]:
    """The reasoning-step segment id of each scored completion token of one row, from 0.

    The steps are cut on the whole completion; truncation to `max_length` then keeps some of its tokens, and a step
    it cuts stays a (shorter) segment.
    """
    first, stop = (int(i[0]) for i in scored_completion_spans(
        [len(prompt_ids)], [len(completion_ids)], args.max_length, args.truncation_mode
    ))
    steps = step_segment_ids(completion_ids, tokenizer, args.step_delimiter, args.step_pattern)[first:stop]
    return [step - steps[0] for step in steps]


def gather_rows(accelerator, values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Each row's masked values as a list, gathered from all processes in dataset order."""
    values = accelerator.pad_across_processes(values.float(), dim=1)
    mask = accelerator.pad_across_processes(mask, dim=1)
    values, mask = accelerator.gather_for_metrics((values, mask))
    return [row[keep].tolist() for row, keep in zip(values.cpu(), mask.cpu())]


def with_step_columns(dataset: Dataset, processing_class, args: ADPOConfig, name: str, suffix: str) -> Dataset:
    """With `granularity="step"`, a tokenized `dataset` plus the step segment ids of its scored completion tokens.

    `suffix` ends the token-id columns: `_input_ids` on TRL 0.28, `_ids` on TRL 1.x.
    """
    if args.granularity != "step" or not isinstance(dataset, Dataset) or SEGMENT_COLUMNS[0] in dataset.column_names:
        return dataset
    tokenizer = getattr(processing_class, "tokenizer", processing_class)

    def add_steps(row: dict[str, Any]) -> dict[str, list[int]]:
        prompt = row[f"prompt{suffix}"]
        return {
            column: scored_step_ids(prompt, row[f"{side}{suffix}"], tokenizer, args)
            for column, side in zip(SEGMENT_COLUMNS, ("chosen", "rejected"))
        }

    return dataset.map(add_steps, num_proc=args.dataset_num_proc, desc=f"Cutting the {name} dataset into reasoning steps")


class ADPOTrainerMixin:
    """The line-independent part of `ADPOTrainer`; mixed in before TRL's `DPOTrainer`."""

    _tag_names = ["trl", "dpo", "adpo"]
    _name = "ADPO"
    _paper = {"title": "Autoregressive Direct Preference Optimization", "id": "2602.09533", "citation": ADPO_CITATION}

    last_adpo_output: ADPOLossOutput | None = None
    """The ADPO output of the last batch, detached: per-pair losses, segment rewards, feedback lengths."""

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

        `batch` holds the per-token columns of the rows (step segment ids), aligned as the log-probs.
        """
        (chosen, rejected), (ref_chosen, ref_rejected) = policy, reference
        width_chosen, width_rejected = chosen.shape[1], rejected.shape[1]
        chosen = chosen - fit_width(ref_chosen.to(chosen.device), width_chosen, REF_COLUMNS[0])
        rejected = rejected - fit_width(ref_rejected.to(rejected.device), width_rejected, REF_COLUMNS[1])
        args = self.args
        if args.granularity == "step":
            segmentation = dict(
                granularity="explicit",
                chosen_segment_ids=fit_width(batch[SEGMENT_COLUMNS[0]].to(chosen.device), width_chosen, SEGMENT_COLUMNS[0]),
                rejected_segment_ids=fit_width(
                    batch[SEGMENT_COLUMNS[1]].to(rejected.device), width_rejected, SEGMENT_COLUMNS[1]
                ),
            )
        elif args.granularity == "static":
            segmentation = dict(granularity="static", window_size=args.window_size)
        else:
            segmentation = dict(granularity="adaptive", num_segments=args.num_segments)
        output = adpo_loss(
            chosen,
            rejected,
            *masks,
            beta=args.beta,
            **segmentation,
            label_smoothing=args.label_smoothing,
            reduction=args.segment_reduction,
        )
        self.last_adpo_output = output.detach()
        return output

    def _segment_metrics(self) -> dict[str, float]:
        """Feedback length (mean and max), segment accuracy and margin of the last batch, over all processes."""
        output = self.last_adpo_output
        segments, wins, margins = self.accelerator.gather_for_metrics(
            (output.feedback_length, output.segment_wins, output.segment_margin_sum)
        )
        return {
            "adpo/feedback_length": segments.float().mean().item(),
            "adpo/feedback_length_max": float(segments.max()),
            "adpo/segment_accuracy": (wins.sum() / segments.sum()).item(),
            "adpo/segment_margin": (margins.sum() / segments.sum()).item(),
        }

    def _add_reference_columns(
        self,
        dataset: Dataset,
        batch_size: int,
        name: str,
        reference: Callable[[dict[str, Any]], tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]],
    ) -> Dataset:
        """`dataset` plus `ref_chosen_logps` and `ref_rejected_logps`, each row's per-token reference log-probs.

        `reference(batch)` gives the aligned per-token log-probs ``(B, T)`` of the chosen and rejected completions
        and their masks. The processes share the batches; every process ends up with all the rows.
        """
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
        for batch in tqdm(self.accelerator.prepare(loader), desc=f"Per-token reference log-probs of the {name} dataset"):
            logps, masks = reference(batch)
            computed_here += len(logps[0])
            for column, values, mask in zip(REF_COLUMNS, logps, masks):
                rows[column] += gather_rows(self.accelerator, values, mask)
        shares = self.accelerator.gather(torch.tensor([computed_here], device=self.accelerator.device)).tolist()
        self.accelerator.print(
            f"Per-token reference log-probs of the {name} dataset: {len(rows[REF_COLUMNS[0]])} rows, computed by "
            f"{len(shares)} process(es) in shares of {shares} (the last batch padded to an even split)"
        )
        for column in REF_COLUMNS:
            dataset = dataset.add_column(column, rows[column])
        return dataset

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card, naming ADPO and its paper, plus a section with the ADPO settings and the DPO citation."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        args = self.args
        method = "conservative ADPO (label smoothing)" if args.label_smoothing > 0 else "ADPO"
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
