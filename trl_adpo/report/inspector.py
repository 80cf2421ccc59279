"""The granularity inspector: how one preference pair is cut into segments, and with models, what each token and
segment contributes to the ADPO loss and to its gradient.

`inspect_pair` tokenizes a pair through the trainer's own preparation (the `tokenize_dataset` it is given, which
`trl-adpo inspect` makes `ADPOTrainer.tokenize_dataset`: TRL's tokenization on the installed line, BOS and EOS as it
adds them, a chat template for conversations, the step cut), keeps the completion tokens that truncation to
`max_length` leaves scored, and cuts them by the granularity. Given a policy and a reference, it computes each token's
log-ratio on the sequence the trainer feeds the model, each segment's reward ``R(j)``, each paired segment's margin and
loss, the pair's ADPO loss (with critical-token weights when the two models are given), and each token's gradient ``d
loss / d s(t)`` under the granularity and under DPO (one segment): ADPO's local credit assignment made visible.
`to_text` renders a terminal table, `to_html` a self-contained page.
"""

from __future__ import annotations

import html
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..data import scored_completion_spans
from ..objective import adpo_loss
from ..segmentation import FAMILIES, check_granularity, check_step_pattern, segment_ids, token_starts

SIDES = ("chosen", "rejected")


@dataclass
class Granularity:
    """A granularity as `ADPOConfig` gives it."""

    granularity: str = "adaptive"
    window_size: int = 1
    num_segments: int = 256
    step_delimiter: str = "\n"
    step_pattern: str | None = None

    def __post_init__(self):
        check_granularity(self.granularity, self.window_size, self.num_segments, (*FAMILIES, "step"))
        if self.step_pattern is not None:
            check_step_pattern(self.step_pattern)
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string, e.g. '\\n' or ';'.")

    def config(self, beta: float, max_length: int | None, truncation_mode: str):
        """The `ADPOConfig` of a run with this granularity (what the trainer's preparation reads)."""
        from ..config import ADPOConfig

        step = (
            dict(step_delimiter=self.step_delimiter, step_pattern=self.step_pattern)
            if self.granularity == "step"
            else {}
        )
        return ADPOConfig(
            output_dir=tempfile.gettempdir(),
            report_to="none",
            bf16=False,
            beta=beta,
            max_length=max_length,
            truncation_mode=truncation_mode,
            granularity=self.granularity,
            window_size=self.window_size,
            num_segments=self.num_segments,
            **step,
        )

    def cut(self, count: int) -> list[int]:
        """The segment id of each of `count` scored tokens, for the static and adaptive families."""
        family = (
            {"window_size": self.window_size} if self.granularity == "static" else {"num_segments": self.num_segments}
        )
        return segment_ids(torch.ones(1, count, dtype=torch.bool), self.granularity, **family)[0].tolist()


@dataclass
class SideReport:
    """One completion's scored tokens: their ids, text and segments, and with models, their log-ratios, weights,
    the segments' rewards and each token's gradient under the granularity and under DPO."""

    token_ids: list[int]
    tokens: list[str]
    segment_ids: list[int]
    logratios: list[float] | None = None
    weights: list[float] | None = None
    rewards: list[float] | None = None
    gradients: list[float] | None = None
    dpo_gradients: list[float] | None = None


@dataclass
class PairReport:
    granularity: str
    beta: float
    prompt: str
    chosen: SideReport
    rejected: SideReport
    diverges_at: int | None = None
    """The first scored token where the two completions differ (None if they are the same tokens)."""
    margins: list[float] | None = None
    segment_losses: list[float] | None = None
    loss: float | None = None
    dpo_loss: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _token_ids(row: dict, part: str) -> list[int]:
    """A tokenized row's ids of `part` (prompt, chosen or rejected), by either TRL line's column names."""
    return row[f"{part}_input_ids"] if f"{part}_input_ids" in row else row[f"{part}_ids"]


def training_sequence(prompt_ids: list[int], completion_ids: list[int], max_length: int | None, mode: str):
    """The sequence the trainer feeds the model for one side of a row, and the positions in it of the scored
    completion tokens: their indices ``first <= i < stop`` in the completion."""
    (first,), (stop,) = scored_completion_spans([len(prompt_ids)], [len(completion_ids)], max_length, mode)
    sequence = prompt_ids + completion_ids
    offset = 0
    if max_length is not None and len(sequence) > max_length:
        offset = 0 if mode == "keep_start" else len(sequence) - max_length
        sequence = sequence[offset : offset + max_length]
    positions = [len(prompt_ids) + i - offset for i in range(int(first), int(stop))]
    return sequence, positions, int(first), int(stop)


