"""Builds every apps config from dummy_data/ (an extracted release) with a tiny tokenizer.

The dummy release has train problems 0000 (two solutions), 0001 (one) and 0002 (one short
solution, one too long for the test's sequence length), and test problems 0000 and 0001 (one
solution each). Validation holds out train/0001 in `train` and test/0001 in `train_and_test`.
"""

import tensorflow_datasets as tfds

from tests.data import builders

from . import apps_dataset_builder


class TrainConfigTest(builders.TinyTokenizerBuilderTest):
    DATASET_CLASS = apps_dataset_builder.Builder
    CONFIG_NAME = "train"
    SEQUENCE_LENGTH = 192
    SPLITS = {"train": 3, "validation": 1}


class TrainAndTestConfigTest(builders.TinyTokenizerBuilderTest):
    DATASET_CLASS = apps_dataset_builder.Builder
    CONFIG_NAME = "train_and_test"
    SEQUENCE_LENGTH = 192
    SPLITS = {"train": 5, "validation": 1}


class EvalConfigTest(builders.TinyTokenizerBuilderTest):
    DATASET_CLASS = apps_dataset_builder.Builder
    CONFIG_NAME = "eval"
    SPLITS = {"test": 2}


class DownloadedReleaseTest(builders.TinyTokenizerBuilderTest):
    """Without the release in the manual dir, the tarball is downloaded and extracted."""

    DATASET_CLASS = apps_dataset_builder.Builder
    CONFIG_NAME = "train"
    SEQUENCE_LENGTH = 192
    SPLITS = {"train": 3, "validation": 1}
    # The manual dir becomes this builder's folder, where no release is; the "extracted
    # download" is dummy_data/.
    EXAMPLE_DIR = str(apps_dataset_builder.Builder.code_path.parent)
    DL_EXTRACT_RESULT = "dummy_data"
    # checksums.tsv cannot list the tarball until someone with network access registers it.
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
