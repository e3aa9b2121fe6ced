"""The next token of every row, drawn with randomness that belongs to the row alone.

A row's draws must depend only on the seed, its task id and its sample index: never on the
batch, bucket, replica or host that produced it, nor on whether the run was resumed. So no
random state is carried from one draw to the next (as keras-hub's samplers carry a
`SeedGenerator`, whose state also cannot be assigned inside a replica). Each row has a key, a
hash of (seed, task id, sample index) made on the host by `row_keys`; its draw for its n-th
new token is a counter-based function of (key, n), computed in the graph with 32-bit integer
mixing, the same on every device.

One uniform draw a row and step picks the token by inverting the cumulative distribution of
the kept tokens: exact sampling of the categorical distribution at 2^-24 resolution, with one
pass over the vocabulary and no sort. Temperature, then top-k, then top-p over the top-k
tokens renormalized (`nucleus`), shape the distribution, in the order of `transformers`'
logits processors; greedy decoding takes the most likely token. Top-p draws from the whole
distribution and keeps a token of the nucleus (`nucleus_draw`), taking the row's next draw
for the same token otherwise: the nucleus's distribution, for one pass over the vocabulary
where finding its boundary takes thirty. `VERSION` names this mapping from draws to tokens:
it changes when the same seed would give other tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from neo_keras.generation.nucleus import in_nucleus, nucleus_mask, top_k_mask

# Murmur3's 32-bit finalizer constants, and the golden ratio step between counters.
_MIX_1, _MIX_2, _GOLDEN = 0x85EBCA6B, 0xC2B2AE35, 0x9E3779B9
_UNIFORM_BITS = 24
_CDF_BLOCK = 256
# Incremented when the same seed and settings would choose other tokens: a run resumed across
# it would mix two samplers' completions.
VERSION = 2
# Draws a row may take from the whole distribution before its nucleus is found by bisection.
_NUCLEUS_ATTEMPTS = 8
# A row's draws for one token: a try from the whole distribution each, and a last one from the
# nucleus found by bisection.
DRAWS_PER_TOKEN = _NUCLEUS_ATTEMPTS + 1


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen.

    Args:
        temperature: softmax temperature (> 0); ignored when `greedy`.
        top_p: nucleus sampling keeps the smallest set of tokens with this much probability;
            1.0 turns it off.
        top_k: sample among the k most likely tokens; 0 turns it off.
        greedy: always take the most likely token.
        seed: with the task id and sample index, keys every draw of a row: the same seed
            gives the same draws, however the rows are batched or spread.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False
    seed: int = 0

    def __post_init__(self):
        if not self.greedy and not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (got {self.temperature}); use greedy decoding for "
                "temperature 0."
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p}); 1 turns it off.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (got {self.top_k}); 0 turns it off.")


def row_keys(seed: int, task_ids: Sequence[str], sample_indices: Sequence[int]) -> np.ndarray:
    """The key of each row, `[rows, 2]` uint32: a hash of (seed, task id, sample index)."""
    keys = np.zeros((len(task_ids), 2), np.uint32)
    for row, (task_id, sample) in enumerate(zip(task_ids, sample_indices, strict=True)):
        digest = hashlib.blake2b(f"{seed}\0{task_id}\0{sample}".encode(), digest_size=8).digest()
        keys[row] = np.frombuffer(digest, "<u4")
    return keys


def _mix(x: tf.Tensor) -> tf.Tensor:
    """Murmur3's finalizer: each input bit flips each output bit with probability near 1/2."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(_MIX_1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13))
    x = x * tf.constant(_MIX_2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def seeded_row_keys(seed, rows) -> tf.Tensor:
    """Keys `[rows, 2]` uint32 of rows known only by their place in a batch: row r is keyed by
    (`seed`, r). For callers without task ids (`GPTNeoCausalLM.generate`, the SavedModel)."""
    return tf.cast(tf.stack([tf.fill([rows], seed), tf.range(rows)], axis=1), tf.uint32)


def uniform_draws(keys: tf.Tensor, steps: tf.Tensor) -> tf.Tensor:
    """Each row's draws in [0, 1) for its `steps`-th new token: `[rows, DRAWS_PER_TOKEN]`
    float32. The first picks the token; top-p takes the others only for a token outside the
    nucleus (`nucleus_draw`).

    Args:
        keys: `[rows, 2]` uint32 from `row_keys`.
        steps: `[rows]` int32, how many tokens the row has generated before this one.
    """
    counter = tf.cast(steps, tf.uint32) * tf.constant(_GOLDEN, tf.uint32)
    # Each further draw as though by a key of its own; the first keeps the row's key.
    attempts = tf.cast(tf.range(DRAWS_PER_TOKEN), tf.uint32)
    salts = _mix(attempts * tf.constant(_GOLDEN, tf.uint32))
    keyed = tf.bitwise.bitwise_xor(keys[:, :1], salts[None, :])
    stream = _mix(counter + keys[:, 1])[:, None]
    return _to_uniform(_mix(tf.bitwise.bitwise_xor(keyed, stream)))


def _to_uniform(bits: tf.Tensor) -> tf.Tensor:
    """The top `_UNIFORM_BITS` of uint32 `bits` as a float32 in [0, 1)."""
    top = tf.bitwise.right_shift(bits, 32 - _UNIFORM_BITS)
    return tf.cast(top, tf.float32) * (1.0 / (1 << _UNIFORM_BITS))


def choose_tokens(logits: tf.Tensor, draws: tf.Tensor, settings: SamplingSettings) -> tf.Tensor:
    """The next token of each row, `[rows]` int32.

    Args:
        logits: `[rows, vocabulary]`.
        draws: `[rows, DRAWS_PER_TOKEN]` uniform draws in [0, 1) (`uniform_draws`); unused
            when greedy.
        settings: temperature, top-k, top-p or greedy.
    """
    if settings.greedy:
        return tf.argmax(logits, axis=-1, output_type=tf.int32)
    return sample_tokens(logits, draws, settings.temperature, settings.top_k, settings.top_p)


def row_chooser(settings: SamplingSettings, keys: tf.Tensor, prompt_lengths: tf.Tensor):
    """The token choice of the decode loop (`decode.decode_steps`' `choose`): row r's token at
    position `index` uses its draw for its `index - prompt_lengths[r]`-th new token."""

    def choose(logits: tf.Tensor, index) -> tf.Tensor:
        return choose_tokens(logits, uniform_draws(keys, index - prompt_lengths), settings)

    return choose


def sample_tokens(logits: tf.Tensor, draws: tf.Tensor, temperature, top_k, top_p) -> tf.Tensor:
    """Each row's token drawn from its shaped distribution, `[rows]` int32.

    `temperature` (> 0), `top_k` (0: off) and `top_p` (1: off) may be numbers, or tensors
    fed at run time, as a SavedModel's inputs are.
    """
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
    if not (isinstance(top_k, int) and top_k <= 0):
        probabilities = tf.where(top_k_mask(probabilities, top_k), probabilities, 0.0)
        probabilities /= tf.reduce_sum(probabilities, axis=-1, keepdims=True)
    if isinstance(top_p, int | float) and top_p >= 1:
        return invert_cumulative(probabilities, draws[:, 0])
    return nucleus_draw(probabilities, draws, top_p)


def nucleus_draw(probabilities: tf.Tensor, draws: tf.Tensor, p) -> tf.Tensor:
    """Each row's token drawn from its nucleus (`nucleus.nucleus_mask`), `[rows]` int32.

    A token drawn from the whole distribution is kept when it lies in the nucleus, that is
    when at most `p` of the mass lies on more likely tokens (one pass over the vocabulary);
    a row whose token lies outside takes its next draw (`draws`, `[rows, DRAWS_PER_TOKEN]`).
    What is kept follows the nucleus renormalized, as rejection sampling does, and a row's
    token depends on its own draws alone, not on the rows beside it. Finding the nucleus's
    boundary first takes some thirty passes (`nucleus_mask`); at p = 0.95 most rows keep
    their first token, and choosing the tokens of 20 rows over 50k took 1.2 ms a step
    instead of 6.0 on a CPU. The few rows still outside after `_NUCLEUS_ATTEMPTS` draws (at
    most (1 - p)^8 of them) take a last draw from their nucleus found by bisection.
    """
    cumulative = _blocked_cumulative(probabilities)

    def attempt(number, tokens, kept):
        candidates = _invert(cumulative, tf.gather(draws, number, axis=1))
        take = tf.logical_and(tf.logical_not(kept), in_nucleus(probabilities, candidates, p))
        return number + 1, tf.where(take, candidates, tokens), tf.logical_or(kept, take)

    first = _invert(cumulative, draws[:, 0])
    _, tokens, kept = tf.while_loop(
        lambda number, _, kept: tf.logical_and(
            number < _NUCLEUS_ATTEMPTS, tf.logical_not(tf.reduce_all(kept))
        ),
        attempt,
        (tf.constant(1), first, in_nucleus(probabilities, first, p)),
    )

    def from_the_bisected_nucleus():
        nucleus = tf.where(nucleus_mask(probabilities, p), probabilities, 0.0)
        last = invert_cumulative(nucleus, draws[:, _NUCLEUS_ATTEMPTS])
        return tf.where(kept, tokens, last)

    return tf.cond(tf.reduce_all(kept), lambda: tokens, from_the_bisected_nucleus)


def invert_cumulative(probabilities: tf.Tensor, draws: tf.Tensor) -> tf.Tensor:
    """The first token of each row whose cumulative mass exceeds `draws` times the row's
    mass, `[rows]` int32; a token of no mass is never chosen.

    The cumulative sum runs over blocks of `_CDF_BLOCK` tokens, then within the one block
    that holds the draw: under XLA on a CPU a prefix sum over the whole vocabulary becomes
    some thirty passes over it, a third of the token choice's time at 50k tokens.
    """
    return _invert(_blocked_cumulative(probabilities), draws)


def _blocked_cumulative(probabilities: tf.Tensor) -> tuple:
    """`probabilities` in blocks `[rows, blocks, _CDF_BLOCK]`, and the mass up to the end of
    each block and before its start, `[rows, blocks]`: what every draw from them reuses."""
    rows, vocabulary = tf.shape(probabilities)[0], tf.shape(probabilities)[1]
    blocks = (vocabulary + _CDF_BLOCK - 1) // _CDF_BLOCK
    padded = tf.pad(probabilities, [[0, 0], [0, blocks * _CDF_BLOCK - vocabulary]])
    blocked = tf.reshape(padded, [rows, blocks, _CDF_BLOCK])
    block_mass = tf.reduce_sum(blocked, axis=-1)
    before = tf.cumsum(block_mass, axis=-1, exclusive=True)
    return blocked, tf.cumsum(block_mass, axis=-1), before


def _invert(cumulative: tuple, draws: tf.Tensor) -> tf.Tensor:
    blocked, through, before = cumulative
    target = draws * through[:, -1]
    # The first block whose cumulative mass exceeds the target: one with mass of its own.
    block = tf.reduce_sum(tf.cast(through <= target[:, None], tf.int32), axis=-1)
    block = tf.minimum(block, tf.shape(through)[1] - 1)
    mass_before = tf.gather(before, block, batch_dims=1)
    in_block = tf.gather(blocked, block, batch_dims=1)
    cumulative = mass_before[:, None] + tf.cumsum(in_block, axis=-1)
    offset = tf.reduce_sum(tf.cast(cumulative <= target[:, None], tf.int32), axis=-1)
    # The two sums round apart, so the offset may land on a token of no mass, or past the
    # block: take the first token of mass from the offset on, else the block's last.
    positions = tf.range(_CDF_BLOCK)[None, :]
    has_mass = in_block > 0
    from_offset = tf.logical_and(has_mass, positions >= offset[:, None])
    first_with_mass = tf.reduce_min(tf.where(from_offset, positions, _CDF_BLOCK), axis=-1)
    last_with_mass = tf.reduce_max(tf.where(has_mass, positions, 0), axis=-1)
    return block * _CDF_BLOCK + tf.minimum(first_with_mass, last_with_mass)
