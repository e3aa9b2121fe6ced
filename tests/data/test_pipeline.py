"""The training input: shapes, the next-token shift, reproducible order, resuming, validation."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from neo_keras.data import pipeline
from tests.data.builders import builder_module

BATCH = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory, codeclippy_corpus, tokenizer_dir):
    """A codeclippy build with 8-token blocks: a dozen training examples."""
    codeclippy = builder_module("codeclippy")
    data_dir = tmp_path_factory.mktemp("pipeline_data")
    config = codeclippy.CodeClippyConfig(
        name="t_pipeline", tokenizer=str(tokenizer_dir), sequence_length=8
    )
    builder = codeclippy.Builder(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(codeclippy_corpus))
    )
    return builder


def take(dataset, count):
    return [
        tuple(tf.nest.map_structure(lambda t: t.numpy(), batch))
        for batch in itertools.islice(dataset, count)
    ]


def token_rows(batches):
    return Counter(tuple(row) for x, _, _ in batches for row in x["token_ids"])


def test_batches_have_static_shapes_and_model_dtypes(built):
    dataset = pipeline.make_training_dataset(built, BATCH)
    x_spec, y_spec, weight_spec = dataset.element_spec
    assert x_spec["token_ids"] == tf.TensorSpec([BATCH, 8], tf.int32)
    assert x_spec["padding_mask"] == tf.TensorSpec([BATCH, 8], tf.int32)
    assert y_spec == tf.TensorSpec([BATCH, 8], tf.int32)
    assert weight_spec == tf.TensorSpec([BATCH, 8], tf.float32)


def test_targets_are_the_next_token_weighted_by_its_loss_mask(built):
    raw = {
        tuple(example["input_ids"]): example
        for example in tfds.as_numpy(built.as_dataset(split="train"))
    }
    for x, y, weight in take(pipeline.make_training_dataset(built, BATCH), 6):
        for tokens, target, row_weight, mask in zip(
            x["token_ids"], y, weight, x["padding_mask"], strict=True
        ):
            example = raw[tuple(tokens)]
            np.testing.assert_array_equal(mask, example["attention_mask"] == 1)
            np.testing.assert_array_equal(target, [*example["input_ids"][1:], 0])
            np.testing.assert_array_equal(row_weight, [*example["loss_mask"][1:], 0])


def test_each_epoch_is_every_whole_batch_in_a_new_but_reproducible_order(built):
    num_examples = built.info.splits["train"].num_examples
    steps = pipeline.steps_per_epoch(built, BATCH)
    assert steps == num_examples // BATCH >= 4
    stream = take(pipeline.make_training_dataset(built, BATCH, seed=7), 2 * steps)
    again = take(pipeline.make_training_dataset(built, BATCH, seed=7), 2 * steps)
    other_seed = take(pipeline.make_training_dataset(built, BATCH, seed=8), steps)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(stream, again, strict=True))
    first, second = stream[:steps], stream[steps:]
    all_rows = Counter(
        tuple(e["input_ids"]) for e in tfds.as_numpy(built.as_dataset(split="train"))
    )
    for epoch in (first, second):
        assert len(token_rows(epoch)) == steps * BATCH
        assert token_rows(epoch) <= all_rows
    assert [b[1].tolist() for b in first] != [b[1].tolist() for b in second]
    assert [b[1].tolist() for b in first] != [b[1].tolist() for b in other_seed]


@pytest.mark.parametrize("epochs_done", [0, 1], ids=["first_epoch", "second_epoch"])
def test_resuming_at_a_step_continues_the_same_stream(built, epochs_done):
    start_step = epochs_done * pipeline.steps_per_epoch(built, BATCH) + 2
    stream = take(pipeline.make_training_dataset(built, BATCH, seed=3), start_step + 4)
    resumed = take(pipeline.make_training_dataset(built, BATCH, seed=3, start_step=start_step), 4)
    for expected, got in zip(stream[start_step:], resumed, strict=True):
        np.testing.assert_array_equal(expected[1], got[1])
        np.testing.assert_array_equal(expected[2], got[2])


def test_one_epoch_without_shuffle_reads_in_file_order(built):
    dataset = pipeline.make_training_dataset(built, BATCH, shuffle=False, repeat=False)
    batches = take(dataset, 100)
    assert len(batches) == pipeline.steps_per_epoch(built, BATCH)
    assert take(dataset, 100)[0][1].tolist() == batches[0][1].tolist()


def test_validation_covers_every_example_once_and_fills_with_zero_weight(built):
    num_examples = built.info.splits["validation"].num_examples
    batch = num_examples + 1  # forces a partly filled batch
    batches = take(pipeline.make_validation_dataset(built, batch), 10)
    assert len(batches) == 1
    x, y, weight = batches[0]
    assert x["token_ids"].shape == (batch, 8)
    assert token_rows(batches) - Counter({(0,) * 8: 1}) == Counter(
        tuple(e["input_ids"]) for e in tfds.as_numpy(built.as_dataset(split="validation"))
    )
    assert weight[-1].sum() == 0 and x["padding_mask"][-1].all()
    assert weight[:-1].sum() > 0


def test_a_dataset_that_was_never_built_says_how_to_build_it(tmp_path):
    with pytest.raises(
        pipeline.DatasetNotBuiltError,
        match=r"tfds build data_builders/codeclippy --config=dedup "
        rf"--data_dir={tmp_path} --manual_dir=DIR",
    ):
        pipeline.make_training_dataset("codeclippy/dedup", BATCH, data_dir=str(tmp_path))


def test_a_batch_larger_than_the_split_is_refused(built):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        pipeline.make_training_dataset(built, 10_000)


@pytest.mark.parametrize(
    "make",
    [pipeline.make_training_dataset, pipeline.make_validation_dataset],
    ids=["training", "validation"],
)
def test_input_pipelines_split_each_global_batch_by_replica(built, make):
    """Two hosts of two replicas each: replica r gets rows [r * b, (r + 1) * b) of a batch."""
    global_batch, pipelines, replicas = 4, 2, 4
    whole = take(make(built, global_batch), 3)
    shares = [
        take(
            make(
                built,
                global_batch,
                input_context=tf.distribute.InputContext(
                    num_input_pipelines=pipelines,
                    input_pipeline_id=i,
                    num_replicas_in_sync=replicas,
                ),
            ),
            6,
        )
        for i in range(pipelines)
    ]
    for step, (x, y, weight) in enumerate(whole):
        # Each host yields one batch per local replica, in replica order.
        replica_batches = [shares[i][2 * step + r] for i in range(pipelines) for r in range(2)]
        for part, name in ((1, "y"), (2, "weight")):
            np.testing.assert_array_equal(
                np.concatenate([batch[part] for batch in replica_batches]),
                (y, weight)[part - 1],
                err_msg=name,
            )
        np.testing.assert_array_equal(
            np.concatenate([batch[0]["token_ids"] for batch in replica_batches]), x["token_ids"]
        )
        assert all(batch[1].shape == (1, 8) for batch in replica_batches)
