"""One attention layer's key/value cache, kept in blocks of positions.

A layer's keys, and its values, are one tensor `[blocks, B, heads, BLOCK_POSITIONS,
head_dim]`. A decoding step reads only the blocks its query can see (`visible_blocks`), one
at a time in a loop: with one `[B, heads, length, head_dim]` tensor, every step read and
multiplied the whole static length, the positions not yet written included, and a local layer
read far beyond its window. Blocks lead the shape so that each is one contiguous piece of
memory: a block sliced out of the positions axis is a strided copy, which cost more than
reading the whole length; and a loop over blocks compiles once, where a conditional per
block doubled the compile time (Generation in BENCHMARKS.md).
"""

from __future__ import annotations

from keras import ops

# Small enough that a step reads few positions not yet written (half a block on average),
# large enough that each loop iteration's products are worth their overhead.
BLOCK_POSITIONS = 64


def empty(batch_size, num_heads: int, length: int, head_dim: int, dtype):
    """A zero cache of at least `length` positions, `[blocks, batch_size, num_heads,
    BLOCK_POSITIONS, head_dim]`."""
    blocks = -(-length // BLOCK_POSITIONS)
    return ops.zeros([blocks, batch_size, num_heads, BLOCK_POSITIONS, head_dim], dtype=dtype)


def positions(cache):
    """The cache as `[B, heads, positions, head_dim]` (a copy)."""
    blocks, batch, heads, block, head_dim = ops.shape(cache)
    by_position = ops.transpose(cache, (1, 2, 0, 3, 4))
    return ops.reshape(by_position, (batch, heads, blocks * block, head_dim))


def write(cache, update, index):
    """`cache` with `update` `[B, heads, T, head_dim]` written at positions `index .. index +
    T - 1`: in place for one position (a decoding step), through a copy of the whole cache
    for several (a prompt, once)."""
    if update.shape[2] == 1:
        block, offset = index // BLOCK_POSITIONS, index % BLOCK_POSITIONS
        return ops.slice_update(cache, [block, 0, 0, offset, 0], ops.expand_dims(update, 0))
    blocks, batch, heads, _, head_dim = ops.shape(cache)
    updated = ops.slice_update(positions(cache), [0, 0, index, 0], update)
    updated = ops.reshape(updated, (batch, heads, blocks, BLOCK_POSITIONS, head_dim))
    return ops.transpose(updated, (2, 0, 1, 3, 4))


def rows(cache, indices):
    """The cache of rows `indices` of `cache` (a row may repeat)."""
    return ops.take(cache, indices, axis=1)


def block(cache, number):
    """Block `number` (a scalar tensor) of `cache`: `[B, heads, BLOCK_POSITIONS, head_dim]`."""
    _, batch, heads, size, head_dim = ops.shape(cache)
    piece = ops.slice(cache, [number, 0, 0, 0, 0], [1, batch, heads, size, head_dim])
    return ops.reshape(piece, (batch, heads, size, head_dim))


def visible_blocks(index, attention_type: str = "global", window_size: int = 0):
    """`(first, end)`: the blocks a query at position `index` sees, `first .. end - 1`: those
    holding a position at or before `index`, and for a `"local"` layer one after `index -
    window_size`."""
    first = 0
    if attention_type == "local":
        first = ops.maximum(index - window_size + 1, 0) // BLOCK_POSITIONS
    return first, index // BLOCK_POSITIONS + 1
