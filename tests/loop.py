"""The loop oracle for trainer tests: the models run on one unpadded pair at a time, truncated as DPOTrainer truncates
a row, and the loss comes from tests/oracle.py."""

from __future__ import annotations

import torch
from conftest import token_ids
from oracle import pair_loss, segment_margins


def truncate(prompt: list[int], completion: list[int], max_length: int | None, mode: str):
    """The sequence DPOTrainer feeds the model for one row, and the completion index of each of its tokens (None for
    prompt tokens)."""
    sequence = prompt + completion
    completion_index = [None] * len(prompt) + list(range(len(completion)))
    if max_length is not None and len(sequence) > max_length:
        keep = slice(0, max_length) if mode == "keep_start" else slice(len(sequence) - max_length, len(sequence))
        sequence, completion_index = sequence[keep], completion_index[keep]
    return sequence, completion_index


def scored_completion_indices(row: dict, side: str, max_length, mode) -> list[int]:
    """The completion tokens that get a log-prob: those kept by truncation, except a first token of the sequence."""
    _, completion_index = truncate(token_ids(row, "prompt"), token_ids(row, side), max_length, mode)
    return [i for i in completion_index[1:] if i is not None]


@torch.no_grad()
def completion_logps(model, sequence: list[int], completion_index: list[int | None]) -> list[float]:
    """log p(token t | tokens < t) of each completion token t >= 1 (the first token has no context)."""
    logps = model(torch.tensor([sequence])).logits[0].double().log_softmax(-1)
    return [logps[t - 1, sequence[t]].item() for t in range(1, len(sequence)) if completion_index[t] is not None]


def loop_logratios(policy, reference, row: dict, side: str, max_length, mode) -> list[float]:
    sequence, completion_index = truncate(token_ids(row, "prompt"), token_ids(row, side), max_length, mode)
    policy_logps = completion_logps(policy, sequence, completion_index)
    reference_logps = completion_logps(reference, sequence, completion_index)
    return [p - r for p, r in zip(policy_logps, reference_logps)]


def batch_losses(trainer, rows: list[dict]) -> torch.Tensor:
    """The per-pair losses ADPOTrainer computes on the collated rows, through Trainer's `compute_loss`."""
    trainer.compute_loss(trainer.model, trainer._prepare_inputs(trainer.data_collator(rows)))
    return trainer.last_adpo_output.losses


def oracle_losses(
    policy, reference, rows, max_length, mode, segments=None, **granularity
) -> tuple[list[float], list[list[float]]]:
    """Per-pair losses and segment margins from the loop over unpadded pairs.

    `segments(row, side, scored)`, when given, cuts the scored completion tokens (their indices in the completion)
    into segments, instead of `granularity`'s family.
    """
    losses, margins = [], []
    for row in rows:
        s_w = loop_logratios(policy, reference, row, "chosen", max_length, mode)
        s_l = loop_logratios(policy, reference, row, "rejected", max_length, mode)
        cut = {}
        if segments is not None:
            cut = {
                f"{side}_segments": segments(row, side, scored_completion_indices(row, side, max_length, mode))
                for side in ("chosen", "rejected")
            }
        losses.append(pair_loss(s_w, s_l, **granularity, **cut))
        margins.append(
            segment_margins(s_w, s_l, **{k: v for k, v in granularity.items() if k not in ("eps", "reduction")}, **cut)
        )
    return losses, margins


def loop_nll(policy, rows: list[dict], max_length, mode) -> float:
    """The chosen completions' NLL term: minus the sum of their scored tokens' log-probs over the count of those
    tokens, across the batch (how both TRL lines normalise it)."""
    logps = []
    for row in rows:
        sequence, completion_index = truncate(token_ids(row, "prompt"), token_ids(row, "chosen"), max_length, mode)
        logps += completion_logps(policy, sequence, completion_index)
    return -sum(logps) / len(logps)
