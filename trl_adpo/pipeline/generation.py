"""Completions from a model: loading it for generation (LoRA adapters merged) and generating many prompts fast.

`generate_batches` runs transformers' `model.generate` and spends the model's time on what is new in each prompt:

- **a shared prefix once**: the tokens every prompt of the call begins with (a chat template's system prompt, the
  few-shot exemplars) go through the model once; each batch starts from a copy of their key-value cache, and its
  prompts are padded between that prefix and their own tokens;
- **a prompt once for its n samples**: each prompt's cache is computed once and copied for its `n` completions;
- **batches of similar prompts**: prompts are sorted by length, longest first (so that a batch too large for the
  device fails at once), and the results come back in the order of the prompts;
- **a cache that grows in place**: each batch's key-value cache has room for its longest sequence (`ReservedLayer`),
  so that a decoding step writes one position instead of copying the whole cache;
- **finished completions leave the batch**: decoding runs in chunks of `CHUNK_TOKENS` tokens; between chunks the
  completions that ended (EOS, a stop string, `max_new_tokens`) are dropped from the batch and its cache, instead of
  being computed as padding until the batch's longest completion ends. Stop strings are looked for in the decoded
  text between chunks, never at each decoding step;
- **a batch size for the device**: by default `default_batch_size` (on CPUs, the fastest measured by
  scripts/bench_generation.py); on a GPU, a batch that runs out of memory is halved, and the smaller size kept for the
  rest of the call.

Sampling (temperature > 0) draws each completion from a random stream of its own, seeded by the call's seed, the
prompt's key (the problem id) and the sample's number: after temperature and top-p, Gumbel noise from that stream is
added to the scores and the largest wins, an exact draw from the same distribution as sampling from the softmax. So a
completion depends on the seed, the model, the prompt and the sampling options, not on the batch size, the order of
the problems or which other problems are sampled beside it, up to floating-point rounding, which can differ between
batch shapes (and between devices, whose random streams differ). Greedy decoding (temperature 0) draws nothing.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    GenerationMixin,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers.cache_utils import DynamicLayer

from ..critical_models import adapter_base
from .io import readable_weights

CHUNK_TOKENS = 16
"""Tokens decoded between two checks for finished completions."""
CPU_BATCH_SEQUENCES = 128
"""Most sequences (problems x n) per batch on a CPU: the fastest on 2 cores (scripts/bench_generation.py)."""
CPU_BATCH_TOKENS = 32768
"""Most tokens (sequences x (longest prompt + max_new_tokens)) per batch on a CPU, where a longer context slows each
step more than a larger batch speeds it up (8-shot prompts: 32 sequences of 1,100 tokens)."""
GPU_BATCH_SEQUENCES = 512
"""Sequences per batch to start from on a GPU; halved on running out of memory."""
CACHE_ARGUMENT = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)
"""transformers' name for the key-value cache argument (`past_key_values` before 5.3)."""


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
    batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Problems per generation batch (each with its n samples). Default: on a CPU up to 128 sequences "
            "and 32,768 tokens; on a GPU 512 sequences, halved on running out of memory. It changes speed and memory, "
            "not the completions."
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the sampling: with it, each problem's samples depend on nothing else that is random."
        },
    )
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
    with readable_weights(name, "model_name_or_path"):
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


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str | list[dict[str, str]]]
) -> list[list[int]]:
    """Each prompt's token ids: text with the tokenizer's special tokens, messages as their chat template gives them
    (which brings its own)."""
    chat = any(not isinstance(prompt, str) for prompt in prompts)
    texts = [render(tokenizer, prompt) for prompt in prompts]
    return tokenizer(texts, add_special_tokens=not chat)["input_ids"]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first of the `stop` strings."""
    cut = min((text.find(s) for s in stop if s in text), default=len(text))
    return text[:cut]


def default_batch_size(n: int, device: torch.device, longest_prompt: int, max_new_tokens: int) -> int:
    """Problems per batch for `n` samples each: on a GPU, `GPU_BATCH_SEQUENCES` sequences; on a CPU, at most
    `CPU_BATCH_SEQUENCES` sequences and `CPU_BATCH_TOKENS` tokens."""
    if device.type == "cuda":
        sequences = GPU_BATCH_SEQUENCES
    else:
        sequences = min(CPU_BATCH_SEQUENCES, CPU_BATCH_TOKENS // (longest_prompt + max_new_tokens))
    return max(1, sequences // n)


def shared_prefix_length(token_ids: Sequence[Sequence[int]], model: PreTrainedModel, max_new_tokens: int) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own (0 for one prompt).

    None are shared with a model whose attention slides over a window the prompts and completions may outgrow: its
    window counts the padding between the prefix and a prompt's own tokens.
    """
    if len(token_ids) < 2:
        return 0
    config = model.config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None)
    recurrent = any(
        kind not in ("full_attention", "sliding_attention") for kind in getattr(config, "layer_types", None) or []
    )
    if recurrent or (window and max(map(len, token_ids)) + max_new_tokens > window):
        return 0
    first, shortest = token_ids[0], min(map(len, token_ids))
    length = 0
    while length < shortest - 1 and all(ids[length] == first[length] for ids in token_ids):
        length += 1
    return length


