"""Tiny tokenizers (word-level, byte-level BPE) and Llama models built in code, for offline runs, tests and benchmarks.

They are saved in the standard Hugging Face format, so the code that loads them is the code that loads a real model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} <eos> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)
"""A minimal chat template, so that conversational datasets work with the word-level tokenizer."""


def build_word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A whitespace/punctuation-split word-level tokenizer over `words`, with pad, bos, eos and unk tokens.

    The role names of `CHAT_TEMPLATE` ("system", "user", "assistant") and ":" are always in the vocabulary.
    """
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS.values(), "system", "user", "assistant", ":", *words]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_bpe_tokenizer(corpus: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, with the special tokens and chat template of the word tokenizer.

    Its merges may cross spaces, newlines and punctuation (no pre-tokenizer regex), so tokens such as ``" ;\\nd"``
    hold a delimiter and the text around it, as real BPE vocabularies often do.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(
    vocab_size: int,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama small enough to train on a CPU in seconds."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(
    directory: str | Path, words: list[str], tokenizer: PreTrainedTokenizerFast | None = None, **model_kwargs
) -> Path:
    """Save a tiny Llama and its tokenizer to `directory` in HF format: a word tokenizer over `words`, or
    `tokenizer`."""
    tokenizer = tokenizer or build_word_tokenizer(words)
    model = build_tiny_llama(len(tokenizer), **model_kwargs)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
