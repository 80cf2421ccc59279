"""The positive and negative models of contrastive estimation, loaded for scoring (no TRL).

Each is a Hub model name, a local model directory, or a LoRA adapter (directory or Hub name). Two adapters of one
base share one copy of the base, switched between them; a policy quantized to 4 or 8 bits has its quantization
repeated on the base, so that scoring fits where training does.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from .critical_tokens import DEFAULT_CHUNK_SIZE, contrastive_token_probs

SIDES = ("positive", "negative")


def adapter_base(name: str) -> str | None:
    """The base model of a LoRA adapter (local directory or Hub name), or None if `name` is no adapter."""
    config = Path(name) / "adapter_config.json"
    if config.is_file():
        return json.loads(config.read_text())["base_model_name_or_path"]
    if Path(name).exists():
        return None
    try:
        from peft import PeftConfig

        return PeftConfig.from_pretrained(name).base_model_name_or_path
    except Exception:  # a full model on the Hub, or no network: load it as a model
        return None


LOGIT_TRANSFORMS = {
    "final_logit_softcapping": lambda logits, cap: torch.tanh(logits / cap) * cap,  # Gemma 2 and 3
    "logits_scaling": lambda logits, scale: logits / scale,  # Granite; MiniCPM3 divides the hidden states alike
    "logit_scale": lambda logits, scale: logits * scale,  # Cohere
    "lm_head_multiplier": lambda logits, multiplier: logits * multiplier,  # Falcon-H1
}
"""The transforms of the output logits that models' forwards apply after the output layer, by config attribute. A
model whose forward does something else (HyperCLOVAX multiplies by its `logits_scaling`, say) is refused by
`CriticalTokenModels.check_heads`, which compares the two on real tokens."""


def output_head(model: nn.Module):
    """Hidden states ``(N, H)`` to logits ``(N, V)``: the output layer, then the `LOGIT_TRANSFORMS` of the model's
    config (soft-capping, scaling)."""
    head = model.get_output_embeddings()
    transforms = [
        (transform, value)
        for name, transform in LOGIT_TRANSFORMS.items()
        if (value := getattr(model.config, name, None)) not in (None, 1, 1.0, 0, 0.0)
    ]
    if not transforms:
        return head

    def logits(hidden: torch.Tensor) -> torch.Tensor:
        values = head(hidden)
        for transform, value in transforms:
            values = transform(values, value)
        return values

    return logits


@dataclass
class CriticalTokenModels:
    """The two models, ready to score sequences with `token_probs`."""

    models: dict[str, nn.Module]
    """The model of each side; both sides may be the same `PeftModel` with two adapters."""
    names: dict[str, str]
    gamma: float = 1.0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    _heads_checked: bool = field(default=False, init=False)

    @classmethod
    def load(
        cls,
        positive: str,
        negative: str,
        *,
        gamma: float = 1.0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        quantization_config=None,
        trust_remote_code: bool = False,
    ) -> CriticalTokenModels:
        names = {"positive": positive, "negative": negative}
        kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code)
        if quantization_config is not None:
            kwargs.update(quantization_config=quantization_config, device_map={"": device})
        bases = {side: adapter_base(name) for side, name in names.items()}
        models: dict[str, nn.Module] = {}
        if bases["positive"] is not None and bases["positive"] == bases["negative"]:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(bases["positive"], **kwargs)
            shared = PeftModel.from_pretrained(base, positive, adapter_name="positive")
            shared.load_adapter(negative, adapter_name="negative")
            models = {"positive": shared, "negative": shared}
        else:
            for side, name in names.items():
                if bases[side] is None:
                    models[side] = AutoModelForCausalLM.from_pretrained(name, **kwargs)
                else:
                    from peft import AutoPeftModelForCausalLM

                    models[side] = AutoPeftModelForCausalLM.from_pretrained(name, **kwargs)
        for model in {id(m): m for m in models.values()}.values():
            model.eval()
            if quantization_config is None:
                model.to(device)
        return cls(models, names, gamma)

    def check_vocabulary(self, tokenizer: PreTrainedTokenizerBase, option: str = "{side}_model") -> None:
        """Raise `ValueError` unless each model scores the tokenizer's vocabulary: as many output rows as the
        tokenizer has tokens or more, and the same vocabulary where a tokenizer is saved with the model."""
        for side, name in self.names.items():
            weight = self.models[side].get_output_embeddings().weight
            rows = getattr(weight, "ds_shape", weight.shape)[0]  # ZeRO-3 keeps the full shape aside
            saved = None
            try:
                saved = AutoTokenizer.from_pretrained(name)
            except Exception:  # no tokenizer saved with the model: its output size must do
                pass
            if rows < len(tokenizer) or (saved is not None and saved.get_vocab() != tokenizer.get_vocab()):
                size = len(saved) if saved is not None else rows
                raise ValueError(
                    f"{option.format(side=side)}={name!r}: its vocabulary ({size} tokens) differs from the policy's "
                    f"tokenizer ({len(tokenizer)} tokens). The positive and negative models must be fine-tuned from "
                    "the policy's base model, with its tokenizer (trl-adpo train-critical does so)."
                )

    def wrap(self, wrapper) -> None:
        """Replace each model by `wrapper(model)` (a DeepSpeed engine, say), once for a model both sides share."""
        wrapped = {id(model): wrapper(model) for model in self.models.values()}
        self.models = {side: wrapped[id(model)] for side, model in self.models.items()}

    def _activate(self, side: str) -> nn.Module:
        """The side's model, with the side's adapter active where both sides share one base."""
        model = self.models[side]
        if side in getattr(model, "peft_config", {}):
            model.set_adapter(side)
        return model

    def _hidden_states(self, side: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        model = self._activate(side)
        decoder = model.get_base_model().get_decoder() if hasattr(model, "get_base_model") else model.get_decoder()
        return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    def _head(self, side: str):
        """The side's output head, run under the side's adapter."""
        head = output_head(self.models[side])

        def logits(hidden: torch.Tensor) -> torch.Tensor:
            self._activate(side)
            return head(hidden)

        return logits

    @torch.no_grad()
    def check_heads(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: int = 16) -> None:
        """Raise `ValueError` unless each side's output head (`output_head` on its decoder's hidden states) gives the
        logits of its model's own forward, on the first `positions` tokens of the first sequence (left-aligned)."""
        ids, mask = input_ids[:1, :positions], attention_mask[:1, :positions]
        for side in SIDES:
            model = self._activate(side)
            forward = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            by_head = self._head(side)(self._hidden_states(side, ids, mask)).float()
            keep = mask[0].bool()
            difference = (forward[0, keep] - by_head[0, keep]).abs().max().item()
            if difference > 1e-3 * max(1.0, forward[0, keep].abs().max().item()):
                architecture = type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__
                raise ValueError(
                    f"{side}_model={self.names[side]!r} ({architecture}): its forward transforms the logits after the "
                    f"output layer in a way contrastive estimation does not reproduce (largest difference "
                    f"{difference:.3g}), so p_ce would be computed from the wrong logits. The transforms applied are "
                    f"those of the config attributes {sorted(LOGIT_TRANSFORMS)}; please report this architecture."
                )
        self._heads_checked = True

    @torch.no_grad()
    def token_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """``p_ce`` of the tokens of right- or left-padded sequences.

        Args:
            input_ids: ``(N, L)`` token ids.
            attention_mask: ``(N, L)`` 1 on real tokens.
            scored: ``(N, L - 1)`` boolean, True where token ``i + 1`` is to be scored (a completion token).

        Returns:
            ``(N, L - 1)`` float32: ``p_ce`` of token ``i + 1`` at column ``i`` where `scored`, 0 elsewhere.

        The first call checks the output heads against the models' forwards (`check_heads`).
        """
        if not self._heads_checked:
            self.check_heads(input_ids, attention_mask)
        hidden = {side: self._hidden_states(side, input_ids, attention_mask)[:, :-1] for side in SIDES}
        return contrastive_token_probs(
            hidden["positive"],
            hidden["negative"],
            self._head("positive"),
            self._head("negative"),
            input_ids[:, 1:],
            scored,
            gamma=self.gamma,
            chunk_size=self.chunk_size,
        )

    def free(self) -> None:
        """Drop the models and return their memory."""
        self.models.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