@torch.no_grad()
def token_logps(model, sequence: list[int], positions: list[int]) -> list[float]:
    """log p(token | everything before it) of the tokens at `positions` (each >= 1) of one unpadded sequence."""
    ids = torch.tensor([sequence], device=model.device)
    logps = model(ids).logits[0].float().log_softmax(-1)
    return [logps[t - 1, ids[0, t]].item() for t in positions]


def loss_and_gradients(sides: dict[str, SideReport], beta: float, segments: dict[str, list[int]]):
    """The pair's ADPO output for the given segments, and ``d loss / d s(t)`` of every token of each side."""
    logratios = {
        side: torch.tensor([s.logratios], dtype=torch.float64, requires_grad=True) for side, s in sides.items()
    }
    weights = {
        side: None if s.weights is None else torch.tensor([s.weights], dtype=torch.float64)
        for side, s in sides.items()
    }
    masks = {side: torch.ones_like(values, dtype=torch.bool) for side, values in logratios.items()}
    output = adpo_loss(
        logratios["chosen"],
        logratios["rejected"],
        masks["chosen"],
        masks["rejected"],
        beta=beta,
        granularity="explicit",
        chosen_segment_ids=torch.tensor([segments["chosen"]]),
        rejected_segment_ids=torch.tensor([segments["rejected"]]),
        chosen_weights=weights["chosen"],
        rejected_weights=weights["rejected"],
    )
    output.losses.sum().backward()
    return output, {side: values.grad[0].tolist() for side, values in logratios.items()}


def inspect_pair(
    tokenizer,
    prompt,
    chosen,
    rejected,
    granularity: Granularity,
    *,
    tokenize_dataset: Callable[[Any, Any, Any], Any],
    beta: float = 0.1,
    max_length: int | None = None,
    truncation_mode: str = "keep_start",
    policy=None,
    reference=None,
    critical_models=None,
    weight_chosen_tokens: bool = False,
) -> PairReport:
    """Cut a pair into segments as training does and, with `policy` and `reference`, score it (module docstring).

    `tokenize_dataset(dataset, tokenizer, args)` prepares a one-row dataset as the trainer does
    (`ADPOTrainer.tokenize_dataset`)."""
    from datasets import Dataset

    args = granularity.config(beta, max_length, truncation_mode)
    row = tokenize_dataset(
        Dataset.from_list([{"prompt": prompt, "chosen": chosen, "rejected": rejected}]), tokenizer, args
    )[0]
    prompt_ids = _token_ids(row, "prompt")
    sides, sequences, notes = {}, {}, []
    for side in SIDES:
        completion_ids = _token_ids(row, side)
        sequence, positions, first, stop = training_sequence(prompt_ids, completion_ids, max_length, truncation_mode)
        text, starts, lengths = token_starts(completion_ids, tokenizer)
        pieces = [text[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist())][first:stop]
        cut = row[f"{side}_segment_ids"] if granularity.granularity == "step" else granularity.cut(stop - first)
        sides[side] = SideReport(completion_ids[first:stop], pieces, cut)
        sequences[side] = (sequence, positions)
        if first > 0 or stop < len(completion_ids):
            notes.append(
                f"Scored {side} tokens: {first} to {stop - 1} of {len(completion_ids)} (the first token of a sequence "
                f"has no context; truncation to max_length={max_length}, {truncation_mode}, drops the rest)."
            )
    chosen_ids, rejected_ids = sides["chosen"].token_ids, sides["rejected"].token_ids
    shared = next((i for i, (a, b) in enumerate(zip(chosen_ids, rejected_ids)) if a != b), None)
    if shared is None and len(chosen_ids) != len(rejected_ids):
        shared = min(len(chosen_ids), len(rejected_ids))
    text_prompt = prompt if isinstance(prompt, str) else tokenizer.decode(prompt_ids)
    report = PairReport(
        args.granularity_description, beta, text_prompt, sides["chosen"], sides["rejected"], shared, notes=notes
    )
    if policy is None:
        return report
    if reference is None:
        raise ValueError("A policy was given without a reference model: the log-ratios need both.")
    context = getattr(policy.config, "max_position_embeddings", None)
    for side, (sequence, positions) in sequences.items():
        if context is not None and len(sequence) > context:
            warnings.warn(
                f"The {side} sequence has {len(sequence)} tokens, more than the policy's context of {context} "
                "(max_position_embeddings): its scores past that are not what the model was trained to give. Pass "
                f"--max_length {context} to score it as a run with that max_length would.",
                stacklevel=2,
            )
        policy_logps = token_logps(policy, sequence, positions)
        reference_logps = token_logps(reference, sequence, positions)
        sides[side].logratios = [p - r for p, r in zip(policy_logps, reference_logps)]
    if critical_models is not None:
        for side, (sequence, positions) in sequences.items():
            ids = torch.tensor([sequence])
            scored = torch.zeros(1, ids.shape[1] - 1, dtype=torch.bool)
            scored[0, [t - 1 for t in positions]] = True
            probs = critical_models.token_probs(ids, torch.ones_like(ids), scored)[0][scored[0]].tolist()
            if side == "rejected":
                sides[side].weights = [1 - p for p in probs]
            elif weight_chosen_tokens:
                sides[side].weights = probs
    output, gradients = loss_and_gradients(sides, beta, {side: s.segment_ids for side, s in sides.items()})
    dpo, dpo_gradients = loss_and_gradients(sides, beta, {side: [0] * len(s.token_ids) for side, s in sides.items()})
    count = int(output.feedback_length[0])
    for side, rewards in (("chosen", output.chosen_rewards), ("rejected", output.rejected_rewards)):
        sides[side].rewards = rewards[0, : max(sides[side].segment_ids) + 1].tolist()
        sides[side].gradients, sides[side].dpo_gradients = gradients[side], dpo_gradients[side]
    margins = (output.chosen_rewards - output.rejected_rewards)[0, :count].detach()
    report.margins = margins.tolist()
    report.segment_losses = (-torch.nn.functional.logsigmoid(margins)).tolist()
    report.loss, report.dpo_loss = output.losses[0].item(), dpo.losses[0].item()
    return report


