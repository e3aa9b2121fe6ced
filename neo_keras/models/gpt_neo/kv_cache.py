"""One attention layer's key/value cache, kept in blocks of positions.

A layer's values are one tensor `[blocks, B, heads, BLOCK_POSITIONS, head_dim]`, its keys one
`[blocks, B, heads, head_dim, BLOCK_POSITIONS]`. A decoding step reads only the blocks its
query can see (`visible_blocks`), one at a time in a loop: with one `[B, heads, length,
head_dim]` tensor, every step read and multiplied the whole static length, the positions not
yet written included, and a local layer read far beyond its window. Blocks lead the shape so
that each is one contiguous piece of memory: a block sliced out of the positions axis is a
strided copy, which cost more than reading the whole length; and a loop over blocks compiles
once, where a conditional per block doubled the compile time (Generation in BENCHMARKS.md).
The keys hold the positions last so that a step's scores, like its context, are a sum over a
block's middle axis (`GPTNeoAttention._step_context` says why sums rather than products).
The rows of a batch of prompts of different lengths can each decode at a position of their
own (`rows_at_own_positions`), all from the first step.

Rows that continue the same prompts (the samples of a HumanEval problem) can share them
instead (`shared_prompts`): each prompt's keys and values once, and each row's own positions
after its prompt apart. A step then reads a prompt once for all its rows rather than once per
row. A row's own positions are a few blocks, each a tensor of its own (`own_blocks`): a step
reads those it has reached and skips the others, a conditional each, without the copy that
slicing a block out of one tensor costs. Read as matrix products, they took less time than
the same positions in the cache's layout and loop, read as sums (BENCHMARKS.md).
"""

from __future__ import annotations

from keras import ops

# Small enough that a step reads few positions not yet written (half a block on average),
# large enough that each loop iteration's products are worth their overhead.
BLOCK_POSITIONS = 64

# A row's own positions after a shared prompt come in at most this many blocks, of at least
# `_SMALLEST_OWN_BLOCK` positions: a step reads the blocks its rows have reached, on average
# five eighths of four blocks, three quarters of two, where one tensor of them all was read
# whole, on average twice what was written. Each block adds its products, writes and a
# conditional to every layer, and so to the compile: at the 125M shape and 128 new
# positions, one block compiled in 22 s, two of 64 positions in 25-27 s, four of 32 in 34 s,
# and decoded no faster than two.
_OWN_BLOCKS = 4
_SMALLEST_OWN_BLOCK = 64


# From `[B, heads, blocks, BLOCK_POSITIONS, head_dim]` to the layout of the keys, and of the
# values, and back.
_LAYOUTS = ((2, 0, 1, 4, 3), (2, 0, 1, 3, 4))
_BY_POSITION = tuple(tuple(layout.index(axis) for axis in range(5)) for layout in _LAYOUTS)


