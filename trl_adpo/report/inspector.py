"""The granularity inspector: how one preference pair is cut into segments, and with models, what each token and
segment contributes to the ADPO loss.

`inspect_pair` tokenizes a pair as TRL 1.x does (the prompt, then prompt + completion + EOS, the completion being
what follows their common prefix; a chat template for conversations), cuts each completion by the granularity, and,
given a policy and a reference, computes each token's log-ratio, each segment's reward ``R(j)``, each paired
segment's margin ``R_w(j) - R_l(j)`` and loss, and the pair's ADPO loss (with critical-token weights when the two
models are given). `to_text` renders a terminal table, `to_html` a self-contained page with the tokens coloured by
log-ratio and the segment boundaries drawn.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, field

import torch

from ..objective import adpo_loss
from ..segmentation import FAMILIES, check_granularity, segment_ids, step_segment_ids, token_starts

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
            try:
                re.compile(self.step_pattern)
            except re.error as error:
                raise ValueError(f"step_pattern {self.step_pattern!r} is no regular expression: {error}.") from None
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string, e.g. '\\n' or ';'.")

    def describe(self) -> str:
        if self.granularity == "static":
            return f"static, k={self.window_size}"
        if self.granularity == "step":
            return f"step, pattern {self.step_pattern!r}" if self.step_pattern else f"step, delimiter {self.step_delimiter!r}"
        return f"adaptive, m={self.num_segments}"

    def cut(self, completion_ids: list[int], tokenizer) -> list[int]:
        """The segment id of each completion token."""
        if self.granularity == "step":
            return step_segment_ids(completion_ids, tokenizer, self.step_delimiter, self.step_pattern)
        family = {"window_size": self.window_size} if self.granularity == "static" else {"num_segments": self.num_segments}
        mask = torch.ones(1, len(completion_ids), dtype=torch.bool)
        return segment_ids(mask, self.granularity, **family)[0].tolist()


@dataclass
class SideReport:
    """One completion: its tokens' text and segments, and with models, their log-ratios, weights and rewards."""

    token_ids: list[int]
    tokens: list[str]
    segment_ids: list[int]
    logratios: list[float] | None = None
    weights: list[float] | None = None
    rewards: list[float] | None = None


