"""Local attention in bands, and decoding over the cache in blocks, equal the full masked
computation."""

from __future__ import annotations

import numpy as np
import pytest

from neo_keras.models.gpt_neo import kv_cache
from neo_keras.models.gpt_neo.attention import GPTNeoAttention


@pytest.mark.parametrize(
    "length, window", [(16, 4), (13, 4), (9, 8), (33, 5)], ids=["blocks", "tail", "two", "odd"]
)
def test_banded_local_attention_equals_the_full_computation(length, window):
    rng = np.random.default_rng(length)
    layer = GPTNeoAttention(num_heads=2, attention_type="local", window_size=window)
    hidden = rng.normal(size=(3, length, 8)).astype("float32")
    padding_mask = np.ones((3, length), bool)
    padding_mask[1, :3] = False  # left padding
    padding_mask[2, -4:] = False  # right padding
    assert layer._banded(length)
    banded = np.asarray(layer(hidden, padding_mask=padding_mask))
    layer._banded = lambda _: False
    full = np.asarray(layer(hidden, padding_mask=padding_mask))
    # Every real position sees itself; padded queries are never read.
    np.testing.assert_allclose(banded[padding_mask], full[padding_mask], atol=2e-6, rtol=0)
    assert np.abs(full).max() > 0.1


def test_short_sequences_and_global_layers_use_the_full_computation():
    assert not GPTNeoAttention(num_heads=2, attention_type="local", window_size=8)._banded(8)
    assert not GPTNeoAttention(num_heads=2, attention_type="global", window_size=4)._banded(64)


