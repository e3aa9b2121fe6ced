"""Token choice: each row's draws are its own, and tokens follow the shaped distribution."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from neo_keras.generation.token_choice import (
    DRAWS_PER_TOKEN,
    SamplingSettings,
    choose_tokens,
    invert_cumulative,
    row_keys,
    sample_tokens,
    uniform_draws,
)

PROBABILITIES = np.array([0.5, 0.3, 0.1, 0.06, 0.04], "float32")


def draws_for(rows: int, step: int = 0, seed: int = 1) -> np.ndarray:
    keys = row_keys(seed, [f"task/{r % 7}" for r in range(rows)], [r // 7 for r in range(rows)])
    return np.asarray(uniform_draws(tf.constant(keys), tf.fill([rows], step)))


def frequencies(settings: SamplingSettings, rows: int = 4000) -> np.ndarray:
    logits = np.log(np.tile(PROBABILITIES, (rows, 1)))
    tokens = np.asarray(choose_tokens(tf.constant(logits), tf.constant(draws_for(rows)), settings))
    return np.bincount(tokens, minlength=len(PROBABILITIES)) / rows


def test_a_rows_draws_depend_on_its_key_and_step_only():
    keys = row_keys(0, ["HumanEval/0", "HumanEval/0", "HumanEval/1"], [0, 1, 0])
    assert len({tuple(k) for k in keys}) == 3
    # The same key and step draw the same, wherever the row sits and whatever is beside it.
    alone = uniform_draws(tf.constant(keys[2:]), tf.constant([5]))
    together = uniform_draws(tf.constant(keys[::-1]), tf.constant([5, 5, 5]))
    np.testing.assert_array_equal(np.asarray(alone)[0], np.asarray(together)[0])
    compiled = tf.function(uniform_draws, jit_compile=True)(tf.constant(keys), tf.constant([5] * 3))
    np.testing.assert_array_equal(np.asarray(compiled), np.asarray(together)[::-1])
    assert not np.array_equal(draws_for(3, step=0), draws_for(3, step=1))
    assert not np.array_equal(draws_for(3, seed=1), draws_for(3, seed=2))


def test_draws_are_uniform_and_apart():
    draws = draws_for(20000)
    assert draws.shape == (20000, DRAWS_PER_TOKEN)
    assert draws.min() >= 0.0 and draws.max() < 1.0
    for column in draws.T:
        counts = np.histogram(column, bins=10, range=(0, 1))[0]
        assert counts.min() > 1800 and counts.max() < 2200
    # A row's draws for one token are not tied to each other.
    correlations = np.corrcoef(draws.T)[np.triu_indices(DRAWS_PER_TOKEN, 1)]
    assert np.abs(correlations).max() < 0.03


@pytest.mark.parametrize(
    "settings, expected",
    [
        (SamplingSettings(), PROBABILITIES),
        (SamplingSettings(top_k=2), [0.625, 0.375, 0, 0, 0]),
        (SamplingSettings(top_p=0.7), [0.625, 0.375, 0, 0, 0]),
        (SamplingSettings(top_p=0.95, top_k=2), [0.625, 0.375, 0, 0, 0]),
        # Top-p over the top-k renormalized: 0.889 of the top 3 lies before the third token.
        (SamplingSettings(top_p=0.8, top_k=3), [0.625, 0.375, 0, 0, 0]),
        (SamplingSettings(temperature=0.5), PROBABILITIES**2 / (PROBABILITIES**2).sum()),
        (SamplingSettings(greedy=True), [1, 0, 0, 0, 0]),
    ],
)
def test_tokens_follow_the_shaped_distribution(settings, expected):
    np.testing.assert_allclose(frequencies(settings), expected, atol=0.03)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingSettings(top_p=1.5)
    with pytest.raises(ValueError, match="top_k"):
        SamplingSettings(top_k=-1)


def kept_tokens(logits: np.ndarray, settings: SamplingSettings) -> np.ndarray:
    """The tokens a row can draw: those that some draw in [0, 1) picks."""
    rows, vocabulary = logits.shape
    grid = np.linspace(0, 1, 4001, endpoint=False, dtype="float32")
    kept = np.zeros((rows, vocabulary), bool)
    for draw in grid[:: len(grid) // 400]:
        tokens = choose_tokens(
            tf.constant(logits), tf.fill([rows, DRAWS_PER_TOKEN], draw), settings
        )
        kept[np.arange(rows), np.asarray(tokens)] = True
    return kept


@pytest.mark.parametrize("top_k, top_p", [(0, 0.5), (5, 1.0), (8, 0.7), (3, 0.95)])
def test_the_kept_tokens_are_those_of_transformers_logits_processors(top_k, top_p):
    import torch
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = np.random.default_rng(top_k).normal(scale=2.0, size=(6, 40)).astype("float32")
    scores = torch.from_numpy(logits.copy())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    expected = np.isfinite(scores.numpy())
    settings = SamplingSettings(top_k=top_k, top_p=top_p)
    # Every token drawn is one transformers keeps, and the most likely ones are all drawn.
    kept = kept_tokens(logits, settings)
    assert not (kept & ~expected).any()
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    likely = expected & (probabilities > 0.01)
    assert (kept | ~likely).all()


def test_settings_given_as_tensors_choose_what_numbers_do():
    logits = tf.constant(np.random.default_rng(0).normal(size=(64, 50)).astype("float32"))
    draws = tf.constant(draws_for(64))
    for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.6), (1.0, 4, 0.9)]:
        numbers = sample_tokens(logits, draws, temperature, top_k, top_p)
        tensors = tf.function(sample_tokens, jit_compile=True)(
            logits, draws, tf.constant(temperature), tf.constant(top_k), tf.constant(top_p)
        )
        np.testing.assert_array_equal(np.asarray(numbers), np.asarray(tensors))


def test_the_blocked_inverse_cumulative_picks_the_token_whose_interval_holds_the_draw():
    """Vocabularies off the block size, whole blocks of no mass, and draws near 0 and 1."""
    rng = np.random.default_rng(3)
    rows, vocabulary = 64, 1000
    probabilities = rng.dirichlet(np.full(vocabulary, 0.05), size=rows)
    probabilities[rng.random((rows, vocabulary)) < 0.5] = 0.0  # masked, as top-p leaves them
    probabilities[:8, 256:768] = 0.0
    probabilities = (probabilities / probabilities.sum(-1, keepdims=True)).astype("float32")
    draws = rng.random(rows).astype("float32")
    draws[:4] = [0.0, 1e-7, 1 - 2**-24, 0.5]
    tokens = np.asarray(invert_cumulative(tf.constant(probabilities), tf.constant(draws)))
    mass = probabilities.astype("float64")
    cumulative = np.cumsum(mass, axis=-1)
    target = draws * cumulative[:, -1]
    chosen = np.arange(rows), tokens
    assert (mass[chosen] > 0).all()
    tolerance = 1e-6
    assert (cumulative[chosen] - mass[chosen] <= target + tolerance).all()
    assert (cumulative[chosen] > target - tolerance).all()
    compiled = tf.function(invert_cumulative, jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.constant(probabilities), tf.constant(draws)), tokens)


def test_a_draw_on_a_block_boundary_never_picks_a_token_of_no_mass():
    """Block sums and the mass before a block round apart: found by search, a draw whose
    target lies between them must still pick the next token of mass, never one of none."""
    rng = np.random.default_rng(0)
    while True:  # a and b with (a + b) - b rounding above a in float32
        a = np.float32(rng.random())
        b = np.float32(1) - a
        if np.float32(np.float32(a + b) - b) > a:
            break
    total = np.float32(a + b)
    draw = np.float32(a / total)
    while np.float32(draw * total) < a:
        draw = np.nextafter(draw, np.float32(1))
    probabilities = np.zeros((1, 600), "float32")
    probabilities[0, 0], probabilities[0, 257] = a, b  # token 256 starts block 1, no mass
    for run in (invert_cumulative, tf.function(invert_cumulative, jit_compile=True)):
        token = int(run(tf.constant(probabilities), tf.constant([draw]))[0])
        assert probabilities[0, token] > 0, token


def nucleus_of(probabilities: np.ndarray, p: float) -> np.ndarray:
    """The tokens with at most `p` of their row's mass on more likely tokens."""
    above = (probabilities[:, None, :] > probabilities[:, :, None]) * probabilities[:, None, :]
    return above.sum(-1) <= p


