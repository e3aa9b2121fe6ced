"""The train step: global token-weighted loss, strategy and accumulation equivalences."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
from neo_keras.training.lm_trainer import CausalLMTrainer

VOCABULARY, LENGTH, BATCH = 40, 8, 4


def tiny_causal_lm() -> GPTNeoCausalLM:
    keras.utils.set_random_seed(0)
    backbone = GPTNeoBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        window_size=3,
        max_sequence_length=LENGTH,
        initializer_range=0.2,
    )
    return GPTNeoCausalLM(backbone)


@pytest.fixture(scope="module")
def reference_weights():
    return tiny_causal_lm().get_weights()


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, VOCABULARY, (BATCH, LENGTH)).astype("int32")
    labels = np.roll(token_ids, -1, axis=1)
    weights = np.zeros((BATCH, LENGTH), "float32")
    # Uneven targets: the first replica's rows have 1 and 2 targets, the second's 7 and 5.
    for row, count in enumerate([1, 2, 7, 5]):
        weights[row, :count] = 1.0
    # int32, not bool: Keras' first-batch build under MirroredStrategy averages the inputs
    # across replicas, which fails on booleans.
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype="int32")}
    return x, labels, weights


def train_one_step(strategy, weights, batch, micro_batch_size=None, clip_norm=None, **options):
    """Weights after one SGD step with learning rate 1 (so the update is the gradient)."""
    with strategy.scope():
        causal_lm = tiny_causal_lm()
        causal_lm.set_weights(weights)
        trainer = CausalLMTrainer(
            causal_lm,
            micro_batch_size=micro_batch_size,
            clip_norm=clip_norm,
            **{"xla": False, **options},
        )
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    dataset = tf.data.Dataset.from_tensors(batch)
    history = trainer.fit(dataset, epochs=1, verbose=0)
    return causal_lm.get_weights(), history.history["loss"][0]


def expected_loss(weights, batch) -> float:
    causal_lm = tiny_causal_lm()
    causal_lm.set_weights(weights)
    x, labels, sample_weight = batch
    logits = np.asarray(causal_lm(x), dtype="float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    token_loss = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    return float((token_loss * sample_weight).sum() / sample_weight.sum())


def assert_same_weights(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=1e-5, rtol=0)


def test_loss_is_the_token_weighted_mean_of_the_global_batch(reference_weights, batch):
    _, loss = train_one_step(tf.distribute.get_strategy(), reference_weights, batch)
    assert loss == pytest.approx(expected_loss(reference_weights, batch), abs=1e-5)


@pytest.mark.parametrize("clip_norm", [None, 0.05], ids=["unclipped", "clipped"])
def test_mirrored_replicas_equal_one_device(reference_weights, batch, clip_norm):
    single, single_loss = train_one_step(
        tf.distribute.get_strategy(), reference_weights, batch, clip_norm=clip_norm
    )
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored, mirrored_loss = train_one_step(
        mirrored_strategy, reference_weights, batch, clip_norm=clip_norm
    )
    assert mirrored_loss == pytest.approx(single_loss, abs=1e-5)
    assert_same_weights(mirrored, single)
    # The step moved the weights: the comparison is not between two untouched copies.
    assert max(np.abs(a - b).max() for a, b in zip(single, reference_weights, strict=True)) > 1e-3


def test_accumulated_micro_batches_equal_the_full_batch(reference_weights, batch):
    full, full_loss = train_one_step(tf.distribute.get_strategy(), reference_weights, batch)
    accumulated, accumulated_loss = train_one_step(
        tf.distribute.get_strategy(), reference_weights, batch, micro_batch_size=1
    )
    assert accumulated_loss == pytest.approx(full_loss, abs=1e-5)
    assert_same_weights(accumulated, full)


@pytest.mark.parametrize("chunk, micro", [(2, None), (4, 2)], ids=["chunks", "chunks_and_micro"])
def test_a_chunked_lm_head_loss_trains_as_the_whole_one(reference_weights, batch, chunk, micro):
    default = tf.distribute.get_strategy()
    full, full_loss = train_one_step(default, reference_weights, batch)
    chunked, chunked_loss = train_one_step(
        default, reference_weights, batch, micro, loss_chunk_size=chunk, xla=True
    )
    assert chunked_loss == pytest.approx(full_loss, abs=1e-5)
    assert_same_weights(chunked, full)


def test_a_loss_chunk_that_does_not_divide_the_sequence_is_refused(reference_weights, batch):
    with pytest.raises(ValueError, match=r"length \(8\) is not a multiple of the loss chunk"):
        train_one_step(tf.distribute.get_strategy(), reference_weights, batch, loss_chunk_size=3)


def test_accumulation_under_mirrored_equals_the_full_batch(reference_weights, batch):
    full, _ = train_one_step(tf.distribute.get_strategy(), reference_weights, batch)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    accumulated, _ = train_one_step(strategy, reference_weights, batch, micro_batch_size=1)
    assert_same_weights(accumulated, full)


def test_steps_per_execution_under_mirrored(reference_weights, batch):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for steps_per_execution, chosen in [(1, tf.distribute.get_strategy()), (3, strategy)]:
        with chosen.scope():
            causal_lm = tiny_causal_lm()
            causal_lm.set_weights(reference_weights)
            trainer = CausalLMTrainer(causal_lm, xla=False)
            trainer.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.5),
                steps_per_execution=steps_per_execution,
            )
        dataset = tf.data.Dataset.from_tensors(batch).repeat()
        trainer.fit(dataset, steps_per_epoch=6, epochs=1, verbose=0)
        assert int(trainer.optimizer.iterations.numpy()) == 6
        results[steps_per_execution] = causal_lm.get_weights()
    assert_same_weights(results[3], results[1])
