"""Top-p (nucleus) sampling that finds the nucleus without sorting the vocabulary.

keras-hub's `TopPSampler` sorts all probabilities at every step. Under XLA on a CPU that sort
costs more than the model's forward pass (50k tokens per row); here the nucleus boundary is
found by bisection on the probability value instead, with a fixed number of vectorised passes.
The tokens kept are the same: a token stays when the tokens more likely than it hold at most
`p` of the mass, so the smallest set reaching `p` is kept (ties at the boundary aside).
"""

from __future__ import annotations

from keras import ops

# Each pass halves the interval holding the boundary: 2^-48 of the top probability is below
# float32's resolution of the probabilities near it.
_BISECTION_STEPS = 48


def nucleus_mask(probabilities, p: float):
    """True on the tokens of each row's nucleus: those with at most `p` mass above them.

    Args:
        probabilities: `[batch, vocabulary]`, each row summing to 1.
        p: the nucleus mass, in (0, 1].
    """
    probabilities = ops.cast(probabilities, "float32")
    if p >= 1:
        return ops.ones_like(probabilities, dtype="bool")
    low = ops.zeros_like(probabilities[:, :1])  # too low: more than p of mass above it
    high = ops.max(probabilities, axis=-1, keepdims=True)  # nothing above it

    def halve(_, bounds):
        low, high = bounds
        middle = (low + high) / 2
        above = ops.sum(ops.where(probabilities > middle, probabilities, 0.0), -1, keepdims=True)
        small_enough = above <= p
        return ops.where(small_enough, low, middle), ops.where(small_enough, middle, high)

    _, high = ops.fori_loop(0, _BISECTION_STEPS, halve, (low, high))
    return probabilities >= high
