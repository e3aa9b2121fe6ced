"""The APPS harness's rules for comparing printed output with the expected output."""

from __future__ import annotations

import pytest

from neo_keras.evaluation.apps_outputs import as_text, outputs_match


@pytest.mark.parametrize(
    "printed, expected",
    [
        ("8\n", "8\n"),
        ("8", "8\n"),  # trailing newline
        ("1 2 3   \n\n4\n", "1 2 3\n4\n"),  # trailing spaces and blank lines
        ("  YES\n", "YES"),
        ("0.3333333\n", "0.333333333\n"),  # numbers close per line
        ("1e3\n2\n", "1000\n2.0\n"),
        ("3 1 2\n", "1 2 3\n"),  # tokens of a line as a set
        ("b\na\n", "a\nb\n"),  # lines as a set
        ("0.1234 2\n", "0.12341 2.0\n"),  # rounded to 3 decimals
        ("line one\nline two\n", ["line one", "line two"]),  # expected given as lines
    ],
)
def test_accepted(printed, expected):
    assert outputs_match(printed, expected)


@pytest.mark.parametrize(
    "printed, expected",
    [
        ("7\n", "8\n"),
        ("", "8\n"),
        ("8\n8\n", "8\n9\n"),
        ("1 2\n", "1 2 3\n"),
        ("0.33\n", "0.333333\n"),  # not close, and differs at 3 decimals
        ("yes\n", "YES\n"),  # case matters
        ("inf\n", "1e400 x\n"),
    ],
)
def test_rejected(printed, expected):
    assert not outputs_match(printed, expected)


def test_inputs_as_lines_are_joined():
    assert as_text(["3", "1 2 3"]) == "3\n1 2 3"
    assert as_text("3\n") == "3\n"
