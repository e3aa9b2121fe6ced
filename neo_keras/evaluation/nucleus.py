"""Top-p (nucleus) sampling that finds the nucleus without sorting the vocabulary.

keras-hub's `TopPSampler` sorts all probabilities at every step. Under XLA on a CPU that sort
costs more than the model's forward pass (50k tokens per row); here the nucleus boundary is
found by bisection on the probability value instead, with a fixed number of vectorised passes.
The tokens kept are the same: a token stays when the tokens more likely than it hold at most
`p` of the mass, so the smallest set reaching `p` is kept (ties at the boundary aside).
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops, random

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


@keras.saving.register_keras_serializable(package="neo_keras")
class NucleusSampler(keras_hub.samplers.Sampler):
    """Samples among the most likely tokens holding `p` of the probability mass.

    The same distribution as `keras_hub.samplers.TopPSampler`, without its full sort.

    Args:
        p: the nucleus mass, in (0, 1].
        k: when set, only the `k` most likely tokens are candidates (applied before `p`).
        seed: seed of the random draws.
        temperature: softmax temperature.
    """

    def __init__(self, p: float = 0.1, k: int | None = None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.p = p
        self.k = k
        self.seed = seed
        self.seed_generator = random.SeedGenerator(seed)

    def get_next_token(self, probabilities):
        probabilities = ops.cast(probabilities, "float32")
        if self.k:
            kth = ops.top_k(probabilities, k=self.k, sorted=True)[0][:, -1:]
            probabilities = ops.where(probabilities >= kth, probabilities, 0.0)
        kept = ops.where(nucleus_mask(probabilities, self.p), probabilities, 0.0)
        token = random.categorical(ops.log(kept), 1, seed=self.seed_generator, dtype="int32")
        return ops.squeeze(token, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"p": self.p, "k": self.k, "seed": self.seed})
        return config