# --- rendering ----------------------------------------------------------------------------------------------------


def _segments(side: SideReport) -> list[list[int]]:
    """Token indices of each segment."""
    segments: list[list[int]] = [[] for _ in range(max(side.segment_ids) + 1)]
    for index, segment in enumerate(side.segment_ids):
        segments[segment].append(index)
    return segments


def shared_prefix(report: PairReport) -> int:
    """How many scored tokens the two completions share before they differ (all of them if they are the same)."""
    return report.diverges_at if report.diverges_at is not None else len(report.chosen.token_ids)


def net_gradients(report: PairReport, key: str) -> dict[str, list[float]]:
    """``d loss / d s(t)`` net of the shared prefix (`key`: "gradients" for the granularity, "dpo_gradients" for DPO).

    A token of the shared prefix is the same token in the same context on both sides, so its chosen and rejected
    log-ratios are one function of the parameters: the gradient through it is the sum of the two, shown on each side
    (zero where both fall in one segment with equal weights, as their terms cancel). Other tokens keep their own."""
    chosen, rejected = (list(getattr(getattr(report, side), key)) for side in SIDES)
    for t in range(shared_prefix(report)):
        chosen[t] = rejected[t] = chosen[t] + rejected[t]
    return {"chosen": chosen, "rejected": rejected}


def gradient_shares(report: PairReport, key: str) -> dict[str, list[float]]:
    """Each token's share of the pair's net gradient (`net_gradients`), ``|d loss / d s(t)|`` over the sum, a token
    of the shared prefix counted once (half its share shown on each side)."""
    net, prefix = net_gradients(report, key), shared_prefix(report)
    values = {side: [abs(g) / (2 if t < prefix else 1) for t, g in enumerate(net[side])] for side in SIDES}
    total = sum(map(sum, values.values())) or 1.0
    return {side: [g / total for g in values[side]] for side in SIDES}


def after_divergence(report: PairReport, key: str, only_first: bool = False) -> float:
    """The share of the pair's net gradient on the tokens from the first one where the completions differ (with
    `only_first`, on that first differing token of each side alone)."""
    shares, start = gradient_shares(report, key), shared_prefix(report)
    stop = start + 1 if only_first else None
    return sum(sum(shares[side][start:stop]) for side in SIDES)


def constant_segments(report: PairReport) -> int:
    """Paired segments made only of shared-prefix tokens, the same ones on both sides and equally weighted: their
    margin is exactly 0, so each adds log 2 to the loss whatever the parameters, and no gradient."""
    prefix, count = shared_prefix(report), 0
    for j in range(len(report.margins or [])):
        sides = [[t for t, s in enumerate(side.segment_ids) if s == j] for side in (report.chosen, report.rejected)]
        weights = [side.weights or [1.0] * len(side.token_ids) for side in (report.chosen, report.rejected)]
        if sides[0] == sides[1] and sides[0] and sides[0][-1] < prefix:
            count += all(weights[0][t] == weights[1][t] for t in sides[0])
    return count


