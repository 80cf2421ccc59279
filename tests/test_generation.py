"""The fast generation path (`trl_adpo.pipeline.generation`) against plain computations: greedy completions equal
`model.generate` run on one prompt at a time; sampled ones equal a loop that scores the whole sequence at each step
without any cache or batch and draws from each completion's own stream; neither depends on the batch size, the order
of the prompts or the prompts beside them. The tiny model runs in float64, so that batch shapes change nothing."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_adpo.examples.tiny import build_word_tokenizer, save_tiny_model
from trl_adpo.pipeline import generation
from trl_adpo.pipeline.generation import (
    FastGenerator,
    cut_at_stop,
    encode_prompts,
    generate,
    generate_batches,
    render,
    sample_seed,
    shared_prefix_length,
)

WORDS = [f"w{i}" for i in range(30)]


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    # 3 layers, grouped-query attention: every path through the cache is exercised
    directory = save_tiny_model(tmp_path_factory.mktemp("generation"), WORDS, num_layers=3, seed=3)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.padding_side = "left"
    return model, tokenizer


def few_shot_prompts(count: int, seed: int = 0) -> list[str]:
    """Prompts that share a long prefix (as few-shot exemplars do), then differ in length and words."""
    rng = random.Random(seed)
    prefix = " ".join(rng.choices(WORDS, k=20))
    return [prefix + " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 8))) for _ in range(count)]


def one_at_a_time(model, tokenizer, prompt, max_new_tokens: int, stop=()) -> str:
    """`model.generate` on one prompt, no padding, no cache given: the plain path."""
    ids = tokenizer(render(tokenizer, prompt), add_special_tokens=isinstance(prompt, str), return_tensors="pt")
    output = model.generate(
        **ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return cut_at_stop(tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True), stop)


def sampled_by_hand(model, tokenizer, prompt, key, sample, *, seed, temperature, top_p, max_new_tokens, stop) -> str:
    """One sampled completion, scoring the whole sequence at every step (no cache, no batch): temperature, then the
    smallest set of tokens whose probability reaches top_p, then the largest score plus Gumbel noise from the
    completion's own stream."""
    ids = tokenizer(render(tokenizer, prompt), add_special_tokens=isinstance(prompt, str))["input_ids"]
    stream = torch.Generator().manual_seed(sample_seed(seed, key, sample))
    new = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(torch.tensor([ids + new])).logits[0, -1].float() / temperature
        probabilities = logits.softmax(-1)
        order = probabilities.argsort(descending=True)
        before = probabilities[order].cumsum(0) - probabilities[order]
        logits[order[before >= top_p]] = -float("inf")
        noise = -torch.log(-torch.log(torch.rand(logits.shape[0], generator=stream).clamp(min=torch.finfo().tiny)))
        token = int((logits + noise).argmax())
        if token == model.generation_config.eos_token_id:
            break
        new.append(token)
        if any(s in tokenizer.decode(new, skip_special_tokens=True) for s in stop):
            break
    return cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stop)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_greedy_completions_equal_generate_on_one_prompt_at_a_time(model_and_tokenizer, batch_size):
    model, tokenizer = model_and_tokenizer
    prompts = few_shot_prompts(11)
    assert (
        FastGenerator(
            model,
            tokenizer,
            encode_prompts(tokenizer, prompts),
            n=1,
            temperature=0,
            top_p=1,
            max_new_tokens=25,
            stop=(),
            seed=0,
            keys=range(11),
        ).prefix_length
        >= 20
    )  # the prefix is shared
    fast = generate(model, tokenizer, prompts, max_new_tokens=25, stop=["w7"], batch_size=batch_size)
    plain = [[one_at_a_time(model, tokenizer, prompt, 25, ["w7"])] for prompt in prompts]
    assert fast == plain
    assert any(text[0] == "" or len(text[0].split()) < 25 for text in fast)  # some end early, by EOS or the stop


