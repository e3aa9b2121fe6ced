"""APPS (Hendrycks et al., 2021) test problems, run test by test as the APPS harness runs them.

A completion is a whole program. Standard-input problems run it once per test with the test's
input on stdin and compare what it prints (see `apps_outputs`); call-based problems import it
as a module, call `fn_name` (on `Solution()` when it defines that class) with each test's
arguments and compare the return value. Like the APPS harness, the program sees a preamble of
common imports first, and a completion that does not compile fails every test without running.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from neo_keras.data.apps import AppsLayoutError, AppsProblem, find_apps_root, read_apps_problems
from neo_keras.evaluation.apps_outputs import as_text, outputs_match
from neo_keras.evaluation.benchmark import Benchmark, Verdict
from neo_keras.evaluation.sandbox import Job, Outcome

DIFFICULTIES = ("introductory", "interview", "competition")
TFDS_NAME = "apps/eval"
TASK_PREFIX = "APPS/"
# End of the answer: the model starts a new problem, or the document ends (end-of-text).
STOP_SEQUENCES = ("\nQUESTION:",)

# The modules the APPS harness makes available to every solution without an import.
_PREAMBLE = "\n".join(
    [
        "import sys, time, itertools, collections, math, fractions, random, heapq",
        "from itertools import accumulate, product, permutations, combinations",
        "from collections import Counter, OrderedDict, deque, defaultdict, ChainMap",
        "from functools import lru_cache",
        "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2",
        "from typing import List, Tuple",
        "from heapq import *",
    ]
)
# numpy costs a noticeable import per test, so only programs that use it get it.
_USES_NUMPY = re.compile(r"\bnp\b")

# The test of one call-based case, run apart from the solution (see sandbox.Job): the
# solution's return value arrives as plain data and is compared as the APPS harness does.
_CALL_TEST = """
import json as _json


def _apps_int_keys(value):
    if isinstance(value, dict):
        try:
            return {{int(k): v for k, v in value.items()}}
        except ValueError:
            return value
    return value


def _apps_same(got, expected):
    if isinstance(got, tuple):
        got = list(got)
    if got == expected:
        return True
    if isinstance(expected, list) and expected:
        if got == expected[0]:
            return True
        try:
            if isinstance(got[0], tuple) and [list(x) for x in got] == expected[0]:
                return True
        except (TypeError, IndexError, KeyError):
            pass
    return False


args = _json.loads({args!r})
if args and isinstance(args[0], dict):
    args = [_apps_int_keys(args[0])] + list(args[1:])
expected = _apps_int_keys(_json.loads({expected!r}))
if isinstance(expected, list) and expected and isinstance(expected[0], dict):
    expected = [_apps_int_keys(expected[0])] + list(expected[1:])
