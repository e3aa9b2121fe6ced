"""Batched generation: padding, stop sequences and tokens, seeds, replicas, compilation per
bucket."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from neo_keras import GPTNeoCausalLM
from neo_keras.evaluation.sampling import (
    LENGTH,
    STOP_SEQUENCE,
    STOP_TOKEN,
    CompletionGenerator,
    Request,
)
from neo_keras.generation.token_choice import SamplingSettings
from neo_keras.models.gpt_neo import columns
from tests.evaluation.tiny_model import MAX_POSITIONS, make_tiny_model_dir

NEW_TOKENS = 12
PROMPTS = ["x", "def add(a, b):\n", "class Stack:\n    def __init__(self):\n", "import os\n"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return GPTNeoCausalLM.from_preset(make_tiny_model_dir(str(tmp_path_factory.mktemp("tiny"))))


GREEDY = SamplingSettings(greedy=True)


def make_generator(model, settings=GREEDY, **kwargs):
    options = {"max_new_tokens": NEW_TOKENS, "batch_size": 4, "bucket_size": 16, "chunk_size": 4}
    return CompletionGenerator(model, settings, **{**options, **kwargs})


@pytest.fixture(scope="module")
def greedy(model):
    """Greedy, no stop tokens: every completion runs to NEW_TOKENS."""
    return make_generator(model, stop_token_ids=())


@pytest.fixture(scope="module")
def alone(greedy):
    """Each prompt's completion decoded alone, in the row form (`columns`), whichever form this
    CPU would choose: what batches in either form must reproduce."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(columns, "suits", lambda rows, kernel_bytes: False)
        return {prompt: greedy.generate([prompt])[0][0] for prompt in PROMPTS}


def test_padding_does_not_change_what_a_prompt_generates(greedy, alone):
    # Three samples each: batches mix prompts of different lengths, and samples of a prompt
    # start from copies of one prompt cache.
    together = greedy.generate(PROMPTS, num_samples=3)
    for prompt, completions in zip(PROMPTS, together, strict=True):
        assert completions == [alone[prompt]] * 3, prompt
        assert alone[prompt].num_tokens == NEW_TOKENS
        assert alone[prompt].stop_reason == LENGTH


