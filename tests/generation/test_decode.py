"""`GPTNeoCausalLM.generate` decodes with the one loop and the compiled sampler's settings."""

from __future__ import annotations

import keras_hub
import numpy as np
import pytest

from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
from neo_keras.models.gpt_neo.causal_lm import sampling_settings


@pytest.fixture(scope="module")
def model() -> GPTNeoCausalLM:
    backbone = GPTNeoBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
        window_size=4, max_sequence_length=16,
    )  # fmt: skip
    return GPTNeoCausalLM(backbone)


PROMPTS = {
    "token_ids": np.array([[5, 6, 7, 0, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0, 0]], "int32"),
    "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], bool),
}


def generate(model, sampler) -> np.ndarray:
    model.compile(sampler=sampler)
    return np.asarray(model.generate(PROMPTS, stop_token_ids=None)["token_ids"])


def test_a_seeded_sampler_repeats_itself_and_another_seed_does_not(model):
    first = generate(model, keras_hub.samplers.TopPSampler(p=0.9, seed=3))
    again = generate(model, keras_hub.samplers.TopPSampler(p=0.9, seed=3))
    other = generate(model, keras_hub.samplers.TopPSampler(p=0.9, seed=4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # Prompts are kept; every row is filled to the end.
    np.testing.assert_array_equal(first[0, :3], [5, 6, 7])
    assert first[1, 0] == 9


def test_top_k_of_one_and_a_tiny_nucleus_are_greedy(model):
    greedy = generate(model, "greedy")
    np.testing.assert_array_equal(generate(model, keras_hub.samplers.TopKSampler(k=1)), greedy)
    tiny = keras_hub.samplers.TopPSampler(p=1e-6, seed=1)
    np.testing.assert_array_equal(generate(model, tiny), greedy)


def test_samplers_map_onto_the_token_choice():
    settings = sampling_settings(keras_hub.samplers.TopPSampler(p=0.9, k=7, seed=2))
    assert (settings.top_p, settings.top_k, settings.seed, settings.greedy) == (0.9, 7, 2, False)
    assert sampling_settings(keras_hub.samplers.GreedySampler()).greedy
    assert sampling_settings(keras_hub.samplers.RandomSampler(temperature=0.5)).temperature == 0.5
    with pytest.raises(ValueError, match="not BeamSampler"):
        sampling_settings(keras_hub.samplers.BeamSampler())