@pytest.mark.parametrize("attention_type, window", [("global", 256), ("local", 5), ("local", 70)])
def test_decoding_over_cache_blocks_equals_the_full_computation(attention_type, window):
    """A prompt, then one position at a time across block boundaries: each step reads only
    the blocks it sees (a local layer skips those before its window), and its output equals
    attention over the whole sequence at once."""
    length, prompt = 200, 60
    rng = np.random.default_rng(window)
    layer = GPTNeoAttention(num_heads=2, attention_type=attention_type, window_size=window)
    hidden = rng.normal(size=(2, length, 8)).astype("float32")
    full = np.asarray(layer(hidden))
    cache = kv_cache.empty(2, 2, length, 4, "float32")
    assert cache[0].shape == (4, 2, 2, 4, kv_cache.BLOCK_POSITIONS)
    assert cache[1].shape == (4, 2, 2, kv_cache.BLOCK_POSITIONS, 4)
    output, cache = layer(hidden[:, :prompt], cache=cache, cache_update_index=0)
    outputs = [np.asarray(output)]
    for index in range(prompt, length):
        output, cache = layer(hidden[:, index : index + 1], cache=cache, cache_update_index=index)
        outputs.append(np.asarray(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("attention_type", ["global", "local"])
def test_a_decoding_step_does_not_read_the_blocks_it_cannot_see(attention_type):
    """NaN in the blocks past the last position, and (local) before the window, would reach
    the output of a step that read or multiplied them."""
    length, prompt, end = 256, 133, 192  # a local step at 133 sees 129-133: block 2 alone
    rng = np.random.default_rng(7)
    layer = GPTNeoAttention(num_heads=2, attention_type=attention_type, window_size=5)
    hidden = rng.normal(size=(2, length, 8)).astype("float32")
    full = np.asarray(layer(hidden))
    cache = kv_cache.empty(2, 2, length, 4, "float32")
    _, cache = layer(hidden[:, :prompt], cache=cache, cache_update_index=0)
    unseen = [3] if attention_type == "global" else [0, 1, 3]
    cache = tuple(np.asarray(part).copy() for part in cache)
    for part in cache:
        part[unseen] = np.nan
    outputs = []
    for index in range(prompt, end):
        output, cache = layer(hidden[:, index : index + 1], cache=cache, cache_update_index=index)
        outputs.append(np.asarray(output))
    np.testing.assert_allclose(
        np.concatenate(outputs, axis=1), full[:, prompt:end], atol=2e-5, rtol=1e-5
    )


def test_a_step_sees_the_blocks_up_to_its_own_and_a_local_layer_those_of_its_window():
    assert [int(b) for b in kv_cache.visible_blocks(0)] == [0, 1]
    assert [int(b) for b in kv_cache.visible_blocks(130)] == [0, 3]
    assert [int(b) for b in kv_cache.visible_blocks(130, "local", 256)] == [0, 3]
    assert [int(b) for b in kv_cache.visible_blocks(130, "local", 3)] == [2, 3]
    assert [int(b) for b in kv_cache.visible_blocks(130, "local", 4)] == [1, 3]
    assert [int(b) for b in kv_cache.visible_blocks(400, "local", 256)] == [2, 7]


@pytest.mark.parametrize("attention_type, window", [("global", 256), ("local", 5), ("local", 70)])
def test_rows_at_own_positions_equal_each_row_alone(attention_type, window):
    """Rows copying two prompts of different lengths, each moved to end at the same column
    and decoded from there a column a step across block boundaries, each row at a position
    of its own: every row's outputs equal attention over that row's whole sequence."""
    prompt_lengths, bucket, new = np.array([7, 100]), 128, 90
    sources = np.array([0, 1, 1, 0], "int32")
    rng = np.random.default_rng(window)
    layer = GPTNeoAttention(num_heads=2, attention_type=attention_type, window_size=window)
    prompts = rng.normal(size=(2, bucket, 8)).astype("float32")
    rows = len(sources)
    sequences = rng.normal(size=(rows, bucket + new, 8)).astype("float32")
    lengths = prompt_lengths[sources]
    for row, (source, length) in enumerate(zip(sources, lengths, strict=True)):
        sequences[row, :length] = prompts[source, :length]
    prompt_cache = kv_cache.empty(2, 2, bucket + new, 4, "float32")
    _, prompt_cache = layer(prompts, cache=prompt_cache, cache_update_index=0)
    end = lengths.max()
    cache = kv_cache.rows_at_own_positions(prompt_cache, sources, end - lengths)
    assert cache["keys"].shape == (4, rows, 2, 4, kv_cache.BLOCK_POSITIONS)
    steps = []
    for index in range(end, end + new):
        inputs = sequences[np.arange(rows), index - end + lengths][:, None]
        output, cache = layer(inputs, cache=cache, cache_update_index=index)
        steps.append(np.asarray(output)[:, 0])
    for row, length in enumerate(lengths):
        alone = np.asarray(layer(sequences[row : row + 1, : length + new]))[0]
        decoded = np.stack([step[row] for step in steps])
        np.testing.assert_allclose(decoded, alone[length:], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "attention_type, window, aligned, new",
    [
        ("global", 256, False, 9),
        ("global", 256, True, 9),
        ("local", 5, False, 9),
        ("local", 5, True, 9),
        ("local", 5, False, 136),  # three own blocks, rows at different offsets in them
    ],
)
def test_decoding_over_shared_prompts_equals_each_row_alone(attention_type, window, aligned, new):
    """Rows continuing two prompts of different lengths, decoded together, each step reading
    the prompts once for all rows: every row's own positions equal attention over that row's
    whole sequence. Decoded from the shortest prompt on, or with every prompt ending at the
    same step (`prompt_ends`), each row then at a position of its own."""
    prompt_lengths, bucket, rows = np.array([7, 12]), 16, 5
    assert kv_cache.own_blocks(new)[0] == (1 if new < 64 else 3)
    sources = np.array([0, 1, 1, 0, 1], "int32")
    rng = np.random.default_rng(window)
    layer = GPTNeoAttention(num_heads=2, attention_type=attention_type, window_size=window)
    prompts = rng.normal(size=(2, bucket, 8)).astype("float32")
    sequences = rng.normal(size=(rows, bucket + new, 8)).astype("float32")
    lengths = prompt_lengths[sources].astype("int32")
    for row, (source, length) in enumerate(zip(sources, lengths, strict=True)):
        sequences[row, :length] = prompts[source, :length]
    prompt_cache = kv_cache.empty(2, 2, bucket, 4, "float32")
    _, prompt_cache = layer(prompts, cache=prompt_cache, cache_update_index=0)
    # Step `index` runs row r's position `index - shift[r]`.
    shift = lengths.max() - lengths if aligned else np.zeros_like(lengths)
    ends = lengths + shift
    cache = kv_cache.shared_prompts(prompt_cache, sources, lengths, new, ends)
    steps = {}
    for index in range(ends.min() - 1, ends.max() + new - 1):
        inputs = sequences[np.arange(rows), np.clip(index - shift, 0, None)][:, None]
        output, cache = layer(inputs, cache=cache, cache_update_index=index)
        steps[index] = np.asarray(output)[:, 0]
    for row, length in enumerate(lengths):
        alone = np.asarray(layer(sequences[row : row + 1, : length + new - 1]))[0]
        decoded = np.stack(
            [steps[i + shift[row]][row] for i in range(length - 1, length + new - 1)]
        )
        np.testing.assert_allclose(decoded, alone[length - 1 :], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "attention_type, poisoned, end",
    [("global", {0: [2, 3]}, 80), ("local", {0: [3], 140: [1]}, 150)],
)
def test_a_shared_prompt_step_reads_only_the_own_blocks_its_rows_reach(
    attention_type, poisoned, end
):
    """NaN in the own blocks that no row has reached, and (local) in one that the window has
    left behind, would reach the output of a step that read or multiplied them. `poisoned`:
    at which own position which blocks turn to NaN; steps run up to own position `end`."""
    prompt, bucket, new = 10, 16, 256
    assert kv_cache.own_blocks(new) == (4, 64)
    rng = np.random.default_rng(5)
    layer = GPTNeoAttention(num_heads=2, attention_type=attention_type, window_size=5)
    hidden = rng.normal(size=(1, prompt + new, 8)).astype("float32")
    full = np.asarray(layer(hidden))[0]
    prompt_cache = kv_cache.empty(1, 2, bucket, 4, "float32")
    _, prompt_cache = layer(hidden[:, :prompt], cache=prompt_cache, cache_update_index=0)
    cache = kv_cache.shared_prompts(prompt_cache, [0], [prompt], new)
    outputs = []
    for offset in range(end):
        for name in ("keys", "values"):
            cache[name] = tuple(
                np.full_like(block, np.nan) if number in poisoned.get(offset, ()) else block
                for number, block in enumerate(cache[name])
            )
        index = prompt + offset
        output, cache = layer(hidden[:, index : index + 1], cache=cache, cache_update_index=index)
        outputs.append(np.asarray(output)[0, 0])
    np.testing.assert_allclose(np.stack(outputs), full[prompt : prompt + end], atol=2e-5, rtol=1e-5)
