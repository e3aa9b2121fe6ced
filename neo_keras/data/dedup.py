"""File identity for de-duplication and sampling: a digest of the normalized identifier sequence.

Two files are duplicates when they have the same sequence of word tokens (runs of letters,
digits and underscores), which is how the Code Clippy authors tokenized files for their
de-duplication; whitespace, punctuation and formatting differences do not count.
"""

from __future__ import annotations

import hashlib
import re

_WORD = re.compile(r"\w+")
DIGEST_BYTES = 16


def identifier_digest(text: str) -> bytes:
    """A 16-byte digest of the word tokens of `text`, in order."""
    tokens = _WORD.findall(text)
    return hashlib.blake2b("\x00".join(tokens).encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def digest_fraction(digest: bytes) -> float:
    """Maps a digest to [0, 1) uniformly, for deterministic sampling by content."""
    return int.from_bytes(digest[:8], "big") / 2.0**64
