"""Completions from a model: loading it for generation (LoRA adapters merged) and sampling batches of prompts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..critical_models import adapter_base


@dataclass
class GenerationArguments:
    """The model and how it samples (the options of `trl-adpo sample` and `trl-adpo evaluate`)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The model: a Hub name, a local model, or a LoRA adapter directory."}
    )
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16."})
    n: int = field(default=1, metadata={"help": "Completions per problem."})
    temperature: float = field(default=0.0, metadata={"help": "0 is greedy decoding (then n must be 1)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling's probability mass."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest completion, in tokens."})
    batch_size: int = field(default=8, metadata={"help": "Problems per generation batch."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling (each batch of problems has its own)."})
    stop: list[str] | None = field(
        default=None, metadata={"help": "Strings that end a completion (default: the task's)."}
    )


def load_for_generation(
    name: str, dtype: str = "auto", device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model (a Hub name, a local model, or a LoRA adapter, merged into its base) and its tokenizer, left-padding.

    Args:
        name: the model or adapter.
        dtype: "auto", "float32", "bfloat16" or "float16".
        device: where to put the model; the GPU when there is one, by default.
    """
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    base = adapter_base(name)
    if base is None:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    else:
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(name, dtype=torch_dtype).merge_and_unload()
    has_tokenizer = not Path(name).is_dir() or any(Path(name).glob("tokenizer*"))
    tokenizer = AutoTokenizer.from_pretrained(name if has_tokenizer or base is None else base)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def render(tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict[str, str]]) -> str:
    """A prompt's text: itself, or its messages through the tokenizer's chat template, ready for the assistant."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template is None:
        raise ValueError(
            "chat: the prompts are messages, but the model's tokenizer has no chat template. Use an instruction-tuned "
            "model, or leave --chat off to give the prompts as plain text."
        )
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first of the `stop` strings."""
    cut = min((text.find(s) for s in stop if s in text), default=len(text))
    return text[:cut]


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | list[dict[str, str]]],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    seed: int = 0,
) -> list[list[str]]:
    """`n` completions of each prompt, in one batch: greedy at temperature 0, sampled otherwise (seeded by `seed`).

    A prompt is text, or a list of messages that goes through the tokenizer's chat template (which brings its own
    special tokens).

    Generation ends at EOS, at `max_new_tokens`, or at one of the `stop` strings, which is cut off.

    Returns:
        For each prompt, its `n` completions (special tokens removed).
    """
    torch.manual_seed(seed)
    chat = any(not isinstance(prompt, str) for prompt in prompts)
    texts = [render(tokenizer, prompt) for prompt in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat).to(model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else dict(
        do_sample=False, temperature=None, top_p=None, top_k=None
    )
    stopping = dict(stop_strings=list(stop), tokenizer=tokenizer) if stop else {}
    output = model.generate(
        **batch, max_new_tokens=max_new_tokens, num_return_sequences=n, pad_token_id=tokenizer.pad_token_id,
        **sampling, **stopping,
    )
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    texts = [cut_at_stop(text, stop) for text in texts]
    return [texts[i : i + n] for i in range(0, len(texts), n)]
