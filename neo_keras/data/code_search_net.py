"""The CodeSearchNet Challenge release: where its gzip-compressed JSON lines are, per language.

Each language's release zip (`<language>.zip`) extracts to
`<language>/final/jsonl/{train,valid,test}/*.jsonl.gz`, beside two pickles this reader does not
need. Every line is one function with the fields `repo, path, func_name, original_string,
language, code, code_tokens, docstring, docstring_tokens, sha, partition, url`.

The text trained on is `original_string`: the function exactly as it stands in its file, with
its docstring or comment, which is what a code model is asked to write. (`code` is the same
function parsed for the retrieval task, and the tokens are that parse split up.) The Hugging
Face `code_search_net` loader renames `original_string` to `whole_func_string`; lines of that
export are read by that name.
"""

from __future__ import annotations

from etils import epath

from neo_keras.data.corpus_format import GZIP_SUFFIX, list_shards

LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")
# The release's name first, then the Hugging Face export's.
TEXT_FIELDS = ("original_string", "whole_func_string")
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
    return {
        split: list_shards(base / folder, f"*{GZIP_SUFFIX}")
        for folder, split in SPLIT_FOLDERS.items()
    }
