"""The train step: masked next-token loss over the global batch, accumulation, clipping.

Keras' default step divides each replica's loss by its own positions and lets the optimizer
clip each replica's partial gradient. Here the loss of a step is

    sum(token_loss * weight) / sum(weight)

over every target token of the global batch (all replicas, all micro-batches), and the
gradient is clipped after it has been summed across replicas.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from neo_keras.accelerators import is_tpu
from neo_keras.training.chunked_loss import chunked_cross_entropy_sum


def token_cross_entropy(labels, logits):
    """Per-position cross-entropy in float32, `[B, T]`."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)
    )


def _replica_sum(value):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


class CausalLMTrainer(keras.Model):
    """Wraps a causal LM for `fit()` with the loss, accumulation and clipping described above.

    The wrapper owns no weights: checkpoints are taken of `causal_lm` itself.

    Args:
        causal_lm: the model; called on `x` it returns logits `[B, T, V]`.
        micro_batch_size: examples per forward/backward pass on each replica; the replica's
            batch is split into `batch // micro_batch_size` passes whose gradients are summed.
            None uses the whole replica batch in one pass.
        clip_norm: global-norm clipping of the global gradient; None disables it.
        xla: compile the forward and backward passes with XLA.
        loss_chunk_size: run the LM head and the loss this many positions at a time, so that
            the whole sequence's logits never exist at once (`chunked_loss`); None computes
            them all.

    Example:

    ```python
    import keras
    import numpy as np

    from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
    from neo_keras.training.lm_trainer import CausalLMTrainer

    backbone = GPTNeoBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        window_size=4, max_sequence_length=32,
    )
    # Batches of 8 sequences: x is the model's input, y the next tokens, the weight the mask.
    token_ids = np.random.default_rng(0).integers(1, 100, (8, 16)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    y, sample_weight = np.roll(token_ids, -1, axis=1), np.ones((8, 16), "float32")

    trainer = CausalLMTrainer(GPTNeoCausalLM(backbone), micro_batch_size=4, clip_norm=1.0)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-4))
    trainer.fit(x, y, sample_weight=sample_weight, batch_size=8, epochs=1, verbose=0)
    ```
    """

    def __init__(
        self,
        causal_lm: keras.Model,
        micro_batch_size: int | None = None,
        clip_norm: float | None = 1.0,
        xla: bool = True,
        loss_chunk_size: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.loss_chunk_size = loss_chunk_size
        self.causal_lm = causal_lm
        self.micro_batch_size = micro_batch_size
        self.clip_norm = clip_norm
        self.xla = xla
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._gradients_fn = None

    def call(self, inputs, training=False):
        return self.causal_lm(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    # ------------------------------------------------------------------ gradients

    def _check_micro_batches(self, batch_size: int | None) -> None:
        micro = self.micro_batch_size
        if batch_size is not None and micro and batch_size % micro:
            raise ValueError(
                f"The per-replica batch ({batch_size}) is not a multiple of the micro-batch "
                f"size ({micro})."
            )

    def _weighted_loss_sum(self, x, y, sample_weight):
        """`sum(token_loss * weight)` of one micro-batch, in training mode."""
        if not self.loss_chunk_size:
            logits = self.causal_lm(x, training=True)
            return tf.reduce_sum(token_cross_entropy(y, logits) * sample_weight)
        backbone = self.causal_lm.backbone
        hidden_states = backbone(x, training=True)
        return chunked_cross_entropy_sum(
            hidden_states,
            tf.convert_to_tensor(backbone.token_embedding.embeddings),
            y,
            sample_weight,
            self.loss_chunk_size,
        )

    def _gradients(self, x, y, sample_weight, total_weight):
        """Sum over micro-batches of d(sum(loss * w) / total_weight), and sum(loss * w).

        The batch may have no static size (a distributed dataset's elements do not): the
        micro-batch count is then computed in the graph.
        """
        variables = self.causal_lm.trainable_variables
        batch_size, micro = y.shape[0], self.micro_batch_size
        self._check_micro_batches(batch_size)

        def gradient_of(x_i, y_i, w_i):
            with tf.GradientTape() as tape:
                weighted = self._weighted_loss_sum(x_i, y_i, w_i)
                loss = weighted / total_weight
            return tape.gradient(loss, variables), weighted

        if not micro or micro == batch_size:
            return gradient_of(x, y, sample_weight)

        def split(t):
            return tf.reshape(t, [-1, micro, *t.shape[1:]])

        xs = tf.nest.map_structure(split, x)
        ys, ws = split(y), split(sample_weight)

        def micro_step(i, gradients, loss_sum):
            step_gradients, weighted = gradient_of(
                tf.nest.map_structure(lambda t: t[i], xs), ys[i], ws[i]
            )
            gradients = [
                g + tf.cast(s, g.dtype) for g, s in zip(gradients, step_gradients, strict=True)
            ]
            return i + 1, gradients, loss_sum + weighted

        zeros = [tf.zeros(v.shape, dtype=v.dtype) for v in variables]
        _, gradients, loss_sum = tf.while_loop(
            lambda i, *_: i < tf.shape(ys)[0],
            micro_step,
            (tf.constant(0), zeros, tf.constant(0.0)),
        )
        return gradients, loss_sum

    def _compiled_gradients(self):
        if self._gradients_fn is None:
            self._gradients_fn = tf.function(self._gradients, jit_compile=self.xla)
        return self._gradients_fn

    # ------------------------------------------------------------------ steps

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        sample_weight = tf.cast(sample_weight, tf.float32)
        total_weight = tf.maximum(_replica_sum(tf.reduce_sum(sample_weight)), 1.0)
        gradients, loss_sum = self._compiled_gradients()(x, y, sample_weight, total_weight)

        gradients = _replica_sum(gradients)
        loss_sum = _replica_sum(loss_sum)
        gradient_norm = tf.linalg.global_norm(gradients)
        if self.clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm, use_norm=gradient_norm)
        # The optimizer sums gradients across replicas once more; they are already summed.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        gradients = [g / replicas for g in gradients]
        learning_rate = self.optimizer.learning_rate
        self.optimizer.apply_gradients(
            zip(gradients, self.causal_lm.trainable_variables, strict=True)
        )

        step_loss = loss_sum / total_weight
        self.loss_tracker.update_state(step_loss)
        return {
            "loss": step_loss,
            "epoch_loss": self.loss_tracker.result(),
            "learning_rate": tf.cast(learning_rate, tf.float32),
            "gradient_norm": gradient_norm,
            "target_tokens": total_weight,
        }

    def evaluation_sums(self, data):
        """`(sum(loss * weight), sum(weight))` of one batch on this replica."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.causal_lm(x, training=False)
        sample_weight = tf.cast(sample_weight, tf.float32)
        return (
            tf.reduce_sum(token_cross_entropy(y, logits) * sample_weight),
            tf.reduce_sum(sample_weight),
        )

    # ------------------------------------------------------------------ execution

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build from a first batch, skipped when the LM and optimizer are built.

        Under a distribution strategy Keras 3.15 draws a batch from the training iterator to
        build the model and reduces it across replicas, which fails on dict inputs from a
        distributed dataset. There is nothing left to build here: no compiled loss or metric.
        """
        if self.causal_lm.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        """Runs `steps_per_execution` steps per call, under every strategy.

        Keras 3.15's own multi-step loop (optionals inside `tf.cond`) fails under
        MirroredStrategy with "You must feed a value for placeholder tensor"; a plain
        `tf.range` loop over `iterator.get_next()` works everywhere.
        """
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy
        steps = self.steps_per_execution
        train_step = self.train_step
        if self.xla and strategy.num_replicas_in_sync == 1 and not is_tpu(strategy):
            # One replica: no collectives, so the optimizer update compiles with the rest.
            train_step = tf.function(self.train_step, jit_compile=True)

        def one_step(iterator):
            outputs = strategy.run(train_step, args=(next(iterator),))
            # Every replica holds the same global values after the all-reduce.
            return tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0], outputs
            )

        @tf.function
        def multi_step(iterator):
            outputs = one_step(iterator)
            for _ in tf.range(steps - 1):
                outputs = one_step(iterator)
            return outputs

        self.train_function = multi_step
        return self.train_function