assert _apps_same(candidate(*args), expected), "wrong answer"
"""
# The function under test: a method of `Solution()` when the solution defines that class.
_CALL_ENTRY_POINT = (
    "getattr(Solution(), {fn_name!r}) if isinstance(globals().get('Solution'), type) "
    "else globals()[{fn_name!r}]"
)
# Not __main__, so the solution's `if __name__ == "__main__":` block stays quiet, as it
# does under the APPS harness.
_CALL_MODULE_NAME = "apps_solution"


def task_id(problem: AppsProblem) -> str:
    """`APPS/<problem_id>`, the id of a problem in samples and results files."""
    return TASK_PREFIX + problem.problem_id


def solution_source(completion: str) -> str:
    """The source that runs for a completion: the harness preamble, then the completion."""
    preamble = _PREAMBLE + ("\nimport numpy as np" if _USES_NUMPY.search(completion) else "")
    return f"{preamble}\n{completion}\n"


def compiles(source: str) -> bool:
    """Whether `source` compiles; nothing of it runs."""
    try:
        compile(source, "<solution>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def call_based_job(source: str, fn_name: str, args, expected) -> Job:
    """A job that loads `source` as a module, calls `fn_name(*args)` from a test of its own
    and asserts the result."""
    return Job(
        program=source,
        test=_CALL_TEST.format(args=json.dumps(args), expected=json.dumps(expected)),
        entry_point=_CALL_ENTRY_POINT.format(fn_name=fn_name),
        module_name=_CALL_MODULE_NAME,
    )


def load_problems(data_dir: str) -> list[AppsProblem]:
    """The APPS test problems that have tests.

    Args:
        data_dir: an extracted APPS release (the folder with test/, or its parent), or the
            TFDS data directory where the `apps/eval` builder config was prepared.
    """
    try:
        find_apps_root(data_dir)
    except AppsLayoutError:
        problems = _load_from_tfds(data_dir)
    else:
        problems = list(read_apps_problems(data_dir, "test"))
    return [p for p in problems if p.inputs]


def _load_from_tfds(data_dir: str) -> list[AppsProblem]:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
        records = tfds.as_numpy(builder.as_dataset(split="test"))
    # TFDS raises several unrelated types for a missing dataset, with its whole list of
    # datasets in the text: the message says what is missing and how to build it instead.
    except Exception as error:
        raise FileNotFoundError(
            f"No APPS test problems at {data_dir!r}: give an extracted APPS release (with a "
            f"test/ folder) or a TFDS data_dir where {TFDS_NAME!r} was prepared "
            f"(tfds build data_builders/apps --config=eval --data_dir={data_dir})."
        ) from error
    problems = []
    for record in records:
        text = {
            key: value.decode("utf-8") for key, value in record.items() if isinstance(value, bytes)
        }
        problems.append(
            AppsProblem(
                split="test",
                problem_id=text["problem_id"],
                question=text["question"],
                starter_code=text["starter_code"] if record["has_starter_code"] else None,
                fn_name=text["fn_name"],
                inputs=json.loads(text["inputs"]),
                outputs=json.loads(text["outputs"]),
                solutions=tuple(json.loads(text["solutions"])),
                difficulty=text["difficulty"],
                url=text["url"],
            )
        )
    return sorted(problems, key=lambda p: p.problem_id)


class Apps(Benchmark):
    """APPS test problems, each test a separate sandboxed run under the sandbox's limits.

    Args:
        problems: the problems (see `load_problems`).
    """

    name = "APPS"
    stop_sequences = STOP_SEQUENCES
    per_test_metrics = True

    def __init__(self, problems: Sequence[AppsProblem]):
        self._problems = list(problems)
        for problem in self._problems:
            if len(problem.inputs) != len(problem.outputs):
                raise ValueError(
                    f"APPS problem {problem.problem_id} has {len(problem.inputs)} test inputs "
                    f"but {len(problem.outputs)} outputs; its input_output.json is damaged."
                )

    @property
    def problems(self) -> list[AppsProblem]:
        return self._problems

    def task_id(self, problem: AppsProblem) -> str:
        return task_id(problem)

    def group_of(self, problem: AppsProblem) -> str:
        return problem.difficulty or "unknown"

    def jobs(self, problem: AppsProblem, completion: str) -> list[Job]:
        source = solution_source(completion)
        if not compiles(source):
            return []
        if problem.fn_name:
            return [
                call_based_job(source, problem.fn_name, args, expected)
                for args, expected in zip(problem.inputs, problem.outputs, strict=True)
            ]
        return [
            Job(
                program=source,
                stdin=as_text(test_input).encode("utf-8"),
                clean_exit_passes=True,
            )
            for test_input in problem.inputs
        ]

    def verdict(
        self, problem: AppsProblem, completion: str, outcomes: Sequence[Outcome]
    ) -> Verdict:
        total = len(problem.inputs)
        if not outcomes:
            return Verdict(False, "failed: syntax error", 0, total)
        results = [self._test_result(problem, i, o) for i, o in enumerate(outcomes)]
        passed = sum(r == "passed" for r in results)
        if passed == total:
            return Verdict(True, "passed", passed, total)
        first = next(i for i, r in enumerate(results) if r != "passed")
        return Verdict(
            False,
            f"failed: {passed}/{total} tests passed; test {first}: {results[first]}",
            passed,
            total,
        )

    @staticmethod
    def _test_result(problem: AppsProblem, index: int, outcome: Outcome) -> str:
        if not outcome.passed:
            return outcome.result
        if problem.fn_name:
            return "passed"
        printed = outcome.stdout.decode("utf-8", errors="replace")
        return "passed" if outputs_match(printed, problem.outputs[index]) else "wrong answer"
