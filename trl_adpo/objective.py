"""The ADPO objective (arXiv 2602.09533) in pure torch, independent of TRL.

DPO puts the sum over completion tokens inside one log-sigmoid. ADPO cuts each completion into segments and sums
one log-sigmoid per segment instead::

    R_w(j) = beta * sum_{t in segment j of y_w} a_w(t) * s_w(t)     (R_l likewise; 0 for a segment a response lacks)
    loss   = - sum_{j < S} log sigmoid(R_w(j) - R_l(j))              S = max(segments of y_w, segments of y_l)

where ``s(t)`` is the policy/reference log-ratio of completion token ``t`` and ``a(t)`` a per-token weight (1 for
ADPO; the critical-token weights of cDPO, Lin et al. 2025, give the paper's cADPO). Segment ``j`` of ``y_w`` is
paired with segment ``j`` of ``y_l``. The granularity decides the segments (`trl_adpo.segmentation`): static
windows of ``k`` tokens, ``m`` adaptive segments (the longer ones last), or explicit per-token segment ids.
Adaptive ``m = 1`` and static ``k >= T`` are DPO; static ``k = 1`` is the token-level ADPO loss.

Two extras that are not the paper's loss, both off by default: label smoothing ``eps`` (the conservative loss of
Mitchell, per segment ``-(1 - eps) log sigmoid(R_w - R_l) - eps log sigmoid(R_l - R_w)``), and
``reduction="mean"``, which divides a pair's sum over segments by its ``S``.

Choices the paper leaves open, made here: a segment one response lacks has reward 0 (the paper pads the shorter
response with EOS before cutting static windows, which gives the same ``S`` terms; here the padding contributes
nothing, as TRL masks it); token positions count over the True entries of the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .segmentation import (
    DEFAULT_NUM_SEGMENTS,
    DEFAULT_WINDOW_SIZE,
    FAMILIES,
    check_granularity,
    check_segment_ids,
    family_segment_ids,
    segment_counts,
)

GRANULARITIES = (*FAMILIES, "explicit")
REDUCTIONS = ("sum", "mean")


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
        """``(B,)`` number of segments whose chosen reward is strictly above the rejected one (no gradient). A tie (a
        segment both completions share, or two segments scored alike) is no win."""
        wins = (self.chosen_rewards > self.rejected_rewards) & self.segment_mask
        return wins.sum(dim=1)

    @property
    def segment_margin_sum(self) -> torch.Tensor:
        """``(B,)`` sum over segments of ``R_w(j) - R_l(j)`` (no gradient)."""
        margins = (self.chosen_rewards - self.rejected_rewards).detach()
        return margins.masked_fill(~self.segment_mask, 0.0).sum(dim=1)

    def detach(self) -> ADPOLossOutput:
        """The same output without autograd history."""
        return ADPOLossOutput(
            self.losses.detach(),
            self.chosen_rewards.detach(),
            self.rejected_rewards.detach(),
            self.segment_mask,
            self.feedback_length,
        )


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
            f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}; 0 is the paper's loss, a value such as "
            "0.1 the conservative (label-smoothed) one."
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    for name, logratios, mask in (
        ("chosen", chosen_logratios, chosen_mask),
        ("rejected", rejected_logratios, rejected_mask),
    ):
        if logratios.dim() != 2:
            raise ValueError(f"{name}_logratios must have shape (batch, length), got shape {tuple(logratios.shape)}.")
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


def _check_weights(name: str, weights: torch.Tensor, logratios: torch.Tensor, mask: torch.Tensor) -> None:
    if weights.shape != logratios.shape:
        side = name.split("_")[0]
        raise ValueError(
            f"{name} has shape {tuple(weights.shape)} but {side}_logratios has shape {tuple(logratios.shape)}; "
            "give one weight per token, in the same layout."
        )
    if not weights.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {weights.dtype}.")
    bad = mask & ~((weights >= 0) & (weights <= 1))  # NaN fails both comparisons
    if bad.any():
        pair, position = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name}[{pair}] has the value {weights[pair, position].item()} at token {position}; per-token weights "
            "must lie in [0, 1] (NaN is refused) on every token of the mask."
        )


def _segment_ids(
    side: str,
    mask: torch.Tensor,
    given: torch.Tensor | None,
    granularity: str,
    window_size: int,
    num_segments: int,
) -> torch.Tensor:
    """``(B, T)`` segment ids of one side: the explicit ones, checked, or those of a static or adaptive cut."""
    if granularity == "explicit":
        if given is None:
            raise ValueError(
                f"granularity='explicit' needs {side}_segment_ids (and the other side's): per-token segment ids."
            )
        check_segment_ids(f"{side}_segment_ids", given, mask)
        return given.long().masked_fill(~mask, 0)
    if given is not None:
        raise ValueError(
            f"{side}_segment_ids is given but granularity is {granularity!r}: pass granularity='explicit' to cut "
            "the completions by those ids."
        )
    return family_segment_ids(mask, granularity, window_size, num_segments).masked_fill(~mask, 0)


def _segment_rewards(
    logratios: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None, ids: torch.Tensor, width: int
) -> torch.Tensor:
    """``(B, width)`` sum of the (weighted) masked log-ratios of each segment."""
    values = logratios.masked_fill(~mask, 0.0)  # padding adds 0 to segment 0 and gets no gradient
    if weights is not None:
        values = values * weights.detach().to(values.dtype).masked_fill(~mask, 0.0)
    rewards = values.new_zeros(values.shape[0], width)
    return rewards.scatter_add(1, ids, values)


def adpo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
    *,
    beta: float,
    granularity: Literal["static", "adaptive", "explicit"] = "adaptive",
    window_size: int = DEFAULT_WINDOW_SIZE,
    num_segments: int = DEFAULT_NUM_SEGMENTS,
    chosen_segment_ids: torch.Tensor | None = None,
    rejected_segment_ids: torch.Tensor | None = None,
    chosen_weights: torch.Tensor | None = None,
    rejected_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Literal["sum", "mean"] = "sum",
) -> ADPOLossOutput:
    """ADPO loss of a batch of preference pairs (cADPO with critical-token weights).

    Args:
        chosen_logratios: ``(B, Tw)`` per-token ``log pi_theta - log pi_ref`` of the chosen completions; column 0
            is the first completion token, right-padded. Any dtype; the math runs in float32 (or float64).
        rejected_logratios: ``(B, Tl)`` the same for the rejected completions (``Tl`` may differ from ``Tw``).
        chosen_mask: ``(B, Tw)`` boolean, True on completion tokens. Values under False never matter.
        rejected_mask: ``(B, Tl)`` boolean, likewise.
        beta: KL temperature, > 0.
        granularity: ``"adaptive"`` (the default), ``"static"``, or ``"explicit"`` (cut by the segment ids below).
        window_size: the static window ``k >= 1``; only for ``"static"``.
        num_segments: the adaptive number of segments ``m >= 1``, default 256 (the paper's headline ADPO); only for
            ``"adaptive"``.
        chosen_segment_ids: ``(B, Tw)`` integer segment of each chosen token, for ``"explicit"``: 0 on the first
            token, rising by 0 or 1 from one token to the next.
        rejected_segment_ids: ``(B, Tl)`` likewise for the rejected tokens.
        chosen_weights: ``(B, Tw)`` float weight in [0, 1] of each chosen token's log-ratio (no gradient flows
            through it); None means all ones.
        rejected_weights: ``(B, Tl)`` likewise; cDPO's critical-token weights ``1 - p_ce(t)`` go here.
        label_smoothing: ``eps`` in [0, 0.5); > 0 gives the conservative (label-smoothed) loss, not the paper's.
        reduction: ``"sum"`` over a pair's segments (the paper's loss) or ``"mean"`` (divided by its ``S``; an
            extra, not the paper's loss).

    Returns:
        `ADPOLossOutput` with the ``(B,)`` per-pair losses; average them over the batch as DPO does.

    Raises:
        ValueError: on an invalid argument, mismatched shapes, segment ids that are no contiguous cut, weights
            outside [0, 1] or NaN, or a pair whose chosen or rejected mask is empty; the message names the argument
            and the pair.
    """
    check_granularity(granularity, window_size, num_segments, GRANULARITIES)
    _check_inputs(chosen_logratios, rejected_logratios, chosen_mask, rejected_mask, beta, label_smoothing, reduction)
    chosen_mask, rejected_mask = chosen_mask.bool(), rejected_mask.bool()
    _check_not_empty("chosen", chosen_mask.sum(dim=1))
    _check_not_empty("rejected", rejected_mask.sum(dim=1))
    for name, weights, logratios, mask in (
        ("chosen_weights", chosen_weights, chosen_logratios, chosen_mask),
        ("rejected_weights", rejected_weights, rejected_logratios, rejected_mask),
    ):
        if weights is not None:
            _check_weights(name, weights, logratios, mask)
    chosen_ids = _segment_ids("chosen", chosen_mask, chosen_segment_ids, granularity, window_size, num_segments)
    rejected_ids = _segment_ids(
        "rejected", rejected_mask, rejected_segment_ids, granularity, window_size, num_segments
    )

    feedback_length = torch.maximum(
        segment_counts(chosen_ids, chosen_mask), segment_counts(rejected_ids, rejected_mask)
    )
    width = int(feedback_length.max())  # S of the batch
    dtype = torch.promote_types(chosen_logratios.dtype, torch.float32)
    chosen_rewards = beta * _segment_rewards(
        chosen_logratios.to(dtype), chosen_mask, chosen_weights, chosen_ids, width
    )
    rejected_rewards = beta * _segment_rewards(
        rejected_logratios.to(dtype), rejected_mask, rejected_weights, rejected_ids, width
    )
    segment_mask = torch.arange(width, device=feedback_length.device) < feedback_length.unsqueeze(1)

    margins = chosen_rewards - rejected_rewards
    segment_losses = -(1.0 - label_smoothing) * F.logsigmoid(margins) - label_smoothing * F.logsigmoid(-margins)
    losses = segment_losses.masked_fill(~segment_mask, 0.0).sum(dim=1)
    if reduction == "mean":
        losses = losses / feedback_length
    return ADPOLossOutput(losses, chosen_rewards, rejected_rewards, segment_mask, feedback_length)
