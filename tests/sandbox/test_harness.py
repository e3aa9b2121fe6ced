"""Jobs with a test: the program in one process, its test in another."""

from __future__ import annotations

import pytest

from neo_keras.evaluation.sandbox import Job, Limits, Sandbox

SQUARE = "def square(x):\n    return x * x\n"
TEST = "assert candidate(3) == 9\nassert candidate(x=-2) == 4\n"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(limits=Limits(timeout_s=3.0, memory_bytes=1024**3), workers=1) as box:
        yield box


def run(sandbox, program, test=TEST, entry_point="square", **fields):
    return sandbox.run(Job(program, test=test, entry_point=entry_point, **fields))


def test_a_right_program_passes(sandbox):
    assert run(sandbox, SQUARE).status == "passed"


def test_a_wrong_program_fails_on_the_assertion(sandbox):
    outcome = run(sandbox, "def square(x):\n    return x + x\n")
    assert (outcome.status, outcome.result) == ("failed", "failed: AssertionError")


def test_what_the_program_raises_is_named(sandbox):
    outcome = run(sandbox, "def square(x):\n    raise ValueError('no squares today')\n")
    assert outcome.result == "failed: ValueError: no squares today"


def test_only_plain_data_comes_back(sandbox):
    program = (
        "class Yes:\n    __eq__ = lambda self, other: True\ndef square(x):\n    return Yes()\n"
    )
    outcome = run(sandbox, program)
    assert outcome.status == "failed"
    assert "not plain data" in outcome.result


def test_a_program_that_does_not_load_keeps_its_own_failure(sandbox):
    assert run(sandbox, "def square(x:\n").status == "syntax_error"
    assert run(sandbox, "raise KeyError('k')\n").result == "failed: KeyError: 'k'"
    assert run(sandbox, "x = bytearray(8 * 1024 ** 3)\n").status == "memory_limit"
    missing = run(sandbox, "def cube(x):\n    return x ** 3\n")
    assert missing.result.startswith("failed: NameError")


def test_a_program_that_announces_its_own_pass_is_not_believed(sandbox):
    # Writes a well-formed "ended: passed" message on every descriptor before loading.
    program = (
        "import os, struct\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        os.write(fd, struct.pack('!Q', 8) + b'Xpassed\\t')\n"
        "    except OSError:\n"
        "        pass\n" + SQUARE
    )
    outcome = run(sandbox, program)
    assert (outcome.status, outcome.detail) == ("crashed", "the program sent a verdict of its own")


def test_a_program_that_exits_while_called_fails(sandbox):
    outcome = run(sandbox, "import os\ndef square(x):\n    os._exit(0)\n")
    assert outcome.status == "failed"
    assert "ended while it was being tested" in outcome.result


def test_module_name_and_entry_point_expression(sandbox):
    program = (
        "class Solution:\n    def twice(self, x):\n        return 2 * x\n"
        "if __name__ == '__main__':\n    raise SystemExit('ran as main')\n"
    )
    outcome = run(
        sandbox,
        program,
        test="assert candidate(21) == 42\n",
        entry_point="Solution().twice",
        module_name="solution",
    )
    assert outcome.status == "passed"


def test_test_and_entry_point_go_together():
    with pytest.raises(ValueError, match="together"):
        Job(SQUARE, test=TEST)
    with pytest.raises(ValueError, match="whole programs"):
        Job(SQUARE, test=TEST, entry_point="square", clean_exit_passes=True)
