"""Top-k and top-p (nucleus) masks found without sorting the vocabulary.

keras-hub's `TopPSampler` sorts all probabilities at every step. Under XLA on a CPU that sort
costs more than the model's forward pass (50k tokens per row); here each row's boundary
probability is found by bisection instead, with a fixed number of vectorised passes (top-p
sampling needs it only for the rare row that `token_choice.nucleus_draw` cannot settle). The
tokens kept are those a sort keeps: top-k keeps the tokens with fewer than k tokens more
likely (and so all tied with the k-th), top-p those with at most p of the mass on more likely
tokens, the smallest set reaching p. `k` and `p` may be numbers or tensors (a SavedModel's
inputs).
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

# The bisection runs over the bit patterns of non-negative float32 values, which sort as the
# values do: 31 halvings of [0, 2^31) land exactly on the boundary token's value, however
# small (a probability of 1e-30 is found as exactly as one of 0.3).
_BISECTION_STEPS = 31


def nucleus_mask(probabilities, p):
    """True on the tokens of each row's nucleus: those with at most `p` mass above them.

    Args:
        probabilities: `[batch, vocabulary]`, each row summing to 1.
        p: the nucleus mass, in (0, 1]; 1 (or more) keeps every token.
    """
    probabilities = ops.cast(probabilities, "float32")
    if isinstance(p, int | float) and p >= 1:
        return ops.ones_like(probabilities, dtype="bool")

    def mass_small_enough(above):
        return _light_enough(probabilities, above, p)

    kept = probabilities >= _boundary(probabilities, mass_small_enough)
    return ops.logical_or(kept, ops.greater_equal(p, 1.0))


def in_nucleus(probabilities, tokens, p):
    """True where row r's token `tokens[r]` lies in its nucleus (`nucleus_mask`), `[batch]`:
    one pass over the vocabulary, where the whole mask takes thirty."""
    probabilities = ops.cast(probabilities, "float32")
    chosen = ops.take_along_axis(probabilities, ops.expand_dims(tokens, -1), axis=-1)
    light = _light_enough(probabilities, probabilities > chosen, p)[:, 0]
    return ops.logical_or(light, ops.greater_equal(p, 1.0))


def _light_enough(probabilities, above, p):
    """`[batch, 1]`: whether the mass of the tokens `above` is at most `p`. The one sum both
    the mask and the membership test compare, so that they keep the same tokens."""
    return ops.sum(ops.where(above, probabilities, 0.0), -1, keepdims=True) <= p


def top_k_mask(probabilities, k):
    """True on each row's `k` most likely tokens (and any tied with the k-th).

    Args:
        probabilities: `[batch, vocabulary]`.
        k: tokens to keep; 0 (or less) keeps every token.
    """
    probabilities = ops.cast(probabilities, "float32")
    if isinstance(k, int) and k <= 0:
        return ops.ones_like(probabilities, dtype="bool")

    def few_enough(above):
        return ops.sum(ops.cast(above, "int32"), -1, keepdims=True) < k

    kept = probabilities >= _boundary(probabilities, few_enough)
    return ops.logical_or(kept, ops.less_equal(k, 0))


def _boundary(probabilities, small_enough):
    """Each row's lowest probability `m` (`[batch, 1]`) for which the tokens above it,
    `small_enough(probabilities > m)`, are few or light enough; tokens at or over it stay."""
    low = tf.zeros_like(probabilities[:, :1], dtype=tf.int32)  # too low: too much above it
    high = tf.bitcast(tf.reduce_max(probabilities, -1, keepdims=True), tf.int32)  # none above

    def halve(_, bounds):
        low, high = bounds
        middle = low + (high - low) // 2
        fits = small_enough(probabilities > tf.bitcast(middle, tf.float32))
        return tf.where(fits, low, middle), tf.where(fits, middle, high)

    _, high = ops.fori_loop(0, _BISECTION_STEPS, halve, (low, high))
    return tf.bitcast(high, tf.float32)
