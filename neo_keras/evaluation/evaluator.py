"""One evaluation: sample completions (or read them) while the sandbox judges those already
sampled, stream both to disk so that a rerun carries on after a kill, and report.

The output directory holds `settings.json` (what decides the samples and verdicts),
`samples.jsonl` and `results.jsonl` (grown batch by batch, then rewritten in problem order),
`summary.json` and `table.md`. A rerun with the same settings samples and judges only what is
missing; since every completion depends only on its task, its index and the settings (see
`token_choice`), it ends with exactly what an uninterrupted run writes.

On a cluster of several hosts each host evaluates every n-th sample into `host-<i>/` and marks
it done; the chief (host 0) waits for every host, then writes the merged files in the output
directory itself.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from neo_keras import file_io
from neo_keras.evaluation import results
from neo_keras.evaluation.benchmark import Benchmark, Verdict
from neo_keras.evaluation.scoring import Sample, Scorer, check_task_ids, summarize

# Produces the samples of the given (task id, sample index) keys, a batch at a time.
SampleSource = Callable[[list[tuple[str, int]]], Iterator[list[Sample]]]
DONE_FILE = "done"
_WAIT_SECONDS = 10.0
_VERDICTS_PER_WRITE = 256
_SECONDS_PER_WRITE = 2.0

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """The output directory holds an evaluation that this one cannot continue."""


class Progress:
    """An evaluation's samples and verdicts on disk, read back when a run resumes.

    Args:
        directory: the output directory.
        settings: what decides the samples and verdicts; a directory holding a run with other
            settings is refused, naming the first that differs, unless `overwrite`.
        overwrite: discard whatever evaluation the directory holds.
    """

    def __init__(self, directory: str, settings: dict, overwrite: bool = False):
        self.directory = directory
        self.settings = json.loads(json.dumps(settings))  # as read back: lists, not tuples
        self._settings_path = os.path.join(directory, results.SETTINGS_FILE)
        self._samples_log = results.JsonlLog(os.path.join(directory, results.SAMPLES_FILE))
        self._results_log = results.JsonlLog(os.path.join(directory, results.RESULTS_FILE))
        if overwrite:
            self._discard()
        self._check_resumable()
        self.samples = {s.key: s for s in map(results.sample_of, self._samples_log.read())}
        self.verdicts = {
            results.sample_of(row).key: results.verdict_of(row) for row in self._results_log.read()
        }
        self._settings_written = file_io.exists(self._settings_path)
        self._pending: list[dict] = []
        self._last_write = time.monotonic()

    def _own_files(self) -> list[str]:
        names = (results.SUMMARY_FILE, results.TABLE_FILE, results.SETTINGS_FILE, DONE_FILE)
        return [os.path.join(self.directory, name) for name in names]

    def _discard(self) -> None:
        self._samples_log.remove()
        self._results_log.remove()
        for path in self._own_files():
            if file_io.exists(path):
                file_io.remove(path)

    def _check_resumable(self) -> None:
        if file_io.exists(self._settings_path):
            earlier = json.loads(file_io.read_text(self._settings_path))
            for name in sorted(set(earlier) | set(self.settings)):
                if earlier.get(name) != self.settings.get(name):
                    raise ResumeError(
                        f"{self.directory} holds an evaluation with {name}="
                        f"{earlier.get(name)!r}, and this one has {name}="
                        f"{self.settings.get(name)!r}. Rerun with the same settings to resume "
                        "it, or pass --overwrite to start over."
                    )
        elif (
            self._samples_log.exists()
            or self._results_log.exists()
            or any(file_io.exists(p) for p in self._own_files())
        ):
            raise ResumeError(
                f"{self.directory} holds evaluation files without their settings.json. Pass "
                "--overwrite to replace them, or choose another --output_dir."
            )

    def _write_settings(self) -> None:
        if not self._settings_written:
            results.write_json(self._settings_path, self.settings)
            self._settings_written = True

    def record_samples(self, samples: Sequence[Sample]) -> None:
        """Appends `samples` to samples.jsonl, durably."""
        self._write_settings()
        self._samples_log.append([results.sample_row(s) for s in samples])
        self.samples.update((s.key, s) for s in samples)

    def adopt(self, result_rows: Iterable[dict]) -> None:
        """Takes judged samples of another directory (a host's share) as this run's own."""
        self._write_settings()
        for row in result_rows:
            sample = results.sample_of(row)
            self.samples[sample.key] = sample
            self.verdicts[sample.key] = results.verdict_of(row)

    def record_verdict(self, sample: Sample, verdict: Verdict, per_test: bool) -> None:
        """Adds one verdict; results.jsonl gets it with others (see `flush_verdicts`)."""
        self.verdicts[sample.key] = verdict
        self._pending.append(results.result_row(sample, verdict, per_test))
        if (
            len(self._pending) >= _VERDICTS_PER_WRITE
            or time.monotonic() - self._last_write >= _SECONDS_PER_WRITE
        ):
            self.flush_verdicts()

    def flush_verdicts(self) -> None:
        """Appends the verdicts not yet written to results.jsonl, durably.

        Verdicts are written a few hundred or a few seconds at a time: one write (a file part
        on an object store) per verdict would cost more than judging at n = 200. A kill loses
        at most those seconds of verdicts, which the rerun judges again.
        """
        self._results_log.append(self._pending)
        self._pending = []
        self._last_write = time.monotonic()

    def finish(self, keys: Sequence[tuple[str, int]], per_test: bool) -> tuple[list, list]:
        """Rewrites both files in the order of `keys`; returns their samples and verdicts."""
        samples = [self.samples[key] for key in keys]
        verdicts = [self.verdicts[key] for key in keys]
        self._samples_log.finish(results.sample_row(s) for s in samples)
        self._results_log.finish(
            results.result_row(s, v, per_test) for s, v in zip(samples, verdicts, strict=True)
        )
        return samples, verdicts


def sample_keys(benchmark: Benchmark, num_samples: int) -> list[tuple[str, int]]:
    """Every (task id, sample index) of a sampled run, in problem order."""
    return [(benchmark.task_id(p), i) for p in benchmark.problems for i in range(num_samples)]


def evaluate(
    benchmark: Benchmark,
    keys: Sequence[tuple[str, int]],
    source: SampleSource,
    progress: Progress,
    sandbox,
    show_progress: bool = False,
) -> dict:
    """Samples the keys `progress` lacks while judging every sample without a verdict.

    Returns the seconds of each, and how long they ran at the same time.
    """
    per_test = benchmark.per_test_metrics
    started = time.perf_counter()
    with Scorer(
        benchmark,
        sandbox,
        lambda sample, verdict: progress.record_verdict(sample, verdict, per_test),
        show_progress,
    ) as scorer:
        scorer.submit([s for key, s in progress.samples.items() if key not in progress.verdicts])
        missing = [key for key in keys if key not in progress.samples]
        for samples in source(missing) if missing else ():
            check_task_ids(benchmark, samples)
            progress.record_samples(samples)
            scorer.submit(samples)
        generated = time.perf_counter()
        scorer.wait()
    progress.flush_verdicts()
    ended = time.perf_counter()
    first, last = scorer.first_submitted or ended, scorer.last_judged or ended
    timing = {
        "wall_seconds": ended - started,
        "generation_seconds": generated - started,
        # The workers' judging time, as the wall time it takes all of them at once.
        "execution_seconds": scorer.busy_seconds / scorer.workers,
        # Samples were being judged while generation went on: first queued to generation end.
        "overlap_seconds": max(0.0, min(generated, last) - first),
        # What judging added after the last sample: the rest of the wall time.
        "execution_after_generation_seconds": max(0.0, last - generated),
    }
    return {name: round(value, 2) for name, value in timing.items()}


def report(
    benchmark: Benchmark,
    keys: Sequence[tuple[str, int]],
    progress: Progress,
    model_name: str,
    ks: Sequence[int],
    extra: dict,
) -> dict:
    """Writes samples and results in problem order, summary.json and table.md; the summary."""
    per_test = benchmark.per_test_metrics
    samples, verdicts = progress.finish(keys, per_test)
    metrics = summarize(benchmark, samples, verdicts, ks, per_test=per_test)
    dataset = benchmark.name
    if extra.get("partial"):
        dataset += f" (partial: {extra['partial']})"
    table = results.table(model_name, dataset, metrics)
    summary = {
        "model": model_name,
        "dataset": benchmark.name,
        **metrics,
        "not_computable": [k for k, v in metrics["pass_at_k"].items() if v is None],
        "table": table,
        **extra,
    }
    results.write_json(os.path.join(progress.directory, results.SUMMARY_FILE), summary)
    results.write_text(os.path.join(progress.directory, results.TABLE_FILE), table + "\n")
    return summary


def host_directory(output_dir: str, host: int, hosts: int) -> str:
    """Where a host of a cluster keeps its share: the output directory itself when alone."""
    return output_dir if hosts == 1 else os.path.join(output_dir, f"host-{host}")


def mark_done(directory: str) -> None:
    """Says that the share in `directory` is sampled, judged and written."""
    results.write_text(os.path.join(directory, DONE_FILE), "")


def merge_hosts(output_dir: str, hosts: int, settings: dict, overwrite: bool = False) -> Progress:
    """Waits until every host has marked its share done; all shares as one run's progress
    (replacing an earlier merge of other settings under `overwrite`)."""
    directories = [host_directory(output_dir, host, hosts) for host in range(hosts)]
    waiting = directories
    while waiting := [d for d in waiting if not file_io.exists(os.path.join(d, DONE_FILE))]:
        logger.info("Waiting for the hosts still evaluating: %s", ", ".join(waiting))
        time.sleep(_WAIT_SECONDS)
    merged = Progress(output_dir, settings, overwrite=overwrite)
    for directory in directories:
        merged.adopt(results.JsonlLog(os.path.join(directory, results.RESULTS_FILE)).read())
    return merged
