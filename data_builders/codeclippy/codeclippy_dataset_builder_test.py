"""Builds every codeclippy config from dummy_data/ with a tokenizer trained for the test."""

import tempfile
from pathlib import Path
from unittest import mock

import tensorflow_datasets as tfds

from tests.data.fixtures import train_tiny_tokenizer

from . import codeclippy_dataset_builder

# Long enough for a whole dummy shard, so each shard with a kept file is one block.
SEQUENCE_LENGTH = 256


class _CodeClippyConfigTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = codeclippy_dataset_builder.Builder
    CONFIG_NAME = "full"
    test_session = None  # TensorFlow's placeholder, which would only ever be skipped

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._tokenizer_dir = tempfile.TemporaryDirectory()
        tokenizer = train_tiny_tokenizer(Path(cls._tokenizer_dir.name))
        # The published configs name a hub tokenizer; for the test, the same config object
        # points at the tiny one (TFDS refuses a different config object under the same name).
        config = cls.DATASET_CLASS.builder_configs[cls.CONFIG_NAME]
        cls._config_patch = mock.patch.multiple(
            config, tokenizer=str(tokenizer), sequence_length=SEQUENCE_LENGTH)
        cls._config_patch.start()
        cls.BUILDER_CONFIG_NAMES_TO_TEST = [cls.CONFIG_NAME]

    @classmethod
    def tearDownClass(cls):
        cls._config_patch.stop()
        cls._tokenizer_dir.cleanup()
        super().tearDownClass()


class FullConfigTest(_CodeClippyConfigTest):
    """Every file: one block per train shard."""

    CONFIG_NAME = "full"
    SPLITS = {"train": 3, "validation": 1, "test": 1}


class DedupConfigTest(_CodeClippyConfigTest):
    """The reformatted `add` and the copy of a validation file are gone; shard 2 empties."""

    CONFIG_NAME = "dedup"
    SPLITS = {"train": 2, "validation": 1, "test": 1}


class DedupOnePercentConfigTest(_CodeClippyConfigTest):
    """Only the two sampled functions (both in shard 0) remain in train."""

    CONFIG_NAME = "dedup_1pct"
    SPLITS = {"train": 1, "validation": 1, "test": 1}


del _CodeClippyConfigTest  # the base class has no SPLITS and is not a test of its own

if __name__ == "__main__":
    tfds.testing.test_main()