class GumbelSampler(LogitsProcessor):
    """Sampling with one random stream per completion, as a logits processor for greedy decoding: each row's scores
    (after temperature and top-p) get Gumbel noise from that row's generator, so that their argmax is a draw from
    their softmax."""

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def keep(self, rows: Sequence[int]) -> None:
        """Keep the streams of `rows` only, as the batch keeps those rows."""
        self.generators = [self.generators[row] for row in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`scores` ``(B, V)`` plus Gumbel noise, one row from each stream."""
        tiny = torch.finfo(torch.float32).tiny
        uniform = torch.stack(
            [torch.rand(scores.shape[1], generator=generator, device=scores.device) for generator in self.generators]
        )
        return scores.float() - torch.log(-torch.log(uniform.clamp_(min=tiny)))


def sample_seed(seed: int, key, sample: int) -> int:
    """The seed of one completion's random stream: (the call's seed, the prompt's key, the sample's number)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}/{sample}".encode()).digest()[:8], "little") >> 1


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values live in buffers with room for `capacity` positions, so that a decoding
    step writes its key and value in place: the `DynamicLayer` copies its whole cache at every step (`torch.cat`),
    which took half the time of a decoding step on a CPU. `keys` and `values` are views of the filled part; a
    batch selection or repetition (which copies them) moves them into new buffers at the next step."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.keys.shape[-2] if self.keys.numel() else 0
        end = length + key_states.shape[-2]
        moved = self.buffers is None or (length and self.keys.data_ptr() != self.buffers[0].data_ptr())
        if moved or end > self.buffers[0].shape[-2] or self.buffers[0].shape[0] != key_states.shape[0]:
            self.buffers = tuple(
                states.new_empty(*states.shape[:2], max(end, self.capacity), states.shape[-1])
                for states in (key_states, value_states)
            )
            if length:
                self.buffers[0][..., :length, :], self.buffers[1][..., :length, :] = self.keys, self.values
        self.buffers[0][..., length:end, :], self.buffers[1][..., length:end, :] = key_states, value_states
        self.keys, self.values = self.buffers[0][..., :end, :], self.buffers[1][..., :end, :]
        return self.keys, self.values