def test_chat_prompts_share_their_template_and_equal_the_plain_path(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rng = random.Random(1)
    prompts = [
        [{"role": "system", "content": "w1 w2 w3"}, {"role": "user", "content": " ".join(rng.choices(WORDS, k=k))}]
        for k in (1, 4, 7, 2)
    ]
    assert shared_prefix_length(encode_prompts(tokenizer, prompts), model, 20) >= 6
    assert generate(model, tokenizer, prompts, max_new_tokens=20) == [
        [one_at_a_time(model, tokenizer, prompt, 20)] for prompt in prompts
    ]


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_sampled_completions_equal_a_loop_without_cache_or_batch(model_and_tokenizer, top_p):
    model, tokenizer = model_and_tokenizer
    prompts, keys = few_shot_prompts(5, seed=2), ["a", "b", 7, "d", 9]
    options = dict(seed=3, temperature=1.3, top_p=top_p, max_new_tokens=12, stop=["w5"])
    fast = generate(model, tokenizer, prompts, n=3, keys=keys, batch_size=2, **options)
    by_hand = [
        [sampled_by_hand(model, tokenizer, prompt, key, s, **options) for s in range(3)]
        for prompt, key in zip(prompts, keys)
    ]
    assert fast == by_hand
    assert len({text for texts in fast for text in texts}) > 5  # the samples differ


def test_a_completion_depends_on_its_key_not_on_batches_order_or_company(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = few_shot_prompts(9, seed=4)
    keys = [f"problem-{i}" for i in range(9)]
    options = dict(n=2, temperature=1.0, max_new_tokens=10, seed=5)
    whole = generate(model, tokenizer, prompts, keys=keys, batch_size=4, **options)
    reversed_ = generate(model, tokenizer, prompts[::-1], keys=keys[::-1], batch_size=1, **options)
    alone = generate(model, tokenizer, prompts[3:4], keys=keys[3:4], **options)
    assert reversed_[::-1] == whole and alone[0] == whole[3]
    assert generate(model, tokenizer, prompts, keys=keys, batch_size=4, **{**options, "seed": 6}) != whole


def test_skipped_prompts_are_not_yielded_and_the_others_are_unchanged(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = few_shot_prompts(7, seed=6)
    options = dict(n=2, temperature=1.0, max_new_tokens=8, batch_size=3)
    everything = generate(model, tokenizer, prompts, **options)
    yielded = {
        i: texts
        for indices, batch in generate_batches(model, tokenizer, prompts, skip=[0, 1, 5], **options)
        for i, texts in zip(indices, batch)
    }
    assert sorted(yielded) == [2, 3, 4, 6] and all(yielded[i] == everything[i] for i in yielded)


def test_a_batch_that_runs_out_of_memory_is_halved_for_the_rest_of_the_call(model_and_tokenizer, monkeypatch):
    model, tokenizer = model_and_tokenizer
    prompts = few_shot_prompts(10, seed=7)
    expected = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=8)
    sizes, real_run = [], FastGenerator.run

    def run(self, batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run(self, batch)

    monkeypatch.setattr(FastGenerator, "run", run)
    assert generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=8) == expected
    assert sizes == [8, 4, 2, 2, 2, 2, 2]


def test_no_prefix_is_shared_where_a_sliding_window_would_count_the_padding(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = encode_prompts(tokenizer, few_shot_prompts(4))
    assert shared_prefix_length(ids, model, 10) > 0
    assert shared_prefix_length(ids[:1], model, 10) == 0  # one prompt: nothing to share
    assert shared_prefix_length([[5, 6, 7], [5, 6, 7]], model, 10) == 2  # each keeps one token of its own
    model.config.sliding_window = 30  # the prompts have 21-28 tokens, and 10 more are generated
    try:
        assert shared_prefix_length(ids, model, 10) == 0
    finally:
        model.config.sliding_window = None


def test_default_batch_size_follows_the_device_and_the_context(monkeypatch):
    cpu = torch.device("cpu")
    assert generation.default_batch_size(1, cpu, 54, 80) == 128
    assert generation.default_batch_size(6, cpu, 54, 80) == 21
    assert generation.default_batch_size(1, cpu, 1060, 80) == 28  # 8-shot prompts: the token budget binds
    assert generation.default_batch_size(4, torch.device("cuda"), 1060, 80) == 128


def test_seeds_of_completions_differ_by_seed_key_and_sample():
    seeds = {sample_seed(seed, key, sample) for seed in (0, 1) for key in (0, "0", 1) for sample in (0, 1)}
    assert len(seeds) == 2 * 2 * 2  # the keys 0 and "0" are one key: problem ids are compared as text
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_a_word_tokenizer_without_chat_template_is_refused_for_messages(tmp_path):
    tokenizer = build_word_tokenizer(WORDS)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        encode_prompts(tokenizer, [[{"role": "user", "content": "w1"}]])


def test_a_reserved_layer_holds_what_a_dynamic_layer_holds_and_grows_in_place():
    from transformers.cache_utils import DynamicLayer

    from trl_adpo.pipeline.generation import ReservedLayer

    torch.manual_seed(0)
    plain, reserved = DynamicLayer(), ReservedLayer(capacity=12)
    steps = [
        ("update", 5),
        ("update", 1),
        ("select", [2, 0]),
        ("update", 1),
        ("repeat", 3),
        ("update", 2),
        ("crop", -1),
        ("update", 1),
    ]
    rows = 3
    for number, (kind, value) in enumerate(steps):
        if kind == "update":
            states = [torch.randn(rows, 2, value, 4) for _ in range(2)]
            plain.update(*states)
            reserved.update(*states)
            if number == 0:
                first_buffer = reserved.buffers[0].data_ptr()
            if number == 1:
                assert reserved.buffers[0].data_ptr() == first_buffer  # the second step was written in place
        elif kind == "select":
            for layer in (plain, reserved):
                layer.batch_select_indices(torch.tensor(value))
            rows = len(value)
        elif kind == "repeat":
            for layer in (plain, reserved):
                layer.batch_repeat_interleave(value)
            rows *= value
        else:
            for layer in (plain, reserved):
                layer.crop(value)
        assert torch.equal(plain.keys, reserved.keys) and torch.equal(plain.values, reserved.values), (kind, value)
