"""GPT-Neo self-attention: global or sliding-window ("local"), unscaled scores."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras
from keras import ops

from neo_keras.models.gpt_neo import kv_cache

ATTENTION_TYPES = ("global", "local")

# A large finite negative rather than -inf: a query whose keys are all masked (a left-padding
# position) then gets a uniform distribution instead of NaN.
_MASKED_SCORE = -1e9


def expand_attention_types(attention_types: Sequence, num_layers: int) -> list[str]:
    """Returns one attention type per layer.

    Accepts a flat list (`["global", "local", ...]`, one entry per layer) or the Hugging Face
    run-length form (`[[["global", "local"], 6]]`: the pattern repeated 6 times).
    """
    if attention_types and not isinstance(attention_types[0], str):
        flat = []
        for pattern, repeats in attention_types:
            flat.extend(list(pattern) * int(repeats))
    else:
        flat = list(attention_types)
    unknown = sorted({t for t in flat if t not in ATTENTION_TYPES})
    if unknown:
        raise ValueError(f"Unknown attention types {unknown}; use 'global' or 'local'.")
    if len(flat) != num_layers:
        raise ValueError(
            f"attention_types names {len(flat)} layers but num_layers is {num_layers}; "
            "give one type per layer."
        )
    return flat


def alternating_attention_types(num_layers: int) -> list[str]:
    """GPT-Neo's published pattern: global, local, global, local, ..."""
    return [ATTENTION_TYPES[i % 2] for i in range(num_layers)]


def attention_mask(
    query_positions,
    key_positions,
    attention_type: str,
    window_size: int,
    key_padding_mask=None,
):
    """Boolean mask `[B or 1, Tq, Tk]`: True where a query may attend to a key.

    A query sees every earlier key and itself; a local layer sees only the `window_size`
    most recent positions, the current one included. Keys marked False in `key_padding_mask`
    (`[B, Tk]`) are hidden.
    """
    distance = ops.expand_dims(query_positions, -1) - ops.expand_dims(key_positions, 0)
    allowed = ops.expand_dims(reaches(distance, attention_type, window_size), 0)
    if key_padding_mask is not None:
        key_padding_mask = ops.cast(key_padding_mask, "bool")
        allowed = ops.logical_and(allowed, ops.expand_dims(key_padding_mask, 1))
    return allowed