def test_greedy_matches_the_models_own_generate(model, alone):
    prompt = PROMPTS[2]
    tokenizer = model.preprocessor.tokenizer
    prompt_ids = np.asarray(tokenizer.tokenize(prompt))
    token_ids = np.zeros((1, len(prompt_ids) + NEW_TOKENS), "int32")
    token_ids[0, : len(prompt_ids)] = prompt_ids
    padding_mask = np.zeros_like(token_ids, dtype=bool)
    padding_mask[0, : len(prompt_ids)] = True
    tokens_in_tokens_out = GPTNeoCausalLM(model.backbone)  # same weights, no preprocessor
    tokens_in_tokens_out.compile(sampler="greedy")
    generated = tokens_in_tokens_out.generate(
        {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None
    )
    new_ids = np.asarray(generated["token_ids"])[0, len(prompt_ids) :].tolist()
    assert alone[prompt].text == tokenizer.detokenize([new_ids])[0]


def ascii_window(text: str, avoid: str, size: int = 4) -> str:
    """A printable ASCII piece of `text` past its start that `avoid` does not contain."""
    for i in range(2, len(text) - size):
        window = text[i : i + size]
        if window.isascii() and window.isprintable() and window not in avoid:
            return window
    raise AssertionError(f"no usable piece of {text!r}")


def test_a_multi_token_stop_sequence_cuts_and_stops_only_its_row(greedy, alone):
    target, other = PROMPTS[1], PROMPTS[2]
    full = alone[target].text
    stop = ascii_window(full, avoid=alone[other].text)  # the other row runs to its end
    [[stopped], [unaffected]] = greedy.generate([target, other], stop_sequences=[stop])
    assert stopped.text == full[: full.index(stop)]
    assert stopped.stop_reason == STOP_SEQUENCE
    assert stop not in stopped.text
    # The stop is complete within the tokens counted, and not one token earlier.
    tokenizer = greedy.tokenizer
    ids = tokenizer.tokenize(target + full)  # re-tokenizing is close enough to bound it
    assert 1 <= stopped.num_tokens < NEW_TOKENS < len(ids)
    assert unaffected == alone[other]


def test_a_stop_token_ends_the_completion_before_it(model, alone):
    tokenizer = model.preprocessor.tokenizer
    prompt = PROMPTS[3]
    full = alone[prompt].text
    # A token the greedy continuation produces: the text up to it is what must remain.
    generator = make_generator(model, stop_token_ids=[int(tokenizer.tokenize(full[3:])[0])])
    [[completion]] = generator.generate([prompt])
    assert completion.stop_reason == STOP_TOKEN
    assert full.startswith(completion.text)
    assert len(completion.text) < len(full)
    assert completion.num_tokens < NEW_TOKENS


SAMPLED = SamplingSettings(temperature=1.0, top_k=50, seed=7)


def sampled_texts(generator, requests) -> dict:
    return {
        (request.task_id, request.sample): completion
        for finished in generator.stream(requests)
        for request, completion in finished
    }


def test_rows_sharing_their_prompts_generate_what_each_prompt_does_alone(model, alone):
    # Batches of prompts of different lengths; each prompt's cache read once by its samples.
    shared = make_generator(model, stop_token_ids=(), share_prompts=True, batch_size=6)
    together = shared.generate(PROMPTS, num_samples=3)
    for prompt, completions in zip(PROMPTS, together, strict=True):
        assert completions == [alone[prompt]] * 3, prompt


@pytest.mark.parametrize("share_prompts", [False, True], ids=["copied", "shared"])
def test_rows_as_columns_generate_what_each_prompt_does_alone(
    model, alone, share_prompts, monkeypatch
):
    monkeypatch.setattr(columns, "suits", lambda rows, kernel_bytes: True)
    assert "layers" in model.decode_kernels(16)
    generator = make_generator(model, stop_token_ids=(), share_prompts=share_prompts, batch_size=16)
    together = generator.generate(PROMPTS, num_samples=4)
    for prompt, completions in zip(PROMPTS, together, strict=True):
        assert completions == [alone[prompt]] * 4, prompt


def requests_of(prompts, num_samples) -> list[Request]:
    return [Request(p, f"task/{i}", s) for i, p in enumerate(prompts) for s in range(num_samples)]


def test_same_seed_same_samples(model):
    generator = make_generator(model, SAMPLED)
    first = generator.generate(PROMPTS[:2], num_samples=3)
    again = generator.generate(PROMPTS[:2], num_samples=3)
    assert first == again
    assert len({c.text for c in first[0]}) > 1  # rows draw independently
    other = make_generator(model, SamplingSettings(temperature=1.0, top_k=50, seed=8))
    assert other.generate(PROMPTS[:2], num_samples=3) != first


@pytest.mark.parametrize("share_prompts", [False, True], ids=["copied", "shared"])
def test_a_completion_does_not_depend_on_batch_size_order_or_company(model, share_prompts):
    requests = requests_of(PROMPTS, 3)
    shared = {"share_prompts": share_prompts}
    reference = sampled_texts(make_generator(model, SAMPLED, batch_size=4, **shared), requests)
    other_batches = sampled_texts(
        make_generator(model, SAMPLED, batch_size=5, **shared), requests[::-1]
    )
    assert other_batches == reference
    # A resumed run samples only what is missing: those rows come out as they did.
    missing = requests[1::2]
    alone = sampled_texts(make_generator(model, SAMPLED, batch_size=3, **shared), missing)
    assert alone == {key: reference[key] for key in alone}


def test_two_replicas_sample_what_one_does(model, tmp_path_factory):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = GPTNeoCausalLM.from_preset(
            make_tiny_model_dir(str(tmp_path_factory.mktemp("mirrored")))
        )
    requests = requests_of(PROMPTS, 3)
    generator = make_generator(mirrored, SAMPLED, batch_size=2, strategy=strategy)
    assert generator.replicas == 2
    # Three groups of two batches, the last with one batch: the other replica idles.
    assert sampled_texts(generator, requests) == sampled_texts(
        make_generator(model, SAMPLED, batch_size=4), requests
    )
    assert generator.stats.batches == 6


def test_compiled_once_per_shape_bucket(model):
    generator = make_generator(model, batch_size=2, bucket_size=32)
    generator.generate(PROMPTS, num_samples=3)  # 1..9 tokens: all in the 32-token bucket
    generator.generate(["y = 1\n", "print(x)\n", "z"], num_samples=3)
    assert generator._decode.experimental_get_tracing_count() == 1
    assert generator._prefill.experimental_get_tracing_count() == 1
    assert list(generator.stats.compile_seconds) == [f"2x{32 + NEW_TOKENS}"]
    assert generator.stats.batches == 6 + 5
    assert generator.stats.generated_tokens > 0


def test_further_shape_buckets_are_compiled_without_tracing_again(model):
    # A prompt a bucket: the steps are traced for the first and, with the lengths left open,
    # for the second; XLA compiles each shape.
    generator = make_generator(model, batch_size=1, bucket_size=4)
    prompts = ["x", "def add(a, b):\n", "class Stack:\n    def __init__(self):\n"]
    assert len({-(-len(generator._encode(prompt)) // 4) for prompt in prompts}) == 3
    generator.generate(prompts)
    assert len(generator.stats.compile_seconds) == 3
    assert generator._decode.experimental_get_tracing_count() == 2
    assert generator._prefill.experimental_get_tracing_count() == 2


def test_a_prompt_too_long_keeps_its_end(greedy):
    long_prompt = "def add(a, b):\n    return a + b\n" * 10
    assert len(greedy.tokenizer.tokenize(long_prompt)) > MAX_POSITIONS
    [[completion]] = greedy.generate([long_prompt])
    assert greedy.truncated_prompts == 1
    assert completion.num_tokens == NEW_TOKENS


def test_bad_generator_arguments(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        make_generator(model, max_new_tokens=MAX_POSITIONS)
    with pytest.raises(ValueError, match="batch_size"):
        make_generator(model, batch_size=0)


@pytest.mark.parametrize("share_prompts", [False, True], ids=["copied", "shared"])
def test_rows_of_different_prompt_lengths_all_decode_from_the_first_step(
    model, alone, share_prompts
):
    # One batch of prompts of different lengths: each row at its own position from the first
    # step, where right-padded rows would wait for the longest prompt.
    generator = make_generator(model, stop_token_ids=(), share_prompts=share_prompts)
    lengths = {len(generator._encode(prompt)) for prompt in PROMPTS}
    assert len(lengths) > 1
    together = generator.generate(PROMPTS)
    assert generator.stats.decode_steps == NEW_TOKENS
    assert [completions[0] for completions in together] == [alone[p] for p in PROMPTS]
    stats = json.loads(json.dumps(generator.stats.as_dict()))  # as summary.json holds it
    per_step = stats["generate_seconds"] / stats["decode_steps"]
    assert stats["seconds_per_step"] == pytest.approx(per_step, abs=1e-3)
    assert 0 < stats["prefill_seconds"] < stats["generate_seconds"]