def reserved_cache(model: PreTrainedModel, capacity: int) -> DynamicCache:
    """The model's `DynamicCache`, its full-attention layers `ReservedLayer`s of `capacity` positions."""
    cache = DynamicCache(config=model.config)
    cache.layers = [ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@dataclass
class _Batch:
    """The sequences of a batch being decoded: ids ``(S, L)``, attention mask, cache, and which completion each is."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    cache: DynamicCache
    rows: list[int]
    prompt_width: int

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.input_ids.device)
        self.input_ids, self.attention_mask = self.input_ids[index], self.attention_mask[index]
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[row] for row in rows]


class FastGenerator:
    """`generate_batches` for one call: the model, its tokenizer, the sampling options and the shared prefix."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        token_ids: list[list[int]],
        *,
        n: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        stop: Sequence[str],
        seed: int,
        keys: Sequence,
    ):
        self.model, self.tokenizer, self.token_ids = model, tokenizer, token_ids
        self.n, self.temperature, self.top_p, self.max_new_tokens = n, temperature, top_p, max_new_tokens
        self.stop, self.seed, self.keys = list(stop), seed, keys
        self.device = model.device
        eos = model.generation_config.eos_token_id
        self.eos = set([eos] if isinstance(eos, int) else eos or []) | {tokenizer.eos_token_id} - {None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.prefix_length = shared_prefix_length(token_ids, model, max_new_tokens)
        self.prefix_cache = None
        if self.prefix_length:
            prefix = torch.tensor([token_ids[0][: self.prefix_length]], device=self.device)
            self.prefix_cache = self._forward(prefix, torch.ones_like(prefix), DynamicCache(config=model.config))

    @torch.no_grad()
    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache: DynamicCache) -> DynamicCache:
        """Run `input_ids` ``(B, l)`` through the decoder (not the output layer) after `cache`; the grown cache.

        `attention_mask` ``(B, past + l)`` covers the cache too; positions count its ones, as `generate` counts them.
        """
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        self.model.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
            **{CACHE_ARGUMENT: cache},
        )
        return cache

    def _start(self, prompts: list[int]) -> _Batch:
        """A batch of `prompts` (indices), each prompt's cache computed once and copied for its `n` sequences."""
        P = self.prefix_length
        own = [self.token_ids[i][P:] for i in prompts]
        width = max(map(len, own))
        ids = torch.full((len(own), P + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        ids[:, :P], mask[:, :P] = torch.tensor(self.token_ids[prompts[0]][:P]), 1
        for row, tokens in enumerate(own):
            ids[row, P + width - len(tokens) :], mask[row, P + width - len(tokens) :] = torch.tensor(tokens), 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = reserved_cache(self.model, P + width + self.max_new_tokens)
        if self.prefix_cache is not None:
            for layer, prefix in zip(cache.layers, self.prefix_cache.layers):
                layer.update(*(states.expand(len(prompts), -1, -1, -1) for states in (prefix.keys, prefix.values)))
        if width > 1:
            self._forward(ids[:, P:-1], mask[:, :-1], cache)
        if self.n > 1:
            ids, mask = ids.repeat_interleave(self.n, dim=0), mask.repeat_interleave(self.n, dim=0)
            cache.batch_repeat_interleave(self.n)
        rows = [p * self.n + s for p in range(len(prompts)) for s in range(self.n)]
        return _Batch(ids, mask, cache, rows, P + width)

    @torch.no_grad()
    def run(self, prompts: list[int]) -> list[list[str]]:
        """The `n` completions of each of `prompts` (indices), decoded in chunks from which finished ones leave."""
        batch = self._start(prompts)
        sampler = None
        if self.temperature > 0:
            seeds = [
                sample_seed(self.seed, self.keys[prompts[p]], s) for p in range(len(prompts)) for s in range(self.n)
            ]
            sampler = GumbelSampler(seeds, self.device)
            nucleus = [TopPLogitsWarper(self.top_p)] if self.top_p < 1 else []  # a sort of every row: only if it cuts
            processors = LogitsProcessorList([TemperatureLogitsWarper(self.temperature), *nucleus, sampler])
        else:
            processors = LogitsProcessorList()
        texts: dict[int, str] = {}
        while batch.rows:
            done_tokens = batch.input_ids.shape[1] - batch.prompt_width
            chunk = min(CHUNK_TOKENS, self.max_new_tokens - done_tokens)
            output = self.model.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=chunk,
                min_new_tokens=0,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                num_beams=1,
                logits_processor=processors,
                pad_token_id=self.pad_id,
                **{CACHE_ARGUMENT: batch.cache},
            )
            new = output[:, batch.input_ids.shape[1] :]
            batch.attention_mask = torch.cat([batch.attention_mask, torch.ones_like(new)], dim=1)
            batch.input_ids = output
            keep = []
            at_limit = output.shape[1] - batch.prompt_width >= self.max_new_tokens
            for row, tokens in enumerate(output[:, batch.prompt_width :].tolist()):
                ended = next((i for i, token in enumerate(tokens) if token in self.eos), None)
                text = self.tokenizer.decode(tokens[:ended], skip_special_tokens=True)
                if ended is not None or at_limit or any(s in text for s in self.stop):
                    texts[batch.rows[row]] = cut_at_stop(text, self.stop)
                else:
                    keep.append(row)
            if keep and len(keep) < len(batch.rows):
                batch.keep(keep)
                if sampler is not None:
                    sampler.keep(keep)
            elif not keep:
                break
        return [[texts[p * self.n + s] for s in range(self.n)] for p in range(len(prompts))]


def generate_batches(
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
    keys: Sequence | None = None,
    batch_size: int | None = None,
    skip: Sequence[int] = (),
) -> Iterator[tuple[list[int], list[list[str]]]]:
    """`n` completions of each prompt, batch by batch (see the module docstring for how).

    A prompt is text, or a list of messages that goes through the tokenizer's chat template. Generation ends at EOS,
    at `max_new_tokens`, or at one of the `stop` strings, which is cut off.

    Args:
        keys: each prompt's key in the seeds of its samples (the problem id); by default its index.
        batch_size: prompts per batch; by default `default_batch_size`.
        skip: indices of prompts not to yield (a resumed run's finished ones). The batches stay those of a call
            without it, so that a resumed run computes what an uninterrupted one does: a batch with a prompt to
            do is generated whole, one whose prompts are all skipped not at all.

    Yields:
        The indices of a batch's prompts and, for each, its `n` completions (special tokens removed).
    """
    token_ids = encode_prompts(tokenizer, prompts)
    generator = FastGenerator(
        model,
        tokenizer,
        token_ids,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        stop=stop,
        seed=seed,
        keys=list(range(len(prompts))) if keys is None else list(keys),
    )
    order = sorted(range(len(prompts)), key=lambda i: -len(token_ids[i]))
    size = batch_size or default_batch_size(n, model.device, len(token_ids[order[0]]) if order else 0, max_new_tokens)
    skipped = set(skip)
    start = 0
    while start < len(order):
        batch = order[start : start + size]
        if all(i in skipped for i in batch):
            start += len(batch)
            continue
        try:
            texts = generator.run(batch)
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            torch.cuda.empty_cache()
            size //= 2
            continue
        start += len(batch)
        kept = [(i, text) for i, text in zip(batch, texts) if i not in skipped]
        yield [i for i, _ in kept], [text for _, text in kept]


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | list[dict[str, str]]],
    **options,
) -> list[list[str]]:
    """For each prompt, in order, its `n` completions: `generate_batches` (with its `options`), collected."""
    completions: list[list[str]] = [[] for _ in prompts]
    for indices, texts in generate_batches(model, tokenizer, prompts, **options):
        for index, text in zip(indices, texts):
            completions[index] = text
    return completions
