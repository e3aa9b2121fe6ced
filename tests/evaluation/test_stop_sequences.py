"""Cutting completions at stop sequences, and stop sequences given on a command line."""

from __future__ import annotations

import pytest

from neo_keras.evaluation.stop_sequences import (
    HUMANEVAL_STOP_SEQUENCES,
    cut_at_stop,
    find_stop,
    parse_stop_sequences,
)


def test_cut_before_the_earliest_stop():
    text = "    return x\n\nprint(f(1))\ndef g():\n"
    assert cut_at_stop(text, HUMANEVAL_STOP_SEQUENCES) == ("    return x\n", True)
    assert find_stop(text, ["\ndef", "\nprint"]) == text.index("\nprint")


def test_no_stop_keeps_everything():
    assert cut_at_stop("    return x\n", HUMANEVAL_STOP_SEQUENCES) == ("    return x\n", False)
    assert cut_at_stop("abc", []) == ("abc", False)


def test_indented_statements_do_not_stop():
    text = "    if x:\n        print(x)\n    # done\n    return x\n"
    assert cut_at_stop(text, HUMANEVAL_STOP_SEQUENCES) == (text, False)


def test_command_line_escapes():
    assert parse_stop_sequences(["\\nclass", "\\n#", "a\\tb", "\\\\n"]) == (
        "\nclass",
        "\n#",
        "a\tb",
        "\\n",
    )
    with pytest.raises(ValueError, match="empty stop sequence"):
        parse_stop_sequences(["\\ndef", ""])
