"""The models and tokenizer of a training run: quantized when asked, weights that cannot be read named, a reference
with the policy's tokenizer, a model directory without one named."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig, get_quantization_config

from trl_adpo.config import ADPOConfig
from trl_adpo.critical_models import adapter_base
from trl_adpo.pipeline.io import readable_weights


def trust_remote_code(model_args: ModelConfig, training_args: ADPOConfig) -> bool:
    """TRL 0.28 keeps `trust_remote_code` in ModelConfig, TRL 1.x in the trainer's config."""
    return getattr(model_args, "trust_remote_code", None) or getattr(training_args, "trust_remote_code", False)


def load_model(model_args: ModelConfig, trust_code: bool, name: str | None = None) -> torch.nn.Module:
    """The policy (or the model `name`), quantized to 4 or 8 bits when `ModelConfig` asks for it."""
    dtype = model_args.dtype if model_args.dtype in ("auto", None) else getattr(torch, model_args.dtype)
    kwargs = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        trust_remote_code=trust_code,
    )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        # quantized weights go to this process's GPU; on a machine without one they stay on the CPU
        device_map = {"": PartialState().local_process_index} if torch.cuda.is_available() else None
        kwargs.update(quantization_config=quantization_config, device_map=device_map)
    name = name or model_args.model_name_or_path
    with readable_weights(
        name, "ref_model_name_or_path" if name != model_args.model_name_or_path else "model_name_or_path"
    ):
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)


def load_tokenizer(model_args: ModelConfig, trust_code: bool):
    """The policy's tokenizer (its pad token the EOS token if it has none); a local model directory without tokenizer
    files is refused, naming it."""
    name = model_args.model_name_or_path
    directory = Path(name)
    if directory.is_dir() and not any(directory.glob("tokenizer*")) and adapter_base(name) is None:
        raise FileNotFoundError(
            f"model_name_or_path: {name!r} holds a model but no tokenizer (no tokenizer.json or "
            "tokenizer_config.json): "
            "save the tokenizer beside it (tokenizer.save_pretrained(directory)), or train from a directory that has "
            "both."
        )
    tokenizer = AutoTokenizer.from_pretrained(name, revision=model_args.model_revision, trust_remote_code=trust_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_tokenizers_match(policy: str, reference: str | None) -> None:
    """Refuse a reference model whose tokenizer differs from the policy's (another vocabulary or other token ids)."""
    if reference is None or not Path(reference).is_dir() or not any(Path(reference).glob("tokenizer*")):
        return
    ours, theirs = (AutoTokenizer.from_pretrained(name).get_vocab() for name in (policy, reference))
    if ours != theirs:
        differing = len(set(ours.items()) ^ set(theirs.items()))
        raise ValueError(
            f"ref_model_name_or_path: the tokenizer of {reference!r} differs from the policy's ({len(theirs)} against "
            f"{len(ours)} tokens, {differing} (token, id) pairs not shared): a reference must score the policy's "
            "token ids. Give a reference of the policy's family, or none (the policy's starting weights)."
        )
