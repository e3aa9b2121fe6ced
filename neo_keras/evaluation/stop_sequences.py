"""Where a completion ends: the first stop sequence in the generated text."""

from __future__ import annotations

from collections.abc import Sequence

# Codex's HumanEval stop sequences: a new top-level statement means the function body is over.
HUMANEVAL_STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


def find_stop(text: str, stop_sequences: Sequence[str]) -> int | None:
    """Index in `text` where the earliest stop sequence starts, or None when none occurs."""
    positions = [i for i in (text.find(s) for s in stop_sequences) if i >= 0]
    return min(positions) if positions else None


def cut_at_stop(text: str, stop_sequences: Sequence[str]) -> tuple[str, bool]:
    """`text` cut before its first stop sequence, and whether one was found."""
    position = find_stop(text, stop_sequences)
    if position is None:
        return text, False
    return text[:position], True


def parse_stop_sequences(values: Sequence[str]) -> tuple[str, ...]:
    """Stop sequences as typed on a command line: `\\n`, `\\t`, `\\r`, `\\\\` are unescaped.

    Raises:
        ValueError: a value is empty, which would stop every completion at once.
    """
    parsed = []
    for value in values:
        text = _unescape(value)
        if not text:
            raise ValueError(
                "An empty stop sequence would cut every completion to nothing; remove it."
            )
        parsed.append(text)
    return tuple(parsed)


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        pair = value[i : i + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