def loss_summary(report: PairReport) -> tuple[str, str]:
    """The loss line and the gradient line of the summary, in words a newcomer reads right."""
    constant = constant_segments(report)
    loss = f"ADPO loss of the pair: {report.loss:.4f} over {len(report.margins)} segments"
    if constant:
        loss += (
            f", of which {constant} x log 2 = {constant * math.log(2):.4f} from the shared prefix (segments the two "
            "completions share: a constant, with no gradient)"
        )
    loss += f"; DPO's: {report.dpo_loss:.4f}"
    gradient = ""
    if report.diverges_at is not None:
        gradient = (
            f"Net gradient (a shared token's chosen and rejected terms summed): {shared_prefix(report)} shared tokens "
            f"get {max(0.0, 1 - after_divergence(report, 'gradients')):.0%} of it with this granularity and "
            f"{max(0.0, 1 - after_divergence(report, 'dpo_gradients')):.0%} with DPO; the first differing tokens "
            f"{after_divergence(report, 'gradients', only_first=True):.0%} and "
            f"{after_divergence(report, 'dpo_gradients', only_first=True):.0%}."
        )
    return loss, gradient


def to_text(report: PairReport) -> str:
    """A terminal table: each segment's tokens (and reward), then the paired segments' margins and losses."""
    lines = [f"granularity: {report.granularity}; beta {report.beta}"]
    if report.diverges_at is not None:
        lines.append(f"the completions share their first {report.diverges_at} scored tokens, then differ")
    for name in SIDES:
        side = getattr(report, name)
        segments = _segments(side)
        lines.append(f"\n{name}: {len(side.tokens)} tokens, {len(segments)} segments")
        for j, indices in enumerate(segments):
            text = "|".join(side.tokens[i] for i in indices).replace("\n", "\\n")
            reward = f"  R={side.rewards[j]:+.4f}" if side.rewards is not None else ""
            lines.append(f"  [{j:>3}] {text[:100]}{'...' if len(text) > 100 else ''}{reward}")
    if report.margins is not None:
        lines.append("\npaired segments (chosen j against rejected j):")
        lines.append(f"  {'j':>4} {'R_w(j)':>10} {'R_l(j)':>10} {'margin':>10} {'loss':>8}")
        for j, (margin, loss) in enumerate(zip(report.margins, report.segment_losses)):
            r_w = report.chosen.rewards[j] if j < len(report.chosen.rewards) else 0.0
            r_l = report.rejected.rewards[j] if j < len(report.rejected.rewards) else 0.0
            lines.append(f"  {j:>4} {r_w:>+10.4f} {r_l:>+10.4f} {margin:>+10.4f} {loss:>8.4f}")
        lines += [line for line in loss_summary(report) if line]
    lines += report.notes
    return "\n".join(lines)


def _colour(value: float | None, scale: float, segment: int) -> str:
    """Blue for a positive log-ratio, red for a negative one; without log-ratios, alternating segment tints."""
    if value is None:
        return ("#eef3fb", "#fbf3e6")[segment % 2]
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    low = round(255 - 150 * strength)
    return f"rgb({low},{low},255)" if value > 0 else f"rgb(255,{low},{low})"


def _share_colour(share: float, scale: float) -> str:
    """Green, darker for a larger share of the gradient."""
    strength = min(share / scale, 1.0) if scale > 0 else 0.0
    return f"rgb({round(255 - 170 * strength)},{round(255 - 60 * strength)},{round(255 - 170 * strength)})"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ADPO granularity inspector</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
