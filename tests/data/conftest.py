"""Shared data-layer fixtures: a tiny tokenizer and the source fixtures, made once a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from neo_keras.data.tokenizer import TextTokenizer, load_tokenizer
from tests.data import fixtures


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    return fixtures.train_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir) -> TextTokenizer:
    return load_tokenizer(str(tokenizer_dir))


@pytest.fixture(scope="session")
def codeclippy_corpus(tmp_path_factory) -> Path:
    return fixtures.write_codeclippy_corpus(tmp_path_factory.mktemp("codeclippy_corpus"))


@pytest.fixture(scope="session")
def apps_release(tmp_path_factory) -> Path:
    return fixtures.write_apps_tree(tmp_path_factory.mktemp("apps_release"))
