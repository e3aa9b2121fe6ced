"""Builds both code_search_net configs from dummy_data/ (extracted zips) with a tiny tokenizer.

Every dummy shard is one file of a few functions, which the test's sequence length holds, so
each shard is one block.
"""

import tensorflow_datasets as tfds

from tests.data import builders

from . import code_search_net_dataset_builder

_LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")


class PythonConfigTest(builders.TinyTokenizerBuilderTest):
    DATASET_CLASS = code_search_net_dataset_builder.Builder
    CONFIG_NAME = "python"
    SPLITS = {"train": 1, "validation": 1, "test": 1}


class AllConfigTest(builders.TinyTokenizerBuilderTest):
    DATASET_CLASS = code_search_net_dataset_builder.Builder
    CONFIG_NAME = "all"
    SPLITS = {"train": 6, "validation": 6, "test": 6}


class DownloadedZipsTest(builders.TinyTokenizerBuilderTest):
    """Without extracted zips in the manual dir, every language's zip is downloaded.

    The URLs must be in checksums.tsv, which the base class checks.
    """

    DATASET_CLASS = code_search_net_dataset_builder.Builder
    CONFIG_NAME = "all"
    SPLITS = {"train": 6, "validation": 6, "test": 6}
    # The manual dir becomes this builder's folder, which holds no shards; each "extracted
    # download" is dummy_data/.
    EXAMPLE_DIR = str(code_search_net_dataset_builder.Builder.code_path.parent)
    DL_EXTRACT_RESULT = {language: "dummy_data" for language in _LANGUAGES}


if __name__ == "__main__":
    tfds.testing.test_main()