def empty(batch_size, num_heads: int, length: int, head_dim: int, dtype) -> tuple:
    """A zero cache of at least `length` positions: `(keys, values)`, `[blocks, batch_size,
    num_heads, head_dim, BLOCK_POSITIONS]` and `[blocks, batch_size, num_heads,
    BLOCK_POSITIONS, head_dim]`."""
    blocks = -(-length // BLOCK_POSITIONS)
    values = [blocks, batch_size, num_heads, BLOCK_POSITIONS, head_dim]
    keys = values[:3] + [head_dim, BLOCK_POSITIONS]
    return ops.zeros(keys, dtype=dtype), ops.zeros(values, dtype=dtype)


def positions(cache) -> tuple:
    """The cache `(keys, values)`, each as `[B, heads, positions, head_dim]` (copies)."""
    by_position = []
    for part, layout in zip(cache, _BY_POSITION, strict=True):
        part = ops.transpose(part, layout)
        batch, heads, blocks, block, head_dim = ops.shape(part)
        by_position.append(ops.reshape(part, (batch, heads, blocks * block, head_dim)))
    return tuple(by_position)


def write(cache, key, value, index) -> tuple:
    """The cache `(keys, values)` with `key` and `value` `[B, heads, T, head_dim]` written at
    positions `index .. index + T - 1`: in place for one position (a decoding step), through
    a copy of the whole cache for several (a prompt, once)."""
    if key.shape[2] == 1:
        block, offset = index // BLOCK_POSITIONS, index % BLOCK_POSITIONS
        keys = ops.slice_update(
            cache[0], [block, 0, 0, 0, offset], ops.expand_dims(ops.swapaxes(key, 2, 3), 0)
        )
        values = ops.slice_update(cache[1], [block, 0, 0, offset, 0], ops.expand_dims(value, 0))
        return keys, values
    return tuple(
        _in_blocks(ops.slice_update(by_position, [0, 0, index, 0], new), layout)
        for by_position, new, layout in zip(positions(cache), (key, value), _LAYOUTS, strict=True)
    )


def _in_blocks(by_position, layout):
    """`[B, heads, positions, head_dim]` (a whole number of blocks) in `layout`."""
    batch, heads, length, head_dim = ops.shape(by_position)
    blocks = length // BLOCK_POSITIONS
    by_block = ops.reshape(by_position, (batch, heads, blocks, BLOCK_POSITIONS, head_dim))
    return ops.transpose(by_block, layout)


def rows_at_own_positions(cache, rows, starts) -> dict:
    """A cache for rows that each decode at a position of their own, while a step writes one
    column for all of them: row `i` is row `rows[i]` of `cache` (a prompt from position 0; a
    row may repeat) moved `starts[i]` columns on, its position `p` at column `starts[i] + p`.

    With every prompt of a batch ending at the same column, all its rows decode from the
    first step: right-padded, a batch starts at its shortest prompt's end and steps through
    the longer prompts a token at a time (4 prompts of 87-123 tokens: 164 steps for 128 new
    tokens). The columns before a row's start are hidden from its queries.

    Returns:
        A dict: `keys` and `values` in blocks (`empty`), and `starts` `[B]` (`row_positions`).
    """
    starts = ops.convert_to_tensor(starts, "int32")
    rows = ops.convert_to_tensor(rows, "int32")
    moved = []
    for by_position, layout in zip(positions(cache), _LAYOUTS, strict=True):
        # [prompts x positions, heads x head_dim]: a position's keys or values, one row to
        # gather whole. Gathered by element (`take_along_axis`) from `[B, heads, positions,
        # head_dim]`, the same took twice as long: 1.3-1.8 against 0.6-0.8 s a batch at 32
        # rows and the 125M shape, where the rows' copies alone take 0.7 s.
        prompts, heads, length, head_dim = ops.shape(by_position)
        part = ops.transpose(by_position, (0, 2, 1, 3))
        part = ops.reshape(part, (prompts * length, heads * head_dim))
        # Row i's column c holds its position c - starts[i]; those before its start, any.
        sources = ops.clip(ops.arange(length)[None, :] - starts[:, None], 0, length - 1)
        sources = ops.reshape(rows[:, None] * length + sources, [-1])
        part = ops.reshape(ops.take(part, sources, axis=0), (-1, length, heads, head_dim))
        moved.append(_in_blocks(ops.transpose(part, (0, 2, 1, 3)), layout))
    return {"keys": moved[0], "values": moved[1], "starts": starts}


def block(part, number):
    """Block `number` (a scalar tensor) of the keys or the values `part`: `[B, heads,
    head_dim, BLOCK_POSITIONS]` or `[B, heads, BLOCK_POSITIONS, head_dim]`."""
    _, batch, heads, *sizes = ops.shape(part)
    piece = ops.slice(part, [number, 0, 0, 0, 0], [1, batch, heads, *sizes])
    return ops.reshape(piece, (batch, heads, *sizes))


def visible_blocks(index, attention_type: str = "global", window_size: int = 0):
    """`(first, end)`: the blocks a query at position `index` sees, `first .. end - 1`: those
    holding a position at or before `index`, and for a `"local"` layer one after `index -
    window_size`."""
    first = 0
    if attention_type == "local":
        first = ops.maximum(index - window_size + 1, 0) // BLOCK_POSITIONS
    return first, index // BLOCK_POSITIONS + 1


def shared_prompts(prompt_cache, sources, prompt_lengths, new_positions: int, prompt_ends=None):
    """A layer's cache for rows that continue shared prompts.

    Args:
        prompt_cache: the prompts' cache `(keys, values)`, in blocks (`empty`), one row a
            prompt.
        sources: int `[B]`, the prompt each row continues.
        prompt_lengths: int `[B]`, the length of that prompt: the row's own positions start
            there.
        new_positions: how many positions a row adds after its prompt.
        prompt_ends: int `[B]`, the step index (`cache_update_index`) at which each row's
            first own position comes; `prompt_lengths` when None. With every prompt ending
            at the same index, rows of different prompt lengths all decode from the first
            step (`row_positions`).

    Returns:
        A dict: `prompt_keys` `[heads, prompts, head_dim, prompt positions]` and
        `prompt_values` `[heads, prompts, prompt positions, head_dim]`, the layouts in which
        the products of a step over all prompts read them without a copy; `keys` and
        `values`, a row's own positions from its prompt's end in blocks (`own_blocks`), each
        `[B, heads, positions, head_dim]` (`write_rows`); `sources`, `prompt_lengths`, and
        `starts`, the step index of each row's position 0 (`row_positions`).
    """
    prompt_lengths = ops.convert_to_tensor(prompt_lengths, "int32")
    prompt_ends = prompt_lengths if prompt_ends is None else prompt_ends
    prompt_keys, prompt_values = positions(prompt_cache)
    _, heads, _, head_dim = ops.shape(prompt_keys)
    blocks, size = own_blocks(new_positions)
    own = [ops.shape(sources)[0], heads, size, head_dim]
    return {
        "prompt_keys": ops.transpose(prompt_keys, (1, 0, 3, 2)),
        "prompt_values": ops.transpose(prompt_values, (1, 0, 2, 3)),
        "keys": tuple(ops.zeros(own, prompt_keys.dtype) for _ in range(blocks)),
        "values": tuple(ops.zeros(own, prompt_keys.dtype) for _ in range(blocks)),
        "sources": ops.convert_to_tensor(sources, "int32"),
        "prompt_lengths": prompt_lengths,
        "starts": ops.convert_to_tensor(prompt_ends, "int32") - prompt_lengths,
    }


def own_blocks(new_positions: int) -> tuple[int, int]:
    """`(blocks, positions a block)` that hold `new_positions` own positions of a row."""
    blocks = min(_OWN_BLOCKS, -(-new_positions // _SMALLEST_OWN_BLOCK))
    return blocks, -(-new_positions // blocks)


def row_positions(cache, index):
    """`[B]`: the position in its own sequence of each row of a cache of `shared_prompts` or
    of `rows_at_own_positions` at step `index`."""
    return index - cache["starts"]


def write_rows(blocks: tuple, update, offsets) -> tuple:
    """`blocks` (`own_blocks`, each `[B, heads, positions, head_dim]`) with `update` `[B,
    heads, 1, head_dim]` written in place at a position of each row's own, `offsets` `[B]`.

    Offsets are clipped into the blocks: a row still inside its prompt writes its first
    position, which it writes again before reading it; a finished row's outputs are no
    longer read. Each block takes the rows whose offset falls in it, and the others write
    back what the block held (indices out of range have no portable meaning in a scatter).
    """
    batch, heads, size, head_dim = ops.shape(blocks[0])
    offsets = ops.clip(offsets, 0, len(blocks) * size - 1)
    rows = ops.repeat(ops.arange(batch), heads)
    row_heads = ops.tile(ops.arange(heads), [batch])
    row_offsets = ops.take(offsets, rows)
    update = ops.reshape(update, (batch * heads, head_dim))
    written = []
    for number, block in enumerate(blocks):
        in_block = row_offsets - number * size
        slots = ops.clip(in_block, 0, size - 1)
        held = ops.logical_and(in_block >= 0, in_block < size)[:, None]
        flat = ops.reshape(block, (batch * heads * size, head_dim))
        before = ops.take(flat, ops.arange(batch * heads) * size + slots, axis=0)
        indices = ops.stack([rows, row_heads, slots], 1)
        written.append(ops.scatter_update(block, indices, ops.where(held, update, before)))
    return tuple(written)
