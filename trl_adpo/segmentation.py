"""Which completion tokens share one log-sigmoid: the segment index of every token.

A granularity cuts each response of ``T`` tokens into contiguous, non-empty segments (the paper's strong
composition). The two families of the paper (arXiv 2602.09533, Figure 1):

- ``"static"``, window ``k``: token ``t`` is in segment ``t // k``; ``ceil(T / k)`` segments, the last window
  holding the remainder.
- ``"adaptive"``, ``m`` segments: ``P = min(m, T)`` segments with boundaries ``b_j = floor(j * T / P)``; token ``t``
  is in segment ``j = ((t + 1) * P - 1) // T``, so the longer segments come last (``T = 5, m = 4`` gives sizes
  ``[1, 1, 1, 2]``).

Any other cut can be given as explicit per-token segment ids (`check_segment_ids` says what is valid), and
`step_segment_ids` makes such ids from the text: one segment per reasoning step of a tokenized completion. Positions
count over the True entries of a mask, so the segments do not depend on where the padding is. The paper does not say
what adaptive ``m > T`` means; here ``P = min(m, T)``, one segment per token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import torch

FAMILIES = ("static", "adaptive")
DEFAULT_WINDOW_SIZE = 1
DEFAULT_NUM_SEGMENTS = 256
"""The paper's headline ADPO (its Table 2) is adaptive with m = 256."""
PADDING_SEGMENT = -1
"""Segment index of the positions a mask leaves out."""


def check_granularity(
    granularity: str,
    window_size: int,
    num_segments: int,
    granularities: tuple[str, ...] = FAMILIES,
) -> None:
    """Raise `ValueError` on an unknown granularity, an invalid k or m, or a k or m changed for another granularity.

    A window size other than 1 only means something to the static family and a number of segments other than 256
    only to the adaptive one: setting either for another granularity would be silently ignored, so it is refused.
    """
    if granularity not in granularities:
        raise ValueError(f"granularity must be one of {granularities}, got {granularity!r}.")
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
    if granularity != "static" and window_size != DEFAULT_WINDOW_SIZE:
        raise ValueError(
            f"window_size={window_size} applies to granularity='static' only, and granularity is {granularity!r}: "
            "set granularity='static' to cut windows of that size, or leave window_size at 1."
        )
    if granularity != "adaptive" and num_segments != DEFAULT_NUM_SEGMENTS:
        raise ValueError(
            f"num_segments={num_segments} applies to granularity='adaptive' only, and granularity is "
            f"{granularity!r}: set granularity='adaptive' to cut that many segments, or leave num_segments at "
            f"{DEFAULT_NUM_SEGMENTS}."
        )


def family_segment_ids(mask: torch.Tensor, granularity: str, window_size: int, num_segments: int) -> torch.Tensor:
    """``(B, T)`` segment index of each position of a static or adaptive cut; callers mask the padding."""
    positions = mask.long().cumsum(dim=1) - 1  # index among the valid tokens of the row
    if granularity == "static":
        return positions // window_size
    lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
    segments = lengths.clamp(max=num_segments)
    return ((positions + 1) * segments - 1).div(lengths, rounding_mode="floor")


def segment_ids(
    mask: torch.Tensor,
    granularity: Literal["static", "adaptive"],
    window_size: int = DEFAULT_WINDOW_SIZE,
    num_segments: int = DEFAULT_NUM_SEGMENTS,
) -> torch.Tensor:
    """Segment index of each completion token under a static or adaptive granularity.

    Args:
        mask: ``(B, T)`` boolean completion mask, normally right-padded. Positions count over its True entries.
        granularity: ``"static"`` (windows of ``window_size`` tokens) or ``"adaptive"`` (``num_segments`` segments).
        window_size: the static window ``k >= 1``.
        num_segments: the adaptive number of segments ``m >= 1`` (default 256, the paper's headline ADPO).

    Returns:
        ``(B, T)`` long tensor: the segment of each token, `PADDING_SEGMENT` (-1) where ``mask`` is False.
    """
    check_granularity(granularity, window_size, num_segments)
    if mask.dim() != 2:
        raise ValueError(f"mask must have shape (batch, length), got shape {tuple(mask.shape)}.")
    mask = mask.bool()
    return family_segment_ids(mask, granularity, window_size, num_segments).masked_fill(~mask, PADDING_SEGMENT)


