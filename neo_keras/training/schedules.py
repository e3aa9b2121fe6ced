"""Learning-rate schedules that run per step inside the compiled train step."""

from __future__ import annotations

import math

import keras
from keras import ops


def _warmup_fraction(step, warmup_steps: int):
    if warmup_steps <= 0:
        return ops.ones_like(step)
    return ops.minimum(step / warmup_steps, 1.0)


@keras.saving.register_keras_serializable(package="neo_keras")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then a half cosine from `peak` to
    `end` over `decay_steps`, then `end`.

    Example: `WarmupCosine(5e-5, warmup_steps=4000, decay_steps=50000, end=5e-6)`.
    """

    def __init__(self, peak: float, warmup_steps: int, decay_steps: int, end: float = 0.0):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.end = end

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * _warmup_fraction(step, self.warmup_steps)
        progress = ops.clip((step - self.warmup_steps) / max(self.decay_steps, 1), 0.0, 1.0)
        cosine = self.end + 0.5 * (self.peak - self.end) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "end": self.end,
        }


@keras.saving.register_keras_serializable(package="neo_keras")
class WarmupLinear(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay to 0 at
    `total_steps` (and 0 after).

    Example: `WarmupLinear(5e-5, warmup_steps=800, total_steps=10000)`.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if total_steps <= warmup_steps:
            raise ValueError(
                f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})."
            )
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * _warmup_fraction(step, self.warmup_steps)
        remaining = (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        decay = self.peak * ops.clip(remaining, 0.0, 1.0)
        return ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }
