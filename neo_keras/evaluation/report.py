"""Several evaluations side by side, as Code Clippy's results table: Markdown, CSV and a plot.

Each evaluation is an `evaluate --output_dir`, read through its `summary.json`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence

from neo_keras import file_io
from neo_keras.evaluation import results

MARKDOWN_FILE = "results.md"
CSV_FILE = "results.csv"
PLOT_FILE = "pass_at_k.png"
_SUMMARY_KEYS = ("model", "dataset", "pass_at_k")
_REWRITE = "rerun its evaluate command with --overwrite to write it again."


class ReportError(ValueError):
    """An evaluation directory without a readable summary."""


def read_summary(directory: str) -> dict:
    """The `summary.json` of an evaluation's output directory."""
    path = os.path.join(directory, results.SUMMARY_FILE)
    if not file_io.isdir(directory):
        raise ReportError(f"{directory} is not a directory: give evaluate's --output_dir.")
    if not file_io.exists(path):
        raise ReportError(
            f"{directory} has no {results.SUMMARY_FILE}: give the --output_dir of an "
            "evaluation that finished (rerun its evaluate command to finish it)."
        )
    try:
        summary = json.loads(file_io.read_text(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path} is not JSON ({error}); {_REWRITE}") from None
    missing = [key for key in _SUMMARY_KEYS if key not in summary]
    if missing:
        raise ReportError(f"{path} is not an evaluation summary (no {missing}); {_REWRITE}")
    return summary


def csv_table(rows: Sequence[dict]) -> str:
    """The rows as CSV; figures are fractions (0.1234), empty where not computable."""
    columns = results.table_columns(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {c: "" if row.get(c) is None else row[c] for c in columns}
            | {c: f"{row[c]:.6f}" for c in columns if isinstance(row.get(c), float)}
        )
    return text.getvalue()


def plot_pass_at_k(summaries: Sequence[dict]) -> bytes:
    """PNG of pass@k against k, one line per evaluation; k on a log scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a TPU VM
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.4, 4.2))
    for summary in summaries:
        points = [
            (int(name[len("pass@") :]), 100 * value)
            for name, value in summary["pass_at_k"].items()
            if value is not None
        ]
        if points:
            ks, values = zip(*sorted(points), strict=True)
            axes.plot(ks, values, marker="o", label=f"{summary['model']} ({summary['dataset']})")
    axes.set_xscale("log")
    axes.set_xlabel("k (samples per problem)")
    axes.set_ylabel("pass@k (%)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    pyplot.close(figure)
    return image.getvalue()


def write_report(directories: Sequence[str], output_dir: str) -> str:
    """Writes results.md, results.csv and pass_at_k.png into `output_dir`; the Markdown.

    Every summary is read before anything is written.
    """
    if file_io.isfile(output_dir):
        raise ReportError(f"--output_dir={output_dir} is a file: give a directory.")
    summaries = [read_summary(directory) for directory in directories]
    rows = [row for summary in summaries for row in results.summary_rows(summary)]
    markdown = results.markdown_table(rows)
    file_io.write_text(os.path.join(output_dir, MARKDOWN_FILE), markdown + "\n")
    file_io.write_text(os.path.join(output_dir, CSV_FILE), csv_table(rows))
    file_io.write_bytes(os.path.join(output_dir, PLOT_FILE), plot_pass_at_k(summaries))
    return markdown
