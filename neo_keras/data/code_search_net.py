"""The CodeSearchNet Challenge release: where its gzip-compressed JSON lines are, per language.

Each language's zip extracts to `<language>/final/jsonl/{train,valid,test}/*.jsonl.gz`; every
line is a function with its source in `whole_func_string`.
"""

from __future__ import annotations

from etils import epath

from neo_keras.data.corpus_format import GZIP_SUFFIX, list_shards

LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")
TEXT_FIELD = "whole_func_string"
# Release folder name -> TFDS split name.
SPLIT_FOLDERS = {"train": "train", "valid": "validation", "test": "test"}


def release_url(language: str) -> str:
    """Where the release zip of `language` is downloaded from."""
    return f"https://s3.amazonaws.com/code-search-net/CodeSearchNet/v2/{language}.zip"


def language_shards(root: epath.PathLike, language: str) -> dict[str, list[epath.Path]]:
    """The shards of `language` under an extracted release `root`, per TFDS split name.

    Empty lists when `root` does not hold that language.
    """
    base = epath.Path(root) / language / "final" / "jsonl"
    return {split: list_shards(base / folder, f"*{GZIP_SUFFIX}")
            for folder, split in SPLIT_FOLDERS.items()}
