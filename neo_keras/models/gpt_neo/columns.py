"""A decoding step with each row's activations as a column: `[features, rows]`.

A step multiplies a few rows by every weight. On a CPU, XLA hands each product to Eigen, which
runs `kernel^T @ activations^T` (the kernel transposed, `[out, in]`, the rows as columns)
faster than `activations @ kernel` when the rows are a multiple of 16: measured on AVX-512,
1.3-1.4x at 32 rows and the 125M shape, 1.5x at the 1.3B shape, 1.2-1.8x at 8 and 16 rows. At
20, 24 or 40 rows it is even or slower, and those keep the row form (Generation in
BENCHMARKS.md). With the activations kept as columns through the whole step, every product
takes its kernel in the orientation Eigen runs best, and only the few rows entering and
leaving each attention are transposed; the kernels are transposed once, by the decoding loop
(`GPTNeoCausalLM.decode_kernels`), and held while it runs.

Everything but the layout is the row form's: the same layers' weights, the same attention
(`GPTNeoAttention.step`), the same float32 normalization; no dropout, as decoding has none.
An accelerator's compiler lays the products out itself, so the column form is for CPUs only
(`suits`).
"""

from __future__ import annotations

import keras
from keras import ops

# The row counts at which the column form measured faster: 8, 16, 32, 64; not 20, 24 or 40.
_ROWS_MULTIPLE = 16


def suits(rows: int | None) -> bool:
    """Whether a decoding step of `rows` rows is faster in the column form: on a CPU host,
    with a static row count that is a multiple of 16."""
    on_cpu = keras.distribution.list_devices()[0].startswith("cpu")
    return on_cpu and rows is not None and rows % _ROWS_MULTIPLE == 0


def kernels(decoder) -> tuple:
    """The kernels of a `GPTNeoDecoder` as `[out, in]` copies in its compute dtype: query,
    key, value and attention output, then the MLP's two."""
    attention = decoder.attention
    layers = (
        attention.query_dense,
        attention.key_dense,
        attention.value_dense,
        attention.output_dense,
        decoder.mlp_intermediate,
        decoder.mlp_output,
    )
    return tuple(ops.cast(ops.transpose(layer.kernel), layer.compute_dtype) for layer in layers)


def decoder_step(decoder, columns, layer_kernels: tuple, cache, cache_update_index):
    """One position a row through a `GPTNeoDecoder`: `columns` `[hidden, B]` in, the same
    out, with the layer's updated cache."""
    attention = decoder.attention
    query, key, value, output, intermediate, mlp_output = layer_kernels
    normed = layer_norm(decoder.attention_layer_norm, columns)
    query, key, value = (
        _heads(attention, dense(layer, kernel, normed))
        for layer, kernel in (
            (attention.query_dense, query),
            (attention.key_dense, key),
            (attention.value_dense, value),
        )
    )
    context, cache = attention.step(query, key, value, cache, cache_update_index)
    context = ops.transpose(context[:, 0, :])
    columns = columns + dense(attention.output_dense, output, context)
    normed = layer_norm(decoder.mlp_layer_norm, columns)
    hidden = dense(decoder.mlp_intermediate, intermediate, normed)
    return columns + dense(decoder.mlp_output, mlp_output, hidden), cache


def dense(layer, kernel, columns):
    """A `keras.layers.Dense` on `columns` `[in, B]`, with its `kernel` as `[out, in]`."""
    outputs = ops.matmul(kernel, columns)
    if layer.use_bias:
        outputs = outputs + ops.cast(layer.bias, outputs.dtype)[:, None]
    return layer.activation(outputs)


def layer_norm(layer, columns):
    """A `keras.layers.LayerNormalization` over the features of `columns` `[features, B]`,
    in float32 as the layer computes it."""
    values = ops.cast(columns, "float32")
    mean = ops.mean(values, axis=0, keepdims=True)
    variance = ops.mean(ops.square(values - mean), axis=0, keepdims=True)
    normed = (values - mean) * ops.rsqrt(variance + layer.epsilon)
    normed = normed * ops.cast(layer.gamma, "float32")[:, None]
    normed = normed + ops.cast(layer.beta, "float32")[:, None]
    return ops.cast(normed, columns.dtype)


def _heads(attention, columns):
    """`[heads * head_dim, B]` -> `[B, 1, heads, head_dim]`, as attention takes a step.

    Split into heads before the transpose: XLA folds a transpose that reads a product
    directly into the product, which it then computes in the slow orientation (77 against
    53 ms for the 12 layers at 32 rows).
    """
    rows = ops.shape(columns)[1]
    by_head = ops.reshape(columns, (attention.num_heads, attention.head_dim, rows))
    return ops.expand_dims(ops.transpose(by_head, (2, 0, 1)), 1)
