"""The LM-head loss a chunk of positions at a time, never holding all the logits.

A batch of `B x T` positions over a `V`-token vocabulary has `B x T x V` float32 logits, and
the backward pass needs as much again for their gradient: 3.2 GiB for 4 sequences of 2048
tokens of GPT-2's vocabulary. Here the head (the tied embedding) and the cross-entropy run on
`chunk_size` positions at a time, forward and backward, so only one chunk's logits exist at
once; the gradient is computed chunk by chunk from the saved hidden states.
"""

from __future__ import annotations

import tensorflow as tf


def chunked_cross_entropy_sum(
    hidden_states: tf.Tensor,
    embeddings: tf.Tensor,
    labels: tf.Tensor,
    weights: tf.Tensor,
    chunk_size: int,
) -> tf.Tensor:
    """`sum(cross_entropy(hidden_states @ embeddings.T, labels) * weights)`, in float32.

    Args:
        hidden_states: `[B, T, D]`, the backbone's output, in the compute dtype.
        embeddings: `[V, D]`, the token embedding the head is tied to (cast to the compute
            dtype, as the model's head does).
        labels: `[B, T]` int target tokens.
        weights: `[B, T]` float weight of each position.
        chunk_size: positions per chunk; `T` must be a multiple of it (or smaller than it).

    Equal, values and gradients, to the same sum over the model's float32 logits.
    """
    length = hidden_states.shape[1]
    chunk_size = min(chunk_size, length)
    if length % chunk_size:
        raise ValueError(
            f"The sequence length ({length}) is not a multiple of the loss chunk size "
            f"({chunk_size}); choose a chunk size that divides it."
        )
    chunks = length // chunk_size
    compute_dtype = hidden_states.dtype

    def split(t):  # [B, T, ...] -> [chunks, B, chunk_size, ...]
        t = tf.reshape(t, [-1, chunks, chunk_size, *t.shape[2:]])
        return tf.transpose(t, [1, 0, 2, *range(3, len(t.shape))])

    labels = split(tf.cast(labels, tf.int32))
    weights = split(tf.cast(weights, tf.float32))

    def chunk_logits(hidden_chunk, head):
        return tf.cast(tf.matmul(hidden_chunk, head, transpose_b=True), tf.float32)

    @tf.custom_gradient
    def loss_sum(hidden, table):
        head = tf.cast(table, compute_dtype)
        hidden_chunks = split(hidden)

        def forward(i, total):
            logits = chunk_logits(hidden_chunks[i], head)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels[i], logits)
            return i + 1, total + tf.reduce_sum(losses * weights[i])

        _, total = tf.while_loop(
            lambda i, _: i < chunks, forward, (tf.constant(0), tf.constant(0.0))
        )

        def backward(upstream):
            def step(i, hidden_gradients, table_gradient):
                logits = chunk_logits(hidden_chunks[i], head)
                vocabulary = tf.shape(logits)[-1]
                # d(cross-entropy)/d(logits) = softmax - one_hot(label), times the weight.
                logit_gradient = tf.nn.softmax(logits) - tf.one_hot(labels[i], vocabulary)
                logit_gradient *= (weights[i] * upstream)[..., None]
                logit_gradient = tf.cast(logit_gradient, compute_dtype)
                hidden_gradients = hidden_gradients.write(i, tf.matmul(logit_gradient, head))
                table_gradient += tf.cast(
                    tf.einsum("bcv,bcd->vd", logit_gradient, hidden_chunks[i]), tf.float32
                )
                return i + 1, hidden_gradients, table_gradient

            _, hidden_gradients, table_gradient = tf.while_loop(
                lambda i, *_: i < chunks,
                step,
                (
                    tf.constant(0),
                    tf.TensorArray(compute_dtype, size=chunks),
                    tf.zeros(tf.shape(table), tf.float32),
                ),
            )
            stacked = hidden_gradients.stack()  # [chunks, B, chunk_size, D]
            hidden_gradient = tf.reshape(tf.transpose(stacked, [1, 0, 2, 3]), tf.shape(hidden))
            return hidden_gradient, tf.cast(table_gradient, table.dtype)

        return total, backward

    return loss_sum(hidden_states, embeddings)
