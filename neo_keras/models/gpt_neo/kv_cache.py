"""One attention layer's key/value cache, kept in blocks of positions.

A layer's keys, and its values, are a tuple of blocks `[B, heads, block, head_dim]` that
together cover the cache's length. A decoding step reads only the blocks its query can see
(`visible`): with one `[B, heads, length, head_dim]` tensor, every step read and multiplied
the whole static length, the positions not yet written included, and a local layer read far
beyond its window. The blocks are separate tensors because a slice of one tensor is a copy
under XLA on a CPU: a step attending over a static slice of the cache cost more than
attending over all of it (`benchmarks/decode_step.py`, BENCHMARKS.md).
"""

from __future__ import annotations

from keras import ops

# Positions per block, and how many blocks a cache has at most (longer caches get longer
# blocks): a step reads up to one block of unwritten positions, and each block costs two
# conditional products per layer and step, which lengthen compilation.
BLOCK_POSITIONS = 64
MAX_BLOCKS = 8


def block_sizes(length: int) -> list[int]:
    """The positions of each block of a cache of `length` positions (the last may be short)."""
    per_block = -(-length // MAX_BLOCKS)
    block = max(BLOCK_POSITIONS, -(-per_block // BLOCK_POSITIONS) * BLOCK_POSITIONS)
    return [min(block, length - start) for start in range(0, length, block)]


def empty(batch_size, num_heads: int, length: int, head_dim: int, dtype) -> tuple:
    """Zero blocks covering `length` positions: a tuple of `[batch_size, num_heads, block,
    head_dim]`."""
    return tuple(
        ops.zeros([batch_size, num_heads, size, head_dim], dtype=dtype)
        for size in block_sizes(length)
    )


def block_starts(blocks) -> list[int]:
    """The first position of each block."""
    starts, position = [], 0
    for block in blocks:
        starts.append(position)
        position += block.shape[2]
    return starts


def whole(blocks):
    """The blocks as one `[B, heads, length, head_dim]` tensor (a copy)."""
    return blocks[0] if len(blocks) == 1 else ops.concatenate(blocks, axis=2)


def write(blocks, update, index) -> tuple:
    """`blocks` with `update` `[B, heads, T, head_dim]` written at positions `index ..
    index + T - 1`.

    One position (a decoding step) is written in place: each block rewrites one position,
    the new one in the block that holds `index`, its own elsewhere. Several positions (a
    prompt) go through the whole cache, once.
    """
    if update.shape[2] != 1:
        updated = ops.slice_update(whole(blocks), [0, 0, index, 0], update)
        starts = block_starts(blocks)
        if len(blocks) == 1:
            return (updated,)
        return tuple(ops.split(updated, starts[1:], axis=2))
    written = []
    for start, block in zip(block_starts(blocks), blocks, strict=True):
        size = block.shape[2]
        inside = ops.logical_and(index >= start, index < start + size)
        offset = ops.clip(index - start, 0, size - 1)
        own = ops.slice(block, [0, 0, offset, 0], ops.shape(update))
        written.append(ops.slice_update(block, [0, 0, offset, 0], ops.where(inside, update, own)))
    return tuple(written)


def visible(blocks, index, window_size: int | None) -> list:
    """Per block, whether a query at position `index` sees any of its positions: those at or
    before `index`, and for a local layer (`window_size`) after `index - window_size`."""
    seen = []
    for start, block in zip(block_starts(blocks), blocks, strict=True):
        reached = start <= index
        if window_size is not None:
            reached = ops.logical_and(reached, start + block.shape[2] > index - window_size + 1)
        seen.append(reached)
    return seen
