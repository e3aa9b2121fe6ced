"""Helpers for the TFDS builder tests: importing builders, and configs on a tiny tokenizer."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from unittest import mock

import tensorflow_datasets as tfds

from tests.data.fixtures import BUILDERS, train_tiny_tokenizer


def builder_module(name: str) -> ModuleType:
    """`<name>.<name>_dataset_builder`, with data_builders/ on the import path as pytest has it."""
    if str(BUILDERS) not in sys.path:
        sys.path.insert(0, str(BUILDERS))
    return importlib.import_module(f"{name}.{name}_dataset_builder")


class TinyTokenizerBuilderTest(tfds.testing.DatasetBuilderTestCase):
    """Tests one published config of `DATASET_CLASS`, tokenized with a tokenizer trained here.

    The published configs name a hub tokenizer. For the test, the registered config object
    itself points at a tiny tokenizer and `SEQUENCE_LENGTH` (TFDS refuses a different config
    object under a published name), and is restored afterwards.
    """

    CONFIG_NAME = ""
    SEQUENCE_LENGTH = 256

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._tokenizer_dir = tempfile.TemporaryDirectory()
        tokenizer = train_tiny_tokenizer(Path(cls._tokenizer_dir.name))
        config = cls.DATASET_CLASS.builder_configs[cls.CONFIG_NAME]
        cls._config_patch = mock.patch.multiple(
            config, tokenizer=str(tokenizer), sequence_length=cls.SEQUENCE_LENGTH
        )
        cls._config_patch.start()
        cls.BUILDER_CONFIG_NAMES_TO_TEST = [cls.CONFIG_NAME]

    @classmethod
    def tearDownClass(cls):
        cls._config_patch.stop()
        cls._tokenizer_dir.cleanup()
        super().tearDownClass()