@dataclass
class PairReport:
    granularity: str
    beta: float
    prompt: str
    chosen: SideReport
    rejected: SideReport
    margins: list[float] | None = None
    segment_losses: list[float] | None = None
    loss: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _render_chat(tokenizer, messages, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_pair(tokenizer, prompt, completion) -> tuple[list[int], list[int]]:
    """Prompt and completion token ids as TRL 1.x makes them (standard text or conversations)."""
    if isinstance(prompt, list):  # conversational
        prompt_text = _render_chat(tokenizer, prompt, True)
        full_text = _render_chat(tokenizer, prompt + completion, False)
    else:
        prompt_text, full_text = prompt, prompt + completion + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    common = next((i for i, (a, b) in enumerate(zip(prompt_ids, full_ids)) if a != b), min(len(prompt_ids), len(full_ids)))
    return full_ids[:common], full_ids[common:]


@torch.no_grad()
def completion_logps(model, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
    """log p(token | everything before it) of each completion token, one unpadded sequence."""
    ids = torch.tensor([prompt_ids + completion_ids], device=model.device)
    logps = model(ids).logits[0].float().log_softmax(-1)
    start = len(prompt_ids)
    return [logps[t - 1, ids[0, t]].item() for t in range(max(start, 1), ids.shape[1])]


def inspect_pair(
    tokenizer,
    prompt,
    chosen,
    rejected,
    granularity: Granularity,
    *,
    beta: float = 0.1,
    policy=None,
    reference=None,
    critical_models=None,
    weight_chosen_tokens: bool = False,
) -> PairReport:
    """Cut a pair into segments and, with `policy` and `reference`, score it. See the module docstring."""
    sides = {}
    prompt_ids: list[int] = []
    for side, completion in zip(SIDES, (chosen, rejected)):
        prompt_ids, ids = tokenize_pair(tokenizer, prompt, completion)
        if not ids:
            raise ValueError(f"The {side} completion has no token: there is nothing to cut into segments.")
        text, starts, lengths = token_starts(ids, tokenizer)
        pieces = [text[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist())]
        sides[side] = SideReport(ids, pieces, granularity.cut(ids, tokenizer))
    report = PairReport(granularity.describe(), beta, str(prompt), sides["chosen"], sides["rejected"])
    if policy is None:
        return report
    if reference is None:
        raise ValueError("A policy was given without a reference model: the log-ratios need both.")
    for side, report_side in sides.items():
        ids = report_side.token_ids
        policy_logps = completion_logps(policy, prompt_ids, ids)
        reference_logps = completion_logps(reference, prompt_ids, ids)
        if not prompt_ids:  # the first token of a sequence has no context and no log-prob, as in training
            report.notes.append(f"The prompt is empty: the first {side} token is not scored.")
            report_side.token_ids, report_side.tokens = ids[1:], report_side.tokens[1:]
            report_side.segment_ids = [s - report_side.segment_ids[1] for s in report_side.segment_ids[1:]]
        report_side.logratios = [p - r for p, r in zip(policy_logps, reference_logps)]
    if critical_models is not None:
        for side, report_side in sides.items():
            ids = torch.tensor([prompt_ids + report_side.token_ids])
            scored = torch.zeros(1, ids.shape[1] - 1, dtype=torch.bool)
            scored[0, len(prompt_ids) - 1 :] = True
            probs = critical_models.token_probs(ids, torch.ones_like(ids), scored)[0][scored[0]].tolist()
            if side == "rejected":
                report_side.weights = [1 - p for p in probs]
            elif weight_chosen_tokens:
                report_side.weights = probs
    tensors = {
        side: (torch.tensor([s.logratios], dtype=torch.float64), torch.tensor([s.segment_ids]),
               None if s.weights is None else torch.tensor([s.weights], dtype=torch.float64))
        for side, s in sides.items()
    }
    output = adpo_loss(
        tensors["chosen"][0], tensors["rejected"][0],
        torch.ones_like(tensors["chosen"][0], dtype=torch.bool), torch.ones_like(tensors["rejected"][0], dtype=torch.bool),
        beta=beta, granularity="explicit", chosen_segment_ids=tensors["chosen"][1],
        rejected_segment_ids=tensors["rejected"][1], chosen_weights=tensors["chosen"][2],
        rejected_weights=tensors["rejected"][2],
    )
    count = int(output.feedback_length[0])
    for side, rewards in (("chosen", output.chosen_rewards), ("rejected", output.rejected_rewards)):
        sides[side].rewards = rewards[0, : max(sides[side].segment_ids) + 1].tolist()
    margins = (output.chosen_rewards - output.rejected_rewards)[0, :count]
    report.margins = margins.tolist()
    report.segment_losses = (-torch.nn.functional.logsigmoid(margins)).tolist()
    report.loss = output.losses[0].item()
    return report


# --- rendering ----------------------------------------------------------------------------------------------------


def _segments(side: SideReport) -> list[list[int]]:
    """Token indices of each segment."""
    segments: list[list[int]] = [[] for _ in range(max(side.segment_ids) + 1)]
    for index, segment in enumerate(side.segment_ids):
        segments[segment].append(index)
    return segments


def to_text(report: PairReport) -> str:
    """A terminal table: each segment's tokens (and reward), then the paired segments' margins and losses."""
    lines = [f"granularity: {report.granularity}; beta {report.beta}"]
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
        lines.append(f"ADPO loss of the pair: {report.loss:.4f} ({len(report.margins)} segments)")
    lines += report.notes
    return "\n".join(lines)


def _colour(value: float | None, scale: float, segment: int) -> str:
    """Blue for a positive log-ratio, red for a negative one; without log-ratios, alternating segment tints."""
    if value is None:
        return ("#eef3fb", "#fbf3e6")[segment % 2]
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    low = round(255 - 150 * strength)
    return f"rgb({low},{low},255)" if value > 0 else f"rgb(255,{low},{low})"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ADPO granularity inspector</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
.tokens {{ font-family: monospace; font-size: 15px; line-height: 2.1; white-space: pre-wrap; word-break: break-all; }}
.token {{ padding: 1px 0; }}
.start {{ border-left: 3px solid #333; padding-left: 2px; margin-left: 3px; }}
.start sup {{ color: #555; font-size: 10px; margin-right: 2px; }}
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


def to_html(report: PairReport) -> str:
    """A self-contained HTML page: tokens coloured by log-ratio, a bar and a number at each segment's start."""
    values = [abs(v) for name in SIDES for v in (getattr(report, name).logratios or [])]
    scale = max(values, default=0.0)
    blocks = []
    for name in SIDES:
        side = getattr(report, name)
        spans = []
        for index, (token, segment) in enumerate(zip(side.tokens, side.segment_ids)):
            value = side.logratios[index] if side.logratios is not None else None
            start = index == 0 or side.segment_ids[index - 1] != segment
            tip = f"token {index}, segment {segment}" + (f", log-ratio {value:+.4f}" if value is not None else "")
            if side.weights is not None:
                tip += f", weight {side.weights[index]:.3f}"
            spans.append(
                f'<span class="token{" start" if start else ""}" title="{html.escape(tip)}" '
                f'style="background:{_colour(value, scale, segment)}">'
                + (f"<sup>{segment}</sup>" if start else "") + f"{html.escape(token)}</span>"
            )
        blocks.append(f"<h2>{name.capitalize()}: {len(side.tokens)} tokens, {max(side.segment_ids) + 1} segments</h2>"
                      f'<div class="tokens">{"".join(spans)}</div>')
    pairs = ""
    if report.margins is not None:
        rows = "".join(
            f"<tr><td>{j}</td><td>{(report.chosen.rewards + [0.0] * len(report.margins))[j]:+.4f}</td>"
            f"<td>{(report.rejected.rewards + [0.0] * len(report.margins))[j]:+.4f}</td><td>{margin:+.4f}</td>"
            f"<td>{loss:.4f}</td></tr>"
            for j, (margin, loss) in enumerate(zip(report.margins, report.segment_losses))
        )
        pairs = ("<h2>Paired segments</h2><table><tr><th>j</th><th>R_w(j)</th><th>R_l(j)</th><th>margin</th>"
                 f"<th>-log sigmoid(margin)</th></tr>{rows}</table>")
    summary = f"ADPO loss of the pair: <b>{report.loss:.4f}</b> over {len(report.margins)} segments." if report.loss is not None else "No models given: the segments only."
    legend = ('<span style="background:rgb(105,105,255)">log-ratio &gt; 0</span>'
              '<span style="background:rgb(255,105,105)">log-ratio &lt; 0</span>' if scale > 0 else
              '<span style="background:#eef3fb">even segment</span><span style="background:#fbf3e6">odd segment</span>')
    legend += " A bar and a number mark the first token of each segment; hover a token for its values."
    return PAGE.format(
        granularity=html.escape(report.granularity), beta=report.beta, summary=summary, legend=legend,
        prompt=html.escape(report.prompt), sides="\n".join(blocks), pairs=pairs,
    )