def check_segment_ids(name: str, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise `ValueError` unless, on each row's masked tokens, `ids` start at 0 and rise by 0 or 1 at each token.

    Args:
        name: the argument's name in messages, e.g. "chosen_segment_ids".
        ids: ``(B, T)`` integer segment ids; values under a False mask never matter.
        mask: ``(B, T)`` boolean mask of the tokens.
    """
    if ids.shape != mask.shape:
        raise ValueError(f"{name} has shape {tuple(ids.shape)} but its mask has shape {tuple(mask.shape)}.")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer segment ids, got dtype {ids.dtype}.")
    valid = ids.long().masked_fill(~mask, PADDING_SEGMENT)
    previous = torch.nn.functional.pad(valid.cummax(dim=1).values[:, :-1], (1, 0), value=PADDING_SEGMENT)
    bad = mask & ((valid < previous) | (valid > previous + 1))
    if bad.any():
        pair, position = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name}[{pair}] is not a valid cut into contiguous segments: at token {position} it is "
            f"{int(valid[pair, position])} after {int(previous[pair, position])}. Segment ids must start at 0 on "
            "each pair's first token and rise by 0 or 1 from one token to the next."
        )


def segment_counts(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` number of segments of each row (0 for a row without tokens)."""
    return ids.long().masked_fill(~mask, PADDING_SEGMENT).amax(dim=1) + 1


class Decoder(Protocol):
    """What `step_segment_ids` needs of a tokenizer (any Hugging Face tokenizer has it)."""

    def batch_decode(self, sequences: list[list[int]], **kwargs) -> list[str]: ...


DECODE_WINDOW = 8
"""Tokens of left context when decoding one token: enough for a character split over several byte-level tokens and
for tokenizers that drop a leading space at the start of a text."""


def token_starts(token_ids: Sequence[int], tokenizer: Decoder) -> tuple[str, np.ndarray, np.ndarray]:
    """The decoded text of `token_ids` and, for each token, the offset of its first character and its length.

    A token's text is what decoding it after (up to `DECODE_WINDOW`) preceding tokens adds; special tokens decode to
    their own text. A token that completes a character split over several byte-level tokens adds that character; the
    tokens before it add nothing.
    """
    ids = list(token_ids)
    decode = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
    with_token = tokenizer.batch_decode([ids[max(0, i - DECODE_WINDOW) : i + 1] for i in range(len(ids))], **decode)
    before = tokenizer.batch_decode([ids[max(0, i - DECODE_WINDOW) : i] for i in range(len(ids))], **decode)
    lengths = np.maximum(np.array([len(a) - len(b) for a, b in zip(with_token, before)], dtype=np.int64), 0)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    text = tokenizer.batch_decode([ids], **decode)[0]
    if len(text) != int(lengths.sum()):  # a decoder that rewrites across tokens: match on the pieces themselves
        text = "".join(a[len(b) :] for a, b in zip(with_token, before))
    return text, starts, lengths


def check_step_pattern(pattern: str) -> None:
    """Raise `ValueError` unless `pattern` is a regular expression that cannot match the empty string (which would
    begin a step at every character)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"step_pattern {pattern!r} is no regular expression: {error}.") from None
    if compiled.fullmatch("") is not None or compiled.search("") is not None:
        raise ValueError(
            f"step_pattern {pattern!r} matches the empty string, so it would begin a step at every character: make it "
            r"match the text that opens a step, e.g. 'Step \d+:'."
        )


def step_boundaries(text: str, delimiter: str, pattern: str | None = None) -> np.ndarray:
    """Character offsets where a new step begins: after each `delimiter` (which belongs to the step it closes), or,
    with `pattern` (a regular expression), at the start of each match (which belongs to the step it opens)."""
    if pattern is not None:
        offsets = [match.start() for match in re.finditer(pattern, text)]
    else:
        offsets = [match.end() for match in re.finditer(re.escape(delimiter), text)]
    return np.array(sorted(set(offsets)), dtype=np.int64)


def first_visible_characters(text: str, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The offset of each token's first non-whitespace character; a token of whitespace alone: its first one."""
    offsets = starts.copy()
    for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
        piece = text[start : start + length]
        if piece.strip():
            offsets[i] = start + len(piece) - len(piece.lstrip())
    return offsets


def step_segment_ids(
    token_ids: Sequence[int], tokenizer: Decoder, delimiter: str = "\n", pattern: str | None = None
) -> list[int]:
    """One segment per reasoning step: the segment id of each token of a tokenized completion.

    The completion is decoded and cut into steps at character offsets (`step_boundaries`). A token belongs to the
    step in which its first non-whitespace character lies (a token of whitespace alone: its first character). So a
    byte-level BPE or SentencePiece token that carries the space before a pattern's match (``" Step"``) opens the
    step the match begins, a token that holds a delimiter and the text after it (``";\\nd"``) closes its step, and a
    delimiter spread over several tokens ends its step after its last one. A token with no text of its own goes with
    the token before it. Steps that no token starts (two delimiters in one token, a delimiter at the very end) are
    dropped, so the ids are contiguous from 0; a completion without a delimiter is one segment.

    Args:
        token_ids: the completion's token ids, in order.
        tokenizer: the tokenizer that made them.
        delimiter: the text that ends a step (default a newline).
        pattern: a regular expression whose matches begin a step (e.g. ``r"Step \\d+:"``); replaces `delimiter`.

    Returns:
        The segment id of each token: ``len(token_ids)`` integers, 0 first, rising by 0 or 1.
    """
    if len(token_ids) == 0:
        return []
    text, starts, lengths = token_starts(token_ids, tokenizer)
    offsets = first_visible_characters(text, starts, lengths)
    crossed = np.searchsorted(step_boundaries(text, delimiter, pattern), offsets, side="right")
    crossed = np.maximum.accumulate(np.where(lengths > 0, crossed, -1))  # textless tokens join the token before
    crossed = np.maximum(crossed, crossed[lengths > 0][0] if (lengths > 0).any() else 0)
    return np.concatenate([[0], np.cumsum(np.diff(crossed) != 0)]).tolist()
