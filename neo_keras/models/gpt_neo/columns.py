"""A decoding step with each row's activations as a column: `[features, rows]`.

A step multiplies a few rows by every weight. On a CPU, XLA hands each product to Eigen, which
runs `kernel^T @ activations^T` (the kernel transposed, `[out, in]`, the rows as columns)
faster than `activations @ kernel`. How much, and at which row counts, depends on the CPU
(Generation in BENCHMARKS.md):

- AVX2 (AMD EPYC Zen 3): 1.5-2x at every count measured, 4 to 40 rows; even at 1.
- AVX-512 (AMD EPYC Zen 4): 1.3-1.4x at 32 rows and the 125M shape, 1.5x at the 1.3B shape,
  1.2-1.8x at 8 and 16 rows; at 20, 24 or 40 rows even or slower, so those keep the row form.

With the activations kept as columns through the whole step, every product takes its kernel
in the orientation Eigen runs best, and only the few rows entering and leaving each attention
are transposed. The layers' kernels are transposed once, by the decoding loop
(`GPTNeoCausalLM.decode_kernels`), and held while it runs; the LM head's kernel is the tied
embedding itself.

Everything but the layout is the row form's: the same layers' weights, the same attention
(`GPTNeoAttention.step`), the same float32 normalization; no dropout, as decoding has none.
An accelerator's compiler lays the products out itself, so the column form is for CPUs only
(`suits`).
"""

from __future__ import annotations

import functools
import math

import keras
import tensorflow as tf
from keras import ops
from tensorflow.compiler.tf2xla.python.xla import optimization_barrier

# Where the CPU has AVX-512, the row counts at which the column form measured faster: 8, 16,
# 32, 64; not 20, 24 or 40. Without it, every count measured faster.
_ROWS_MULTIPLE = 16


def suits(rows: int | None, kernel_bytes: int = 0) -> bool:
    """Whether a decoding step of `rows` rows is faster in the column form, and its kernels
    (`kernel_bytes`, see `kernels_size`) fit beside it: on a CPU host, with a static row
    count, where the CPU has AVX-512 (or may have: its flags cannot be read) a multiple of
    16, and where the kernels take at most half the memory still available, so that the copies
    never make a decoding run fail for memory that the row form would have left free."""
    on_cpu = keras.distribution.list_devices()[0].startswith("cpu")
    if not on_cpu or rows is None or kernel_bytes > _available_memory() / 2:
        return False
    return rows % _ROWS_MULTIPLE == 0 or not _may_have_avx512()


def _available_memory(meminfo: str = "/proc/meminfo") -> float:
    """Bytes the host can still give without swapping (`MemAvailable`); unbounded where it
    cannot be read."""
    try:
        with open(meminfo) as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return 1024.0 * int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return math.inf


@functools.cache
def _may_have_avx512(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """False only where the CPU's flags can be read and lack AVX-512."""
    try:
        with open(cpuinfo) as flags:
            return "avx512f" in flags.read()
    except OSError:
        return True


def kernels(decoder) -> tuple:
    """The kernels of a `GPTNeoDecoder` as `[out, in]` copies in its compute dtype: the
    query, key and value projections stacked into one, the attention output, then the MLP's
    two."""
    query, key, value, *others = (
        ops.cast(ops.transpose(layer.kernel), layer.compute_dtype) for layer in _dense(decoder)
    )
    return (ops.concatenate([query, key, value], axis=0), *others)


def kernels_size(decoders) -> int:
    """Bytes that `kernels` of all of `decoders` hold."""
    return sum(
        math.prod(layer.kernel.shape) * tf.as_dtype(layer.compute_dtype).size
        for decoder in decoders
        for layer in _dense(decoder)
    )


def _dense(decoder) -> tuple:
    """A `GPTNeoDecoder`'s projections, in the order of `kernels`."""
    attention = decoder.attention
    return (
        attention.query_dense,
        attention.key_dense,
        attention.value_dense,
        attention.output_dense,
        decoder.mlp_intermediate,
        decoder.mlp_output,
    )


def decoder_step(decoder, columns, layer_kernels: tuple, cache, cache_update_index):
    """One position a row through a `GPTNeoDecoder`: `columns` `[hidden, B]` in, the same
    out, with the layer's updated cache."""
    attention = decoder.attention
    query_key_value, output, intermediate, mlp_output = layer_kernels
    normed = layer_norm(decoder.attention_layer_norm, columns)
    # One product for the three projections (none has a bias): three times the rows of
    # one, which Eigen runs at a higher rate than three apart.
    projected = ops.matmul(query_key_value, normed)
    query, key, value = (_heads(attention, part) for part in ops.split(projected, 3, axis=0))
    context, cache = attention.step(query, key, value, cache, cache_update_index)
    context = ops.transpose(context[:, 0, :])
    columns = columns + dense(attention.output_dense, output, context)
    normed = layer_norm(decoder.mlp_layer_norm, columns)
    hidden = dense(decoder.mlp_intermediate, intermediate, normed)
    return columns + dense(decoder.mlp_output, mlp_output, hidden), cache


def logits(embedding, columns):
    """The LM head, tied to `embedding`, on `columns` `[hidden, B]`: logits `[B, vocabulary]`.

    The embedding `[vocabulary, hidden]` is the head's kernel as `[out, in]` already, so the
    product needs no copy of it. The logits come out as columns and are transposed to rows;
    the barrier keeps XLA from folding that transpose into the product, which it would then
    compute in the slow orientation.
    """
    products = ops.matmul(ops.cast(embedding.embeddings, embedding.compute_dtype), columns)
    (products,) = optimization_barrier(products)
    return ops.transpose(products)


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