def reaches(distance, attention_type: str, window_size: int):
    """True where a query `distance` positions after a key sees it: the key is not later, and
    for a local layer lies within the `window_size` most recent positions."""
    allowed = ops.greater_equal(distance, 0)
    if attention_type == "local":
        allowed = ops.logical_and(allowed, ops.less(distance, window_size))
    return allowed


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoAttention(keras.layers.Layer):
    """Multi-head causal self-attention as in GPT-Neo.

    Differences from the textbook layer, all load-bearing for checkpoint parity: the
    query/key/value projections have no bias, the scores are NOT divided by sqrt(head_dim),
    and scores and softmax are computed in float32 whatever the compute dtype.

    Args:
        num_heads: number of attention heads.
        attention_type: `"global"` (full causal) or `"local"` (sliding window).
        window_size: how many positions a local layer sees, the current one included.
        dropout: dropout rate on the attention probabilities.
        kernel_initializer: initializer of the projection kernels.
    """

    def __init__(
        self,
        num_heads: int,
        attention_type: str = "global",
        window_size: int = 256,
        dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}."
            )
        self.num_heads = num_heads
        self.attention_type = attention_type
        self.window_size = window_size
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({self.num_heads})."
            )
        self.head_dim = hidden_dim // self.num_heads

        def projection(name, use_bias):
            layer = keras.layers.Dense(
                hidden_dim,
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer,
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build(input_shape)
            return layer

        self.query_dense = projection("query", use_bias=False)
        self.key_dense = projection("key", use_bias=False)
        self.value_dense = projection("value", use_bias=False)
        self.output_dense = projection("attention_output", use_bias=True)
        self.probs_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (batch, length, self.num_heads, self.head_dim))

    def call(
        self,
        hidden_states,
        padding_mask=None,
        cache=None,
        cache_update_index=None,
    ):
        """Attends over `hidden_states` `[B, T, hidden]`.

        Without `cache`, the whole sequence attends to itself (`padding_mask` `[B, T]` hides
        padded keys). With `cache`, this layer's `(keys, values)`, each in blocks of positions
        (`kv_cache`), the new keys and values are written at `cache_update_index` and the
        queries attend over the cache (one query: over the blocks it sees); returns `(output,
        updated_cache)` in that case. A cache of shared prompts (`kv_cache.shared_prompts`)
        or of rows at their own positions (`kv_cache.rows_at_own_positions`) takes one
        position a step.
        """
        query = self._split_heads(self.query_dense(hidden_states))
        key = self._split_heads(self.key_dense(hidden_states))
        value = self._split_heads(self.value_dense(hidden_states))
        query_length = ops.shape(hidden_states)[1]

        # One position, a decoding step; a prefill traced for any length has no static one.
        if isinstance(cache, dict) or (cache is not None and hidden_states.shape[1] == 1):
            context, cache = self.step(query, key, value, cache, cache_update_index)
            return self.output_dense(context), cache
        if cache is None:
            query_positions = ops.arange(query_length)
            key_positions = query_positions
            # Keys and values by position: [B, T, heads, head_dim].
            equations = "bqhd,bkhd->bhqk", "bhqk,bkhd->bqhd"
        else:
            # The cache holds keys and values by head, in blocks of positions (`kv_cache`),
            # the layout the score and context products read as it is: by position, XLA
            # copied (transposed) the whole cache of every layer at every decoding step.
            index = ops.convert_to_tensor(cache_update_index, "int32")
            cache = self._write(cache, key, value, index)
            key, value = kv_cache.positions(cache)
            query_positions = ops.arange(query_length) + index
            key_positions = ops.arange(ops.shape(key)[2])
            padding_mask = None  # Right padding: the queries never reach unwritten slots.
            equations = "bqhd,bhkd->bhqk", "bhqk,bhkd->bqhd"

        if cache is None and self._banded(query_length):
            context = self._banded_local_context(query, key, value, padding_mask)
        else:
            mask = attention_mask(
                query_positions, key_positions, self.attention_type, self.window_size, padding_mask
            )
            context = self._context(query, key, value, ops.expand_dims(mask, 1), *equations)
        context = ops.reshape(context, ops.shape(hidden_states))
        output = self.output_dense(context)
        return output if cache is None else (output, cache)

    def step(self, query, key, value, cache, cache_update_index):
        """One decoding step: the context `[B, 1, hidden]` of one position a row, before the
        output projection, and the updated cache.

        `query`, `key` and `value` are the step's projections, `[B, 1, heads, head_dim]`;
        `cache` is this layer's blocks (`kv_cache.empty`), the key and value written at
        `cache_update_index`; the same with each row at a position of its own
        (`kv_cache.rows_at_own_positions`); or a cache of shared prompts
        (`kv_cache.shared_prompts`).
        """
        if isinstance(cache, dict) and query.shape[1] != 1:
            raise ValueError(
                f"A cache of rows at their own positions takes one position a step, got "
                f"{query.shape[1]}; run the prompts through a cache of their own first "
                "(`kv_cache.empty`)."
            )
        if isinstance(cache, dict) and "prompt_keys" in cache:
            return self._shared_prompt_step(query, key, value, cache, cache_update_index)
        index = ops.convert_to_tensor(cache_update_index, "int32")
        at_own_positions = isinstance(cache, dict)
        blocks = (cache["keys"], cache["values"]) if at_own_positions else cache
        blocks = self._write(blocks, key, value, index)
        starts = cache["starts"] if at_own_positions else None
        context = self._step_context(query, *blocks, index, starts)
        cache = {**cache, "keys": blocks[0], "values": blocks[1]} if at_own_positions else blocks
        rows = ops.shape(query)[0]
        return ops.reshape(context, (rows, 1, self.num_heads * self.head_dim)), cache

    def _write(self, cache, key, value, index):
        """This layer's `(keys, values)` blocks with `key` and `value` `[B, T, heads,
        head_dim]` written from position `index`."""
        by_head = (0, 2, 1, 3)
        return kv_cache.write(
            cache, ops.transpose(key, by_head), ops.transpose(value, by_head), index
        )

    def _context(self, query, key, value, mask, scores_equation, context_equation):
        """softmax(query . key, unscaled, in float32, masked) . value."""
        query, key = ops.cast(query, "float32"), ops.cast(key, "float32")
        probs = self._probabilities(ops.einsum(scores_equation, query, key), mask)
        return ops.einsum(context_equation, probs, value)

    def _probabilities(self, scores, mask):
        """Masked softmax of float32 `scores`, in the compute dtype, with dropout."""
        scores = ops.where(mask, scores, _MASKED_SCORE)
        return self.probs_dropout(ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype))

    def _step_context(self, query, keys, values, index, starts=None):
        """The context of one query `[B, 1, heads, head_dim]` at column `index`, over the
        cached blocks it sees (`kv_cache.visible_blocks`), one block at a time, the softmax
        taken over the blocks in parts (`_merge`), without a pass over the blocks the query
        cannot see. With `starts` `[B]`, a row's keys begin at its column there
        (`kv_cache.rows_at_own_positions`).

        A block's scores and context are products summed, not products of matrices: XLA's CPU
        backend copies a block sliced from the cache by a loop's index before a matrix product
        reads it, and reads it in place where a multiply fused with the slice does. At 32 rows
        and the 125M shape the copies took 50 ms of a 193 ms step. The keys hold a block's
        positions last (`kv_cache.empty`), so that both sums run over a middle axis.
        """
        first, end = kv_cache.visible_blocks(index, self.attention_type, self.window_size)
        # [B, heads, head_dim, 1]: one column, each row's query for each head.
        query = ops.cast(ops.transpose(query, (0, 2, 3, 1)), "float32")
        block_positions = ops.arange(kv_cache.BLOCK_POSITIONS)

        def attend_block(number, *so_far):
            key_positions = number * kv_cache.BLOCK_POSITIONS + block_positions
            mask = attention_mask(
                ops.reshape(index, [1]), key_positions, self.attention_type, self.window_size
            )
            if starts is not None:
                mask = ops.logical_and(mask, (key_positions >= starts[:, None])[:, None, :])
            block_keys = ops.cast(kv_cache.block(keys, number), "float32")
            scores = ops.sum(query * block_keys, axis=2, keepdims=True)  # [B, heads, 1, keys]
            block_values = ops.cast(kv_cache.block(values, number), "float32")

            def weigh(weights):
                weights = ops.cast(ops.swapaxes(weights, 2, 3), "float32")
                return ops.sum(weights * block_values, axis=2, keepdims=True)

            block = self._part(scores, ops.expand_dims(mask, 1), weigh)
            return number + 1, *_merge(so_far, block)

        batch, heads, head_dim, _ = ops.shape(query)
        _, _, total, context = ops.while_loop(
            lambda number, *_: number < end,
            attend_block,
            (first, *_no_keys(batch, heads, 1, head_dim)),
        )
        context = ops.cast(context / total, self.compute_dtype)
        return ops.transpose(context, (0, 2, 1, 3))

    def _part(self, scores, mask, weigh):
        """Attention over one part of a query's keys, for a softmax over all of them taken in
        parts (`_merge`): `(largest, total, context)`, float32, the largest of the float32
        `scores` once masked `[B, heads, 1, 1]`, the sum of the scores exponentiated less
        that largest, and the part's values weighted by those exponentials (`weigh`, given
        them `[B, heads, 1, keys]` in the compute dtype) `[B, heads, 1, head_dim]`."""
        scores = ops.where(mask, scores, _MASKED_SCORE)
        largest = ops.max(scores, axis=-1, keepdims=True)
        weights = ops.exp(scores - largest)
        context = weigh(self.probs_dropout(ops.cast(weights, self.compute_dtype)))
        return largest, ops.sum(weights, axis=-1, keepdims=True), ops.cast(context, "float32")

    def _block_part(self, query, keys, values, mask):
        """`_part` over `keys` and `values` `[B, heads, positions, head_dim]` for `query`
        `[B, heads, 1, head_dim]` in float32."""
        scores = ops.einsum("bhqd,bhkd->bhqk", query, ops.cast(keys, "float32"))
        return self._part(
            scores, mask, lambda weights: ops.einsum("bhqk,bhkd->bhqd", weights, values)
        )

    def _shared_prompt_step(self, query, key, value, cache, index):
        """One position a row, over its prompt, shared with other rows, and its own positions
        (`kv_cache.shared_prompts`). Returns `(context, updated_cache)`."""
        positions = kv_cache.row_positions(cache, ops.convert_to_tensor(index, "int32"))
        offsets = positions - cache["prompt_lengths"]  # into each row's own positions
        cache = dict(cache)
        for name, new in (("keys", key), ("values", value)):
            new = ops.transpose(new, (0, 2, 1, 3))
            cache[name] = kv_cache.write_rows(cache[name], new, offsets)
        query = ops.cast(ops.transpose(query, (0, 2, 1, 3)), "float32")  # [B, heads, 1, dim]
        parts = [
            self._prompt_part(query, cache, positions),
            *self._own_parts(query, cache, positions, offsets),
        ]
        _, total, context = _merge(*parts)
        context = ops.cast(context / total, self.compute_dtype)
        rows = ops.shape(query)[0]
        return ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (rows, 1, -1)), cache

    def _prompt_part(self, query, cache, positions):
        """The part of each row's keys in its prompt (`_part`): its prompt's positions up to
        `positions` `[B]`, not the padding after them.

        Each row against every prompt, in one product a head whose rows are zero but on the
        row's own prompt: every prompt is read once for all its rows, not once per row.
        """
        _, prompts, _, prompt_positions = ops.shape(cache["prompt_keys"])
        choice = ops.one_hot(cache["sources"], prompts, dtype="float32")[:, :, None, None, None]
        key_positions = ops.arange(prompt_positions)[None, :]
        mask = ops.logical_and(
            reaches(positions[:, None] - key_positions, self.attention_type, self.window_size),
            key_positions < cache["prompt_lengths"][:, None],
        )
        scores = ops.einsum(
            "bshqd,hsdp->bhqp",
            choice * ops.expand_dims(query, 1),
            ops.cast(cache["prompt_keys"], "float32"),
        )

        def weigh(weights):
            return ops.einsum(
                "bshqp,hspd->bhqd",
                ops.cast(choice, self.compute_dtype) * ops.expand_dims(weights, 1),
                cache["prompt_values"],
            )

        return self._part(scores, mask[:, None, None, :], weigh)

    def _own_parts(self, query, cache, positions, offsets) -> list:
        """The parts of each row's keys among its own positions (`_part`), a block each
        (`kv_cache.own_blocks`). A block that no row has reached yet, or that a local layer's
        window has left behind for every row, is skipped."""
        size = ops.shape(cache["keys"][0])[2]
        parts = []
        for number, (keys, values) in enumerate(zip(cache["keys"], cache["values"], strict=True)):
            key_positions = cache["prompt_lengths"][:, None] + number * size + ops.arange(size)
            mask = reaches(
                positions[:, None] - key_positions, self.attention_type, self.window_size
            )

            def block(keys=keys, values=values, mask=mask[:, None, None, :]):
                return self._block_part(query, keys, values, mask)

            if number == 0:  # every row's first own position, written at the first step
                parts.append(block())
                continue
            seen = ops.max(offsets) >= number * size
            if self.attention_type == "local":
                last = (number + 1) * size - 1
                seen = ops.logical_and(seen, ops.min(offsets) - last < self.window_size)
            parts.append(ops.cond(seen, block, lambda: _no_keys(*ops.shape(query))))
        return parts

    def _banded(self, length) -> bool:
        """A local layer over a sequence longer than its window computes only the band."""
        local = self.attention_type == "local"
        return local and isinstance(length, int) and length > self.window_size

    def _banded_local_context(self, query, key, value, padding_mask):
        """Local attention in blocks of `window_size` queries, each against its own block of
        keys and the one before: `T x 2W` scores instead of `T x T`.

        Every query's window lies within those `2W` keys, so the result equals the full
        computation wherever a query sees at least one key (a row that sees none, a padding
        position, is uniform over fewer keys; no loss or other position reads it).
        """
        window = self.window_size
        batch, length = ops.shape(query)[0], query.shape[1]
        blocks = -(-length // window)
        tail = blocks * window - length

        def query_blocks(x):  # [B, T, ...] -> [B, blocks, W, ...]
            x = ops.pad(x, [[0, 0], [0, tail]] + [[0, 0]] * (len(x.shape) - 2))
            return ops.reshape(x, (batch, blocks, window, *x.shape[2:]))

        def key_blocks(x):  # [B, T, ...] -> [B, blocks, 2W, ...]: the previous block, then own
            x = ops.pad(x, [[0, 0], [window, tail]] + [[0, 0]] * (len(x.shape) - 2))
            x = ops.reshape(x, (batch, blocks + 1, window, *x.shape[2:]))
            return ops.concatenate([x[:, :-1], x[:, 1:]], axis=2)

        if padding_mask is None:
            padding_mask = ops.ones((batch, length), "bool")
        # The padding in front of the first block is not a key.
        key_present = key_blocks(ops.cast(padding_mask, "bool"))
        query_offsets = ops.arange(window)[:, None]
        key_offsets = ops.arange(2 * window)[None, :]
        distance = query_offsets + window - key_offsets
        in_window = ops.logical_and(distance >= 0, distance < window)  # [W, 2W]
        mask = ops.logical_and(in_window[None, None], key_present[:, :, None, :])
        context = self._context(
            query_blocks(query),
            key_blocks(key),
            key_blocks(value),
            ops.expand_dims(mask, 2),  # [B, blocks, 1, W, 2W]
            "bnqhd,bnkhd->bnhqk",
            "bnhqk,bnkhd->bnqhd",
        )
        context = ops.reshape(context, (batch, blocks * window, *context.shape[3:]))
        return context[:, :length]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "attention_type": self.attention_type,
                "window_size": self.window_size,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def _no_keys(batch, heads, query_length, head_dim) -> tuple:
    """`_part` of no keys: it weighs nothing once merged with any other part."""
    return (
        ops.full([batch, heads, query_length, 1], -1e30),  # below any score, masked included
        ops.zeros([batch, heads, query_length, 1]),
        ops.zeros([batch, heads, query_length, head_dim]),
    )


def _merge(*parts) -> tuple:
    """One `_part` of the keys of all `parts`: each part's total and context rescaled from
    its own largest score to the largest of all. Equal to the softmax over all the keys at
    once up to float32 rounding; the context divided by the total is the attention's."""
    largest = functools.reduce(ops.maximum, [part[0] for part in parts])
    total, context = 0.0, 0.0
    for part_largest, part_total, part_context in parts:
        scale = ops.exp(part_largest - largest)
        total, context = total + part_total * scale, context + part_context * scale
    return largest, total, context
