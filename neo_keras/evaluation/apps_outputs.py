"""Whether a standard-input program printed the expected output, by the APPS harness's rules.

The APPS harness (Hendrycks et al., 2021) accepts an output when any of these holds:

1. the lines match once each is stripped and blank lines are dropped;
2. every line is one number and the numbers are close (`numpy.allclose` defaults);
3. the lines, each taken as a set of whitespace-separated tokens, form the same set;
4. as 3, with every token read as a number rounded to 3 decimals.

Rules 3 and 4 ignore the order of lines and of tokens within a line. They are lenient on
purpose: scores computed here are comparable with the published APPS figures.
"""

from __future__ import annotations

import numpy as np


def as_text(value) -> str:
    """An APPS input or output (a string, or a list of lines) as one string."""
    if isinstance(value, list):
        return "\n".join(str(line) for line in value)
    return str(value)


def outputs_match(actual: str, expected) -> bool:
    """Whether `actual` (what the program printed) matches `expected` by the APPS rules."""
    got = _clean_lines(actual)
    want = _clean_lines(as_text(expected))
    if got == want:
        return True
    if _numbers_close(got, want):
        return True
    got_sets, want_sets = _token_sets(got), _token_sets(want)
    if got_sets == want_sets:
        return True
    rounded_got, rounded_want = _rounded(got_sets), _rounded(want_sets)
    return rounded_got is not None and rounded_got == rounded_want


def _clean_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _numbers_close(got: list[str], want: list[str]) -> bool:
    if len(got) != len(want):
        return False
    try:
        got_numbers = [float(line) for line in got]
        want_numbers = [float(line) for line in want]
    except ValueError:
        return False
    return bool(np.allclose(got_numbers, want_numbers))


def _token_sets(lines: list[str]) -> set[frozenset[str]]:
    return {frozenset(line.split()) for line in lines}


def _rounded(line_sets: set[frozenset[str]]) -> set[frozenset[float]] | None:
    try:
        return {frozenset(round(float(token), 3) for token in tokens) for tokens in line_sets}
    except (ValueError, OverflowError):
        return None
