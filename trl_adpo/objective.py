"""The ADPO objective (arXiv 2602.09533) in pure torch, independent of TRL.

DPO puts the sum over completion tokens inside one log-sigmoid. ADPO cuts each completion into segments and sums
one log-sigmoid per segment instead::

    R_w(j) = beta * sum_{t in segment j of y_w} s_w(t)           (R_l likewise; 0 for a segment a response lacks)
    loss   = sum_j [ -(1 - eps) * logsigmoid(R_w(j) - R_l(j)) - eps * logsigmoid(R_l(j) - R_w(j)) ]

where ``s(t)`` is the policy/reference log-ratio of completion token ``t`` and ``eps`` the label smoothing (cADPO
when > 0). The granularity decides the segments, for each response separately (``T`` its length):

- ``"static"``, window size ``k``: token ``t`` is in segment ``t // k``; ``ceil(T / k)`` segments.
- ``"adaptive"``, ``m`` segments: token ``t`` is in segment ``floor(t * P / T)`` with ``P = min(m, T)``.

Adaptive ``m = 1`` and static ``k >= T`` are DPO; static ``k = 1`` is the token-level ADPO loss.

Choices the paper leaves open, made here: a pair has ``S = max(S_w, S_l)`` segments; ``reduction="mean"`` divides a
pair's sum by ``S``; token positions are counted over the ``True`` entries of the mask, so the segments do not depend
on where the padding is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

GRANULARITIES = ("static", "adaptive")
REDUCTIONS = ("sum", "mean")
PADDING_SEGMENT = -1
"""Segment index that `segment_ids` gives to padding positions."""


@dataclass
class ADPOLossOutput:
    """What `adpo_loss` returns for a batch of ``B`` pairs with at most ``S`` segments each.

    Attributes:
        losses: ``(B,)`` ADPO loss of each pair.
        chosen_rewards: ``(B, S)`` segment rewards ``R_w(j)`` of the chosen completions (0 past a pair's segments).
        rejected_rewards: ``(B, S)`` segment rewards ``R_l(j)`` of the rejected completions.
        segment_mask: ``(B, S)`` True for the segments ``j < S`` of each pair.
        feedback_length: ``(B,)`` number of segments ``S`` of each pair (the paper's feedback length mu').
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    segment_mask: torch.Tensor
    feedback_length: torch.Tensor

    @property
    def segment_wins(self) -> torch.Tensor:
        """``(B,)`` number of segments whose chosen reward exceeds the rejected one (no gradient)."""
        wins = (self.chosen_rewards > self.rejected_rewards) & self.segment_mask
        return wins.sum(dim=1)

    @property
    def segment_margin_sum(self) -> torch.Tensor:
        """``(B,)`` sum over segments of ``R_w(j) - R_l(j)`` (no gradient)."""
        margins = (self.chosen_rewards - self.rejected_rewards).detach()
        return margins.masked_fill(~self.segment_mask, 0.0).sum(dim=1)


def check_granularity(granularity: str, window_size: int, num_segments: int) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}.")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
        raise ValueError(
            f"window_size must be an integer >= 1 (the static window k), got {window_size!r}; "
            "window_size=1 gives the token-level ADPO loss."
        )
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(
            f"num_segments must be an integer >= 1 (the adaptive number of segments m), got {num_segments!r}; "
            "num_segments=1 gives the DPO loss."
        )


def _segment_ids(mask: torch.Tensor, granularity: str, window_size: int, num_segments: int) -> torch.Tensor:
    """``(B, T)`` segment index of each token, computed on any position; callers mask the padding."""
    positions = mask.long().cumsum(dim=1) - 1  # index among the valid tokens of the row
    if granularity == "static":
        return positions // window_size
    lengths = mask.sum(dim=1, keepdim=True)
    segments = lengths.clamp(max=num_segments)
    return positions * segments // lengths.clamp(min=1)


def _num_segments(lengths: torch.Tensor, granularity: str, window_size: int, num_segments: int) -> torch.Tensor:
    """``(B,)`` number of segments of responses of the given lengths."""
    if granularity == "static":
        return (lengths + window_size - 1) // window_size
    return lengths.clamp(max=num_segments)


def segment_ids(
    mask: torch.Tensor,
    granularity: Literal["static", "adaptive"],
    window_size: int = 1,
    num_segments: int = 1,
) -> torch.Tensor:
    """Segment index of each completion token.

    Args:
        mask: ``(B, T)`` boolean completion mask, normally right-padded. Positions count over its True entries.
        granularity: ``"static"`` (windows of ``window_size`` tokens) or ``"adaptive"`` (``num_segments`` segments).
        window_size: the static window ``k >= 1``.
        num_segments: the adaptive number of segments ``m >= 1``.

    Returns:
        ``(B, T)`` long tensor: the segment of each token, `PADDING_SEGMENT` (-1) where ``mask`` is False.
    """
    check_granularity(granularity, window_size, num_segments)
    if mask.dim() != 2:
        raise ValueError(f"mask must have shape (batch, length), got shape {tuple(mask.shape)}.")
    mask = mask.bool()
    ids = _segment_ids(mask, granularity, window_size, num_segments)
    return ids.masked_fill(~mask, PADDING_SEGMENT)


def _check_inputs(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    beta: float,
    label_smoothing: float,
    reduction: str,
) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}.")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}; 0 is ADPO, a value such as 0.1 is cADPO."
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    for name, logratios, mask in (
        ("chosen", chosen_logratios, chosen_mask),
        ("rejected", rejected_logratios, rejected_mask),
    ):
        if logratios.dim() != 2:
            raise ValueError(
                f"{name}_logratios must have shape (batch, length), got shape {tuple(logratios.shape)}."
            )
        if mask.shape != logratios.shape:
            raise ValueError(
                f"{name}_mask has shape {tuple(mask.shape)} but {name}_logratios has shape "
                f"{tuple(logratios.shape)}; they must match."
            )
    if chosen_logratios.shape[0] != rejected_logratios.shape[0]:
        raise ValueError(
            f"chosen_logratios has {chosen_logratios.shape[0]} pairs but rejected_logratios has "
            f"{rejected_logratios.shape[0]}; each row must be one pair."
        )


def _check_not_empty(name: str, lengths: torch.Tensor) -> None:
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"pair {empty[0]} of the batch has an empty {name} completion ({name}_mask[{empty[0]}] has no True "
            f"entry; {len(empty)} such pair(s) in all). ADPO needs at least one completion token per response: "
            "drop the pair or fix its completion."
        )


def _segment_rewards(
    logratios: torch.Tensor, mask: torch.Tensor, width: int, granularity: str, window_size: int, num_segments: int
) -> torch.Tensor:
    """``(B, width)`` sum of the masked log-ratios of each segment."""
    ids = _segment_ids(mask, granularity, window_size, num_segments).clamp(min=0)
    values = logratios.masked_fill(~mask, 0.0)  # padding adds 0 to segment 0 and gets no gradient
    rewards = values.new_zeros(values.shape[0], width)
    return rewards.scatter_add(1, ids, values)


def adpo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    beta: float,
    granularity: Literal["static", "adaptive"],
    window_size: int = 1,
    num_segments: int = 1,
    label_smoothing: float = 0.0,
    reduction: Literal["sum", "mean"] = "sum",
) -> ADPOLossOutput:
    """ADPO (or, with ``label_smoothing > 0``, cADPO) loss of a batch of preference pairs.

    Args:
        chosen_logratios: ``(B, Tw)`` per-token ``log pi_theta - log pi_ref`` of the chosen completions; column 0
            is the first completion token, right-padded. Any dtype; the math runs in float32 (or float64).
        rejected_logratios: ``(B, Tl)`` the same for the rejected completions (``Tl`` may differ from ``Tw``).
        chosen_mask: ``(B, Tw)`` boolean, True on completion tokens. Values under False never matter.
        rejected_mask: ``(B, Tl)`` boolean, likewise.
        beta: KL temperature, > 0.
        granularity: ``"static"`` or ``"adaptive"``.
        window_size: the static window ``k >= 1``.
        num_segments: the adaptive number of segments ``m >= 1``.
        label_smoothing: ``eps`` in [0, 0.5); > 0 gives cADPO.
        reduction: ``"sum"`` over a pair's segments (the paper's loss) or ``"mean"`` (divided by its ``S``).

    Returns:
        `ADPOLossOutput` with the ``(B,)`` per-pair losses; average them over the batch as DPO does.

    Raises:
        ValueError: on an invalid argument, mismatched shapes, or a pair whose chosen or rejected mask is empty.
    """
    check_granularity(granularity, window_size, num_segments)
    _check_inputs(
        chosen_logratios, rejected_logratios, chosen_mask, rejected_mask, beta, label_smoothing, reduction
    )
    chosen_mask, rejected_mask = chosen_mask.bool(), rejected_mask.bool()
    chosen_lengths, rejected_lengths = chosen_mask.sum(dim=1), rejected_mask.sum(dim=1)
    _check_not_empty("chosen", chosen_lengths)
    _check_not_empty("rejected", rejected_lengths)

    dtype = torch.promote_types(chosen_logratios.dtype, torch.float32)
    longest = max(chosen_logratios.shape[1], rejected_logratios.shape[1])
    width = int(_num_segments(torch.tensor(longest), granularity, window_size, num_segments))  # S of the batch

    chosen_rewards = beta * _segment_rewards(
        chosen_logratios.to(dtype), chosen_mask, width, granularity, window_size, num_segments
    )
    rejected_rewards = beta * _segment_rewards(
        rejected_logratios.to(dtype), rejected_mask, width, granularity, window_size, num_segments
    )
    feedback_length = torch.maximum(
        _num_segments(chosen_lengths, granularity, window_size, num_segments),
        _num_segments(rejected_lengths, granularity, window_size, num_segments),
    )
    segment_mask = torch.arange(width, device=feedback_length.device) < feedback_length.unsqueeze(1)

    margins = chosen_rewards - rejected_rewards
    segment_losses = -(1.0 - label_smoothing) * F.logsigmoid(margins) - label_smoothing * F.logsigmoid(-margins)
    losses = segment_losses.masked_fill(~segment_mask, 0.0).sum(dim=1)
    if reduction == "mean":
        losses = losses / feedback_length
    return ADPOLossOutput(losses, chosen_rewards, rejected_rewards, segment_mask, feedback_length)
