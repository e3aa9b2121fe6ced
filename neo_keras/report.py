"""Put evaluations side by side: the results table as Markdown and CSV, and pass@k against k.

    python -m neo_keras.report evals/neo-125m evals/neo-1.3b --output_dir=report

Each argument is an `evaluate --output_dir`. Writes results.md, results.csv and pass_at_k.png
into --output_dir and prints the Markdown table.
"""

from __future__ import annotations

import sys

from absl import app, flags

_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where results.md, results.csv and pass_at_k.png go.", required=True
)


def main(argv: list[str]) -> None:
    directories = argv[1:]
    if not directories:
        raise app.UsageError("Name at least one evaluation: report EVAL_DIR... --output_dir DIR")
    from neo_keras.evaluation.report import ReportError, write_report

    try:
        markdown = write_report(directories, _OUTPUT_DIR.value)
    except ReportError as error:
        sys.exit(f"error: {error}")
    print(markdown)
    print(f"Written to {_OUTPUT_DIR.value}")


if __name__ == "__main__":
    app.run(main)
