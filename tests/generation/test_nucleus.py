"""Top-p by bisection keeps the tokens a sort-based top-p keeps."""

from __future__ import annotations

import numpy as np
import pytest

from neo_keras.generation.nucleus import nucleus_mask


def sorted_nucleus(probabilities: np.ndarray, p: float) -> np.ndarray:
    """keras-hub's TopPSampler rule: in descending order, keep while the mass before <= p."""
    mask = np.zeros_like(probabilities, dtype=bool)
    for row, probs in enumerate(probabilities):
        order = np.argsort(-probs, kind="stable")
        mass_before = np.concatenate([[0.0], np.cumsum(probs[order])[:-1]])
        mask[row, order[mass_before <= p]] = True
    return mask


def distributions(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = np.concatenate(
        [
            rng.normal(size=(4, 50257)),  # flat: nuclei of thousands of tokens
            rng.normal(scale=8.0, size=(4, 50257)),  # peaked: a handful
        ]
    )
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    return (probabilities / probabilities.sum(-1, keepdims=True)).astype("float32")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.95])
def test_bisection_keeps_the_sorted_nucleus(p):
    probabilities = distributions(seed=int(p * 100))
    expected = sorted_nucleus(probabilities.astype("float64"), p)
    actual = np.asarray(nucleus_mask(probabilities, p))
    # float32 sums may move the boundary by a token whose mass is at the rounding level.
    differing = np.flatnonzero(actual != expected)
    assert len(differing) <= 2, (p, len(differing))
    assert (expected.sum(-1) > 1).any() and (expected.sum(-1) < 50).any()


def test_p_of_one_keeps_every_token():
    assert np.asarray(nucleus_mask(distributions(seed=0), 1.0)).all()


def test_peaked_row_keeps_only_the_top_tokens():
    probabilities = np.array([[0.6, 0.3, 0.05, 0.05], [0.25, 0.25, 0.25, 0.25]], "float32")
    np.testing.assert_array_equal(
        np.asarray(nucleus_mask(probabilities, 0.8)),
        [[True, True, False, False], [True, True, True, True]],
    )
    np.testing.assert_array_equal(
        np.asarray(nucleus_mask(probabilities[:1], 0.5)), [[True, False, False, False]]
    )


def test_top_k_by_bisection_keeps_the_k_most_likely_tokens():
    import tensorflow as tf

    from neo_keras.generation.nucleus import top_k_mask

    probabilities = distributions(seed=3)
    for k in (1, 7, 50, 2000):
        kth = tf.math.top_k(probabilities, k=k).values[:, -1:]
        kept = np.asarray(top_k_mask(probabilities, k))
        np.testing.assert_array_equal(kept, probabilities >= kth)
    ties = np.array([[0.3, 0.3, 0.3, 0.1]], "float32")
    assert np.asarray(top_k_mask(ties, 2)).tolist() == [[True, True, True, False]]
    assert np.asarray(top_k_mask(ties, 0)).all()
