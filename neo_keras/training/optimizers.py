"""Optimizers as the GPT-Neo fine-tuning recipes use them."""

from __future__ import annotations

import keras

# AdamW's decay skips biases, LayerNorm parameters and embeddings (matched on variable names).
NO_DECAY_NAMES = ["bias", "gamma", "beta", "embeddings"]


def make_optimizer(
    name: str,
    learning_rate,
    weight_decay: float = 0.0,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-8,
) -> keras.optimizers.Optimizer:
    """`"adamw"` or `"adafactor"` with `learning_rate` (a float or a schedule).

    Gradient clipping is not set here: the train step clips the gradient of the global batch
    itself (Keras' `global_clipnorm` would clip each replica's partial gradient).
    """
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
        return optimizer
    if name == "adafactor":
        optimizer = keras.optimizers.Adafactor(
            learning_rate=learning_rate, weight_decay=weight_decay
        )
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
        return optimizer
    raise ValueError(f"Unknown optimizer {name!r}; use 'adamw' or 'adafactor'.")
