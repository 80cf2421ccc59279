"""`ADPOConfig`: TRL's `DPOConfig` plus the ADPO granularity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import trl
from packaging.version import Version
from trl import DPOConfig

from .critical_tokens import check_gamma
from .files import SECRET_OPTIONS
from .objective import REDUCTIONS
from .segmentation import DEFAULT_NUM_SEGMENTS, DEFAULT_WINDOW_SIZE, FAMILIES, check_granularity, check_step_pattern

GRANULARITIES = (*FAMILIES, "step")
DEFAULT_STEP_DELIMITER = "\n"


LOSS_TERMS = ("sigmoid", "sft")
"""The DPO loss types ADPOConfig takes: "sigmoid", replaced by the ADPO loss, and "sft", the chosen completions' NLL
term of RPO (Pang et al. 2024), which the ADPO loss may be combined with."""

# DPOConfig options that change the loss or the forward pass in ways ADPO does not define: the values that leave them
# off (None is DPOConfig's "not set"), and why. An option's enum value counts as its value (FDivergenceType.REVERSE_KL
# is "reverse_kl"). On TRL 1.x `use_liger_kernel` applies Liger's layer kernels only (TRL computes the log-probs
# itself), which ADPO does not mind: it is refused on TRL 0.28 alone (`UNSUPPORTED_ON_TRL028`).
UNSUPPORTED_OPTIONS = {
    "f_divergence_type": (("reverse_kl",), "ADPO is derived for the reverse-KL constraint"),
    "reference_free": ((None, False), "ADPO needs per-token reference log-probs"),
    "use_liger_kernel": ((False,), "TRL 0.28's Liger fused DPO loss only returns summed log-probs"),
    "use_weighting": ((False,), "WPO weighting is defined on whole sequences"),
    "ld_alpha": ((None,), "length desensitization (LD-DPO) reweights summed log-probs"),
    "padding_free": ((False,), "padding-free batches are not supported by ADPOTrainer"),
}
UNSUPPORTED_ON_TRL028 = ("use_liger_kernel",)


@dataclass
class ADPOConfig(DPOConfig):
    r"""Configuration for `ADPOTrainer`: every `DPOConfig` option, plus the granularity of the ADPO loss.

    The default is the paper's headline ADPO (its Table 2): adaptive granularity with `num_segments=256`, which cuts
    each completion into at most 256 near-equal segments, the longer ones last (one segment per token for
    completions of up to 256 tokens). Static granularity cuts windows of `window_size` tokens instead
    (`granularity="static"`; `window_size=1` is the token-level loss); `num_segments=1` is exactly DPO. Step
    granularity (`granularity="step"`) gives one segment per reasoning step, cut at `step_delimiter` or at the
    matches of `step_pattern` in the decoded completion. An option of another granularity than the one chosen is
    refused rather than ignored. `label_smoothing` > 0 gives the
    conservative (label-smoothed) loss, an extra that is not the paper's. With `positive_model` and `negative_model`
    set, the trainer weighs each rejected token's log-ratio by its critical-token weight ``1 - p_ce`` (contrastive
    estimation of cDPO, Lin et al. 2025): that is the paper's cADPO, and cDPO with `num_segments=1`. Options of DPO
    that ADPO cannot honour are rejected here (see `UNSUPPORTED_OPTIONS`).
    """

    granularity: str = field(
        default="adaptive",
        metadata={
            "help": "How completions are cut into segments that share one log-sigmoid: 'adaptive' (`num_segments` "
            "near-equal segments, the longer ones last; the default, with m=256 the paper's headline ADPO) or "
            "'static' (windows of `window_size` tokens) or 'step' (one segment per reasoning step, cut at "
            "`step_delimiter` or `step_pattern`).",
            "choices": list(GRANULARITIES),
        },
    )
    window_size: int = field(
        default=DEFAULT_WINDOW_SIZE,
        metadata={
            "help": "Static granularity only: tokens per segment (k >= 1). 1 is the token-level ADPO loss; a window "
            "at least as long as the completions is DPO."
        },
    )
    num_segments: int = field(
        default=DEFAULT_NUM_SEGMENTS,
        metadata={
            "help": "Adaptive granularity only: segments per completion (m >= 1), capped at its length. 256 (the "
            "default) is the paper's headline ADPO, 1 is DPO; the paper's Table 3 also has 2, 16, 128 and 512."
        },
    )
    step_delimiter: str = field(
        default=DEFAULT_STEP_DELIMITER,
        metadata={
            "help": "Step granularity only: the text that ends a step. It belongs to the step it "
            "closes; a completion without it is one segment."
        },
    )
    step_pattern: str | None = field(
        default=None,
        metadata={
            "help": "Step granularity only: a regular expression whose matches in the decoded completion begin a "
            r"step, for formats such as 'Step \d+:'; replaces `step_delimiter`."
        },
    )
    positive_model: str | None = field(
        default=None,
        metadata={
            "help": "cDPO/cADPO: the positive model of contrastive estimation, fine-tuned from the policy's base on "
            "correct solutions: a Hub name, a local model directory, or a LoRA adapter (see `trl-adpo "
            "train-critical`). With `negative_model`, each rejected token's log-ratio is weighted by 1 - p_ce."
        },
    )
    negative_model: str | None = field(
        default=None,
        metadata={"help": "cDPO/cADPO: the negative model, fine-tuned on incorrect solutions; same forms."},
    )
    critical_token_gamma: float = field(
        default=1.0,
        metadata={
            "help": "cDPO/cADPO: the contrast strength gamma >= 0 in p_ce = softmax((1 + gamma) z_pos - gamma z_neg)"
            "[token]; 1 is cDPO's."
        },
    )
    weight_chosen_tokens: bool = field(
        default=False,
        metadata={
            "help": "cDPO/cADPO: also weigh the chosen tokens, by p_ce (an extra; cDPO weighs the rejected side only)."
        },
    )
    segment_reduction: str = field(
        default="sum",
        metadata={
            "help": "How a pair's segment losses are combined: 'sum' (the paper's loss) or 'mean' (divided by the "
            "pair's number of segments; an extra, not the paper's loss).",
            "choices": list(REDUCTIONS),
        },
    )

    def __post_init__(self):
        # ADPO's own checks come first, so that they are reported before any of TrainingArguments' complaints.
        self._check_finite()
        if not self.beta > 0:
            raise ValueError(
                f"ADPOConfig: beta must be > 0, got {self.beta!r}; it is the KL temperature of the rewards (DPO's and "
                "cDPO's recipes use 0.1)."
            )
        try:
            check_granularity(self.granularity, self.window_size, self.num_segments, GRANULARITIES)
        except ValueError as error:
            raise ValueError(f"ADPOConfig: {error}") from None
        self._check_step_options()
        self._check_critical_token_options()
        if self.segment_reduction not in REDUCTIONS:
            raise ValueError(
                f"ADPOConfig: segment_reduction must be one of {REDUCTIONS}, got {self.segment_reduction!r}."
            )
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"ADPOConfig: label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}; 0 trains the "
                "paper's ADPO, a value such as 0.1 the conservative (label-smoothed) ADPO."
            )
        if self.truncation_mode not in ("keep_start", "keep_end"):
            raise ValueError(
                f"ADPOConfig: truncation_mode must be 'keep_start' or 'keep_end', got {self.truncation_mode!r}."
            )
        self._check_loss_terms()
        self._check_training_length()
        trl028 = Version(trl.__version__) < Version("0.29")
        for name, (allowed, reason) in UNSUPPORTED_OPTIONS.items():
            if not hasattr(self, name) or (name in UNSUPPORTED_ON_TRL028 and not trl028):  # another line's option
                continue
            value = getattr(self, name)
            if getattr(value, "value", value) not in allowed:
                raise ValueError(
                    f"ADPOConfig: {name}={value!r} is not supported ({reason}). Leave {name} unset "
                    f"(its default is {allowed[-1]!r})."
                )
        try:
            super().__post_init__()
        except ValueError as error:
            if "bf16" in str(error) and self.bf16:
                raise ValueError(
                    "ADPOConfig: bf16=True (TRL 1.x's default) needs a GPU with bfloat16, and this machine has none "
                    f"({error}). On a CPU train in float32: --bf16 false on the command line, bf16: false in a YAML "
                    "config, ADPOConfig(..., bf16=False) in Python."
                ) from None
            raise

    def __getstate__(self) -> dict:
        """The state that pickling saves (`training_args.bin` in the output directory and in every checkpoint, which
        a Hub push uploads), with the `SECRET_OPTIONS` masked; the live config keeps them for the push itself."""
        state = dict(super().__getstate__())
        for name in SECRET_OPTIONS:
            if state.get(name):
                state[name] = f"<{name.upper()}>"
        return state

    def _check_finite(self) -> None:
        """Refuse NaN and infinity in every numeric option (beta=inf trains a model whose weights are all NaN)."""
        for option in fields(self):
            value = getattr(self, option.name)
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ValueError(
                    f"ADPOConfig: {option.name}={value!r} is not a finite number: NaN and infinity make the loss or "
                    "the "
                    "update non-finite, and the model saved would be useless. Give a finite value."
                )

    def _check_training_length(self) -> None:
        """Refuse a learning rate that is not positive and a run that would train no step at all."""
        if not self.learning_rate > 0:
            raise ValueError(
                f"ADPOConfig: learning_rate must be > 0, got {self.learning_rate!r} (DPO recipes use 5e-7 to 5e-5)."
            )
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError(
                f"ADPOConfig: max_steps={self.max_steps} and num_train_epochs={self.num_train_epochs} train no step: "
                "the "
                "run would save the untouched model as its result. Give num_train_epochs > 0 or max_steps > 0."
            )

    def _check_loss_terms(self) -> None:
        """The loss is ADPO's, optionally plus the chosen completions' NLL term: `loss_type` "sigmoid" or ["sigmoid",
        "sft"] with `loss_weights` (both TRL lines), or, on TRL 0.28, `rpo_alpha`."""
        loss_types = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        if (
            "sigmoid" not in loss_types
            or not set(loss_types) <= set(LOSS_TERMS)
            or len(set(loss_types)) != len(loss_types)
        ):
            raise ValueError(
                f"ADPOConfig: loss_type={self.loss_type!r} is not supported: ADPO replaces DPO's 'sigmoid' loss, "
                "which "
                "may be combined with 'sft', the NLL term of the chosen completions (loss_type=['sigmoid', 'sft'], "
                "their weights in loss_weights). Other DPO loss types have no ADPO form here."
            )
        if self.loss_weights is not None:
            if len(self.loss_weights) != len(loss_types):
                raise ValueError(
                    f"ADPOConfig: loss_weights={self.loss_weights!r} gives {len(self.loss_weights)} weight(s) for the "
                    f"{len(loss_types)} loss type(s) {loss_types}: give one per loss type, in the same order."
                )
            if not all(math.isfinite(w) and w >= 0 for w in self.loss_weights):
                raise ValueError(
                    f"ADPOConfig: loss_weights={self.loss_weights!r}: each weight must be a finite number >= 0."
                )
        rpo_alpha = getattr(self, "rpo_alpha", None)  # TRL 0.28's spelling of the NLL term
        if "sft" in loss_types and self.loss_weights is not None and self.loss_weights[loss_types.index("sft")] == 0:
            # a zero weight is no NLL term: train as plain ADPO (TRL 0.28 would look for an NLL it never computed)
            self.loss_weights = [w for t, w in zip(loss_types, self.loss_weights) if t != "sft"]
            self.loss_type = "sigmoid" if isinstance(self.loss_type, str) else ["sigmoid"]
        if rpo_alpha == 0:
            self.rpo_alpha = rpo_alpha = None
        if rpo_alpha is not None:
            if "sft" in loss_types:
                raise ValueError(
                    "ADPOConfig: give the NLL term once: rpo_alpha or loss_type=['sigmoid', 'sft'] with loss_weights, "
                    "not both."
                )
            if not (math.isfinite(rpo_alpha) and rpo_alpha >= 0):
                raise ValueError(f"ADPOConfig: rpo_alpha must be a finite number >= 0, got {rpo_alpha!r}.")

    @property
    def loss_term_weights(self) -> tuple[float, float]:
        """The weights of the ADPO loss and of the chosen completions' NLL term (0 when there is none)."""
        loss_types = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        weights = dict(zip(loss_types, self.loss_weights or [1.0] * len(loss_types)))
        rpo_alpha = getattr(self, "rpo_alpha", None)
        return float(weights["sigmoid"]), float(weights.get("sft", rpo_alpha or 0.0))

    def _check_step_options(self) -> None:
        changed = [
            name
            for name, default in (("step_delimiter", DEFAULT_STEP_DELIMITER), ("step_pattern", None))
            if getattr(self, name) != default
        ]
        if self.granularity != "step" and changed:
            raise ValueError(
                f"ADPOConfig: {changed[0]} applies to granularity='step' only, and granularity is "
                f"{self.granularity!r}: set granularity='step' to cut completions into reasoning steps."
            )
        if not self.step_delimiter:
            raise ValueError("ADPOConfig: step_delimiter must be a non-empty string, e.g. '\\n' or ';'.")
        if self.step_pattern is not None:
            if "step_delimiter" in changed:
                raise ValueError(
                    "ADPOConfig: give step_delimiter or step_pattern, not both: a pattern's matches begin the steps."
                )
            try:
                check_step_pattern(self.step_pattern)
            except ValueError as error:
                raise ValueError(f"ADPOConfig: {error}") from None

    def _check_critical_token_options(self) -> None:
        given = [name for name in ("positive_model", "negative_model") if getattr(self, name)]
        if len(given) == 1:
            missing = ({"positive_model", "negative_model"} - set(given)).pop()
            raise ValueError(
                f"ADPOConfig: {given[0]} is set but {missing} is not: contrastive estimation needs both models (one "
                "fine-tuned on correct, one on incorrect solutions; `trl-adpo train-critical` trains the pair)."
            )
        try:
            check_gamma(self.critical_token_gamma)
        except ValueError as error:
            raise ValueError(f"ADPOConfig: critical_token_{error}") from None
        if not given and (self.critical_token_gamma != 1.0 or self.weight_chosen_tokens):
            name = "weight_chosen_tokens" if self.weight_chosen_tokens else "critical_token_gamma"
            raise ValueError(
                f"ADPOConfig: {name} applies to critical-token weights only: set positive_model and negative_model, "
                f"or leave {name} at its default."
            )

    @property
    def critical_tokens(self) -> bool:
        """Whether the loss weighs tokens by contrastive estimation (cDPO, cADPO)."""
        return bool(self.positive_model)

    @property
    def method_name(self) -> str:
        """The method in the paper's words: DPO, ADPO, cDPO or cADPO (conservative when label smoothing is on)."""
        dpo = self.granularity == "adaptive" and self.num_segments == 1
        name = ("cDPO" if dpo else "cADPO") if self.critical_tokens else ("DPO" if dpo else "ADPO")
        name = f"conservative {name} (label smoothing)" if self.label_smoothing > 0 else name
        return f"{name} + NLL" if self.loss_term_weights[1] > 0 else name

    @property
    def granularity_description(self) -> str:
        """The granularity in words, e.g. "static, k=1", "adaptive, m=16" or "step, delimiter ';'"."""
        if self.granularity == "static":
            return f"static, k={self.window_size}"
        if self.granularity == "step":
            return (
                f"step, pattern {self.step_pattern!r}"
                if self.step_pattern
                else f"step, delimiter {self.step_delimiter!r}"
            )
        return f"adaptive, m={self.num_segments}"
