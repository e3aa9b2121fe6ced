"""Loading the tokenizer a dataset is built with: a hub id, a local directory, a tokenizer.json."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import tokenizers

END_OF_TEXT = "<|endoftext|>"
DEFAULT_TOKENIZER = "EleutherAI/gpt-neo-125M"


class TokenizerError(ValueError):
    """The tokenizer named in a dataset config cannot be loaded or lacks `<|endoftext|>`."""


class TextTokenizer:
    """A fast (Rust) tokenizer with the end-of-text id, as the builders need it.

    Encoding never adds special tokens: the builders place `<|endoftext|>` themselves, between
    documents. The same string inside a document (a tokenizer's source, a test of one) is
    text and is encoded as text; otherwise it would end the document in mid-file.

    Args:
        backend: the `tokenizers.Tokenizer` doing the work.
        spec: what it was loaded from, recorded in the dataset's metadata.
    """

    def __init__(self, backend: tokenizers.Tokenizer, spec: str):
        self._backend = backend
        self._backend.encode_special_tokens = True
        self.spec = spec
        eot_id = backend.token_to_id(END_OF_TEXT)
        if eot_id is None:
            raise TokenizerError(
                f"Tokenizer {spec!r} has no {END_OF_TEXT!r} token; train or pick one that has it "
                "(neo_keras.data.tokenizer_training adds it)."
            )
        self.eot_id: int = eot_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`."""
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, encoded on the tokenizer's own threads."""
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens included."""
        return self._backend.decode(list(ids), skip_special_tokens=False)


def load_tokenizer(spec: str) -> TextTokenizer:
    """Loads a tokenizer from a tokenizer.json path, a local directory or a Hugging Face hub id.

    A directory with a tokenizer.json is read directly; any other directory or hub id goes
    through `transformers.AutoTokenizer` and must have a fast tokenizer.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return TextTokenizer(_from_tokenizer_json(path), spec)
    if (path / "tokenizer.json").is_file():
        return TextTokenizer(_from_tokenizer_json(path / "tokenizer.json"), spec)
    # Hub ids look like relative paths ("owner/name"), so only these forms are surely paths.
    if not path.exists() and (path.is_absolute() or spec.startswith((".", "~"))):
        raise TokenizerError(f"Tokenizer path {spec!r} does not exist.")
    return TextTokenizer(_from_transformers(spec), spec)


@functools.lru_cache(maxsize=8)
def cached_tokenizer(spec: str) -> TextTokenizer:
    """`load_tokenizer`, once per process: builder workers share one instance per spec."""
    return load_tokenizer(spec)


def _from_tokenizer_json(path: Path) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises plain Exception subclasses from Rust
        raise TokenizerError(f"Cannot read tokenizer file {path}: {err}") from err


def _from_transformers(spec: str) -> tokenizers.Tokenizer:
    import transformers  # heavy; only for hub ids and directories without tokenizer.json

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec, use_fast=True)
    except Exception as err:  # network, missing repo, missing files: all fatal here
        raise TokenizerError(
            f"Cannot load tokenizer {spec!r}: {err}. Pass a local directory or a tokenizer.json "
            "path in the dataset config's `tokenizer` if the hub is out of reach."
        ) from err
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"Tokenizer {spec!r} has no fast (Rust) implementation.")
    return backend