def test_a_rows_nucleus_token_does_not_depend_on_the_rows_beside_it():
    """A row drawn outside its nucleus draws again; the rows that kept their token keep it,
    however many draws the others take."""
    rng = np.random.default_rng(5)
    flat = rng.normal(scale=0.1, size=(12, 300))  # a small nucleus of a flat row: many draws
    peaked = rng.normal(scale=4.0, size=(12, 300))
    logits = tf.constant(np.concatenate([peaked, flat]).astype("float32"))
    draws = draws_for(24)
    for run in (sample_tokens, tf.function(sample_tokens, jit_compile=True)):
        together = np.asarray(run(logits, tf.constant(draws), 1.0, 0, 0.2))
        alone = [
            int(run(logits[r : r + 1], tf.constant(draws[r : r + 1]), 1.0, 0, 0.2)[0])
            for r in range(24)
        ]
        np.testing.assert_array_equal(together, alone)
    probabilities = np.asarray(tf.nn.softmax(logits))
    assert nucleus_of(probabilities, 0.2)[np.arange(24), together].all()


def test_rows_outside_the_nucleus_at_every_draw_still_take_a_token_of_it():
    """A nucleus of one token in a flat distribution of 400: most rows miss it at all eight
    draws from the whole distribution, and take it from the nucleus found by bisection."""
    logits = np.zeros((64, 400), "float32")
    logits[:, 7] = 0.5
    for run in (sample_tokens, tf.function(sample_tokens, jit_compile=True)):
        tokens = run(tf.constant(logits), tf.constant(draws_for(64)), 1.0, 0, 0.001)
        assert np.asarray(tokens).tolist() == [7] * 64


def test_rows_that_reach_the_bisection_draw_from_the_nucleus_renormalized():
    """Three likely tokens among 400 hold 4% of the mass: most rows miss them at all eight
    draws, and the draw from the nucleus found by bisection must still follow their odds."""
    weights = np.ones(400)
    weights[-3:] = [8, 6, 4]
    rows = 8000
    logits = np.tile(np.log(weights / weights.sum()), (rows, 1)).astype("float32")
    tokens = np.asarray(
        sample_tokens(tf.constant(logits), tf.constant(draws_for(rows)), 1.0, 0, 0.04)
    )
    frequencies = np.bincount(tokens, minlength=400)[-3:] / rows
    assert frequencies.sum() == 1.0
    np.testing.assert_allclose(frequencies, np.array([8, 6, 4]) / 18, atol=0.02)
