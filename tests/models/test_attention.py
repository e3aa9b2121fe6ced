"""Local attention computed in bands equals the full masked computation."""

from __future__ import annotations

import numpy as np
import pytest

from neo_keras.models.gpt_neo.attention import GPTNeoAttention


@pytest.mark.parametrize(
    "length, window", [(16, 4), (13, 4), (9, 8), (33, 5)], ids=["blocks", "tail", "two", "odd"]
)
def test_banded_local_attention_equals_the_full_computation(length, window):
    rng = np.random.default_rng(length)
    layer = GPTNeoAttention(num_heads=2, attention_type="local", window_size=window)
    hidden = rng.normal(size=(3, length, 8)).astype("float32")
    padding_mask = np.ones((3, length), bool)
    padding_mask[1, :3] = False  # left padding
    padding_mask[2, -4:] = False  # right padding
    assert layer._banded(length)
    banded = np.asarray(layer(hidden, padding_mask=padding_mask))
    layer._banded = lambda _: False
    full = np.asarray(layer(hidden, padding_mask=padding_mask))
    # Every real position sees itself; padded queries are never read.
    np.testing.assert_allclose(banded[padding_mask], full[padding_mask], atol=2e-6, rtol=0)
    assert np.abs(full).max() > 0.1


def test_short_sequences_and_global_layers_use_the_full_computation():
    assert not GPTNeoAttention(num_heads=2, attention_type="local", window_size=8)._banded(8)
    assert not GPTNeoAttention(num_heads=2, attention_type="global", window_size=4)._banded(64)
