"""Critical tokens by contrastive estimation (cDPO, Lin et al. 2025, arXiv 2411.19943), in pure torch.

A positive model (fine-tuned on correct solutions) and a negative one (on incorrect solutions), from the same base,
score each completion token ``y_t`` with the contrastive probability

    p_ce(t) = softmax((1 + gamma) * z_pos(t) - gamma * z_neg(t))[y_t]

where ``z(t)`` are the models' logits at the position that predicts ``y_t``. A token the negative model likes much
more than the positive one gets a low ``p_ce``: a likely critical token, one that leads to a wrong answer. cDPO
weighs the rejected completion's log-ratios by ``1 - p_ce(t)``; cADPO does the same inside ADPO's segment sums.

The full-vocabulary logits are never held for more than `chunk_size` positions at a time: the models' final hidden
states ``(B, L, H)`` go in, and each chunk of positions goes through the output heads on its own. Measured peak over
the inputs (`scripts/bench_critical_tokens.py`, CPU, float32, vocabulary 151,936, 2 sequences of 2,048 tokens,
hidden 896): 610 MiB with the default chunk of 256 positions (164 MiB with 64), where the logits of all 4,096
positions at once take 7,138 MiB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DEFAULT_CHUNK_SIZE = 256
"""Positions whose full-vocabulary logits are held at once: 256 x 152k vocabulary x 4 bytes is 148 MiB a tensor."""


def check_gamma(gamma: float) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
        raise ValueError(
            f"gamma must be a number >= 0, got {gamma!r}; cDPO uses 1 (p_ce = softmax(2 z_pos - z_neg)), and 0 scores "
            "with the positive model alone."
        )


@torch.no_grad()
def contrastive_token_probs(
    positive_hidden: torch.Tensor,
    negative_hidden: torch.Tensor,
    positive_head: Callable[[torch.Tensor], torch.Tensor],
    negative_head: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """The contrastive probability ``p_ce`` of each target token, computed a chunk of positions at a time.

    Args:
        positive_hidden: ``(B, L, H)`` the positive model's final hidden states; position ``i`` predicts
            ``targets[:, i]``.
        negative_hidden: ``(B, L, H')`` the negative model's.
        positive_head: maps ``(N, H)`` hidden states to ``(N, V)`` logits (the output layer, with any final
            soft-capping).
        negative_head: likewise for the negative model; both heads must have the same vocabulary.
        targets: ``(B, L)`` the token id predicted at each position.
        mask: ``(B, L)`` boolean, True at the positions to score (completion tokens); others get 0.
        gamma: the contrast strength, >= 0 (cDPO: 1).
        chunk_size: positions whose logits are held at once.

    Returns:
        ``(B, L)`` float32 ``p_ce`` in [0, 1] at the masked positions, 0 elsewhere.
    """
    check_gamma(gamma)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    mask = mask.bool()
    if (
        positive_hidden.shape[:2] != mask.shape
        or negative_hidden.shape[:2] != mask.shape
        or targets.shape != mask.shape
    ):
        raise ValueError(
            f"positive_hidden {tuple(positive_hidden.shape)}, negative_hidden {tuple(negative_hidden.shape)}, "
            f"targets {tuple(targets.shape)} and mask {tuple(mask.shape)} must agree on (batch, length)."
        )
    rows, columns = mask.nonzero(as_tuple=True)
    probs = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for start in range(0, rows.numel(), chunk_size):
        r, c = rows[start : start + chunk_size], columns[start : start + chunk_size]
        positive = positive_head(positive_hidden[r, c]).float()
        negative = negative_head(negative_hidden[r, c]).float()
        if positive.shape != negative.shape:
            raise ValueError(
                f"The positive head gives {positive.shape[-1]} logits per position and the negative head "
                f"{negative.shape[-1]}: the two models must share one vocabulary."
            )
        contrast = positive.mul_(1 + gamma).sub_(negative, alpha=gamma)
        target = targets[r, c].unsqueeze(1)
        probs[r, c] = (contrast.gather(1, target).squeeze(1) - contrast.logsumexp(dim=1)).exp().to(probs.device)
    return probs