.tokens {{ font-family: monospace; font-size: 15px; line-height: 2.1; white-space: pre-wrap; word-break: break-all; }}
.token {{ padding: 1px 0; }}
.start {{ border-left: 3px solid #333; padding-left: 2px; margin-left: 3px; }}
.start sup {{ color: #555; font-size: 10px; margin-right: 2px; }}
.diverge {{ outline: 2px solid #d40; outline-offset: 1px; }}
.diverge::before {{ content: "\\25BC"; color: #d40; font-size: 10px; }}
.strip-label {{ font-size: 12px; color: #555; margin: 6px 0 0 0; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-family: monospace; }}
.legend span {{ padding: 2px 8px; margin-right: 6px; }}
</style></head><body>
<h1>ADPO granularity inspector</h1>
<p>Granularity: <b>{granularity}</b>; beta {beta}. {summary}</p>
<p class="legend">{legend}</p>
<h2>Prompt</h2><div class="tokens">{prompt}</div>
{sides}
{pairs}
</body></html>
"""


def _strip(side: SideReport, colours: list[str], tips: list[str], diverges_at: int | None, marks: bool) -> str:
    spans = []
    for index, (token, segment) in enumerate(zip(side.tokens, side.segment_ids)):
        start = index == 0 or side.segment_ids[index - 1] != segment
        classes = "token" + (" start" if start and marks else "") + (" diverge" if index == diverges_at else "")
        spans.append(
            f'<span class="{classes}" title="{html.escape(tips[index])}" style="background:{colours[index]}">'
            + (f"<sup>{segment}</sup>" if start and marks else "")
            + f"{html.escape(token)}</span>"
        )
    return f'<div class="tokens">{"".join(spans)}</div>'


def to_html(report: PairReport) -> str:
    """A self-contained HTML page: tokens coloured by log-ratio, a bar and a number at each segment's start, the
    first differing token marked, and with models each token's share of the gradient under the granularity and DPO."""
    values = [abs(v) for name in SIDES for v in (getattr(report, name).logratios or [])]
    scale = max(values, default=0.0)
    scored = report.loss is not None
    shares = {key: gradient_shares(report, key) for key in ("gradients", "dpo_gradients")} if scored else {}
    nets = {key: net_gradients(report, key) for key in ("gradients", "dpo_gradients")} if scored else {}
    tokens = len(report.chosen.tokens) + len(report.rejected.tokens)
    share_scale = 2.0 / tokens  # twice an even share is full green: an even spread shows half-tinted
    blocks = []
    for name in SIDES:
        side = getattr(report, name)
        tips = []
        for index, segment in enumerate(side.segment_ids):
            tip = f"token {index}, segment {segment}"
            if side.logratios is not None:
                tip += f", log-ratio {side.logratios[index]:+.4f}"
                net, dpo_net = (nets[key][name][index] for key in ("gradients", "dpo_gradients"))
                tip += f", net d loss/d s {net:+.4f} (DPO {dpo_net:+.4f})"
            if side.weights is not None:
                tip += f", weight {side.weights[index]:.3f}"
            tips.append(tip)
        colours = [
            _colour(side.logratios[i] if side.logratios else None, scale, s) for i, s in enumerate(side.segment_ids)
        ]
        block = (
            f"<h2>{name.capitalize()}: {len(side.tokens)} tokens, {max(side.segment_ids) + 1} segments</h2>"
            + _strip(side, colours, tips, report.diverges_at, marks=True)
        )
        for key, label in (
            ("gradients", f"share of the net gradient, {report.granularity}"),
            ("dpo_gradients", "share of the net gradient, DPO"),
        ):
            if scored:
                block += f'<p class="strip-label">{label}</p>' + _strip(
                    side,
                    [_share_colour(v, share_scale) for v in shares[key][name]],
                    tips,
                    report.diverges_at,
                    marks=key == "gradients",
                )
        blocks.append(block)
    pairs = ""
    if report.margins is not None:
        rows = "".join(
            f"<tr><td>{j}</td><td>{(report.chosen.rewards + [0.0] * len(report.margins))[j]:+.4f}</td>"
            f"<td>{(report.rejected.rewards + [0.0] * len(report.margins))[j]:+.4f}</td><td>{margin:+.4f}</td>"
            f"<td>{loss:.4f}</td></tr>"
            for j, (margin, loss) in enumerate(zip(report.margins, report.segment_losses))
        )
        pairs = (
            "<h2>Paired segments</h2><table><tr><th>j</th><th>R_w(j)</th><th>R_l(j)</th><th>margin</th>"
            f"<th>-log sigmoid(margin)</th></tr>{rows}</table>"
        )
    if scored:
        loss, gradient = loss_summary(report)
        summary = f"{html.escape(loss)}. {html.escape(gradient)}".strip()
    else:
        summary = "No models given: the segments only."
    legend = (
        '<span style="background:rgb(105,105,255)">log-ratio &gt; 0</span>'
        '<span style="background:rgb(255,105,105)">log-ratio &lt; 0</span>'
        '<span style="background:rgb(85,195,85)">twice an even share of the net gradient, or more (a shared-prefix '
        "token's chosen and rejected terms summed: none where they cancel)</span>"
        if scale > 0
        else '<span style="background:#eef3fb">even segment</span><span style="background:#fbf3e6">odd segment</span>'
    )
    legend += (
        " A bar and a number mark the first token of each segment; a red frame and &#9660; the first token where "
        "the completions differ; hover a token for its values."
    )
    return PAGE.format(
        granularity=html.escape(report.granularity),
        beta=report.beta,
        summary=summary,
        legend=legend,
        prompt=html.escape(report.prompt),
        sides="\n".join(blocks),
        pairs=pairs,
    )
