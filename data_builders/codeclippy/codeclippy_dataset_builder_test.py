"""Builds every codeclippy config from dummy_data/ with a tokenizer trained for the test.

The sequence length holds a whole dummy shard, so each shard with a kept file is one block.
"""

import tensorflow_datasets as tfds

from tests.data import builders

from . import codeclippy_dataset_builder


class FullConfigTest(builders.TinyTokenizerBuilderTest):
    """Every file: one block per train shard."""

    DATASET_CLASS = codeclippy_dataset_builder.Builder
    CONFIG_NAME = "full"
    SPLITS = {"train": 3, "validation": 1, "test": 1}


class DedupConfigTest(builders.TinyTokenizerBuilderTest):
    """The reformatted `add` and the copy of a validation file are gone; shard 2 empties."""

    DATASET_CLASS = codeclippy_dataset_builder.Builder
    CONFIG_NAME = "dedup"
    SPLITS = {"train": 2, "validation": 1, "test": 1}


class DedupOnePercentConfigTest(builders.TinyTokenizerBuilderTest):
    """Only the two sampled functions (both in shard 0) remain in train."""

    DATASET_CLASS = codeclippy_dataset_builder.Builder
    CONFIG_NAME = "dedup_1pct"
    SPLITS = {"train": 1, "validation": 1, "test": 1}


if __name__ == "__main__":
    tfds.testing.test_main()
