"""Optimizers as the GPT-Neo fine-tuning recipes use them."""

from __future__ import annotations

import keras
from keras import ops

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
        optimizer = FactoredAdafactor(learning_rate=learning_rate, weight_decay=weight_decay)
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
        return optimizer
    raise ValueError(f"Unknown optimizer {name!r}; use 'adamw' or 'adafactor'.")


@keras.saving.register_keras_serializable(package="neo_keras")
class FactoredAdafactor(keras.optimizers.Adafactor):
    """Keras' Adafactor, holding only the factors of each matrix's second moment.

    Keras 3 keeps, beside a matrix's row and column factors, a full-size velocity that every
    step overwrites with their product: as much memory as the weights themselves (4.9 GiB for
    GPT-Neo 1.3B) for a value the factors already hold. Here the product is formed inside the
    update and not kept. Vectors keep their full second moment, as in Keras, and every update
    equals Keras' own. (So the optimizer's variables differ from Keras' Adafactor's, and a
    checkpoint of one does not restore into the other.)
    """

    def build(self, var_list: list) -> None:
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self._r, self._c, self._v = [], [], []
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable):
                self._r.append(None)
                self._c.append(None)
                self._v.append(None)
            elif len(variable.shape) < 2:
                self._r.append(None)
                self._c.append(None)
                self._v.append(self.add_variable_from_reference(variable, name="velocity"))
            else:
                row_shape = variable.shape[:-1]
                column_shape = variable.shape[:-2] + variable.shape[-1:]
                for factors, shape in ((self._r, row_shape), (self._c, column_shape)):
                    factors.append(
                        self.add_variable(shape, dtype=variable.dtype, name=variable.name)
                    )
                self._v.append(None)

    def update_step(self, gradient, variable, learning_rate) -> None:
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        decay = 1 - ops.power(step, self.beta_2_decay)
        squared = ops.square(gradient) + self.epsilon_1
        rows, columns, velocity = self._r[index], self._c[index], self._v[index]
        if rows is None:  # a vector: its full second moment
            self.assign(velocity, decay * velocity + (1 - decay) * squared)
            second_moment = velocity
        else:
            self.assign(rows, decay * rows + (1 - decay) * ops.mean(squared, axis=-1))
            self.assign(columns, decay * columns + (1 - decay) * ops.mean(squared, axis=-2))
            row_share = rows / ops.mean(rows, axis=-1, keepdims=True)
            second_moment = ops.expand_dims(row_share, -1) * ops.expand_dims(columns, -2)
        # Keras caps the rate at 1/sqrt(step) whether or not `relative_step` is set.
        relative_rate = ops.minimum(ops.cast(learning_rate, dtype), 1 / ops.sqrt(step))
        scale = ops.maximum(ops.cast(self.epsilon_2, dtype), _rms(variable)) * relative_rate
        update = gradient / ops.sqrt(second_moment)
        update = update / ops.maximum(1.0, _rms(update) / self.clip_threshold)
        self.assign_sub(variable, scale * update)


def _rms(x):
    return ops.sqrt(ops.mean(ops.square(x)))
