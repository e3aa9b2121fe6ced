"""APPS scoring: both problem kinds, right and wrong solutions, and the APPS metrics."""

from __future__ import annotations

import json
import os

import pytest
import tensorflow_datasets as tfds

from neo_keras.data.apps import AppsProblem
from neo_keras.evaluation.apps import Apps, load_problems, task_id
from neo_keras.evaluation.sandbox import Limits, Sandbox
from neo_keras.evaluation.scoring import Sample, score_samples, summarize
from tests.data.builders import builder_module
from tests.evaluation.cli import run_evaluate

DUMMY_RELEASE = os.path.join(os.path.dirname(__file__), "../../data_builders/apps/dummy_data")


def problem(problem_id, fn_name, inputs, outputs, difficulty) -> AppsProblem:
    return AppsProblem(
        split="test",
        problem_id=problem_id,
        question="...",
        starter_code="",
        fn_name=fn_name,
        inputs=inputs,
        outputs=outputs,
        solutions=(),
        difficulty=difficulty,
        url="",
    )


# Call-based with outputs wrapped in a list, as many APPS problems store them.
ADD = problem("0001", "add", [[1, 2], [3, 4], [-1, 1]], [[3], [7], [0]], "introductory")
# Call-based on a Solution class, with typing names that only the harness preamble provides.
TOTAL = problem("0002", "total", [[[1, 2, 3]], [[5]]], [6, 5], "interview")
PAIRS = problem("0003", "pairs", [[2]], [[[[0, 1], [1, 0]]]], "interview")  # wrapped
# Standard input.
DOUBLE = problem("0004", "", ["4\n", "10\n", "-3\n"], ["8\n", "20\n", "-6\n"], "competition")
THIRD = problem("0005", "", [["3"]], [["0.3333333333"]], "competition")

SAMPLES = [
    # (problem, completion, passes, tests passed)
    (ADD, "def add(a, b):\n    return a + b\n", True, 3),
    (ADD, "def add(a, b):\n    return 3\n", False, 1),
    (ADD, "def add(a, b):\n    return (\n", False, 0),  # does not compile
    (ADD, "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n", False, 0),
    (
        TOTAL,
        "class Solution:\n    def total(self, nums: List[int]) -> int:\n        return sum(nums)\n"
        "\nif __name__ == '__main__':\n    print(Solution().total(list(map(int, input()))))\n",
        True,
        2,
    ),
    (TOTAL, "class Solution:\n    def total(self, nums):\n        return max(nums)\n", False, 1),
    (PAIRS, "def pairs(n):\n    return [(0, 1), (1, 0)]\n", True, 1),  # tuples within a list
    (DOUBLE, "n = int(input())\nprint(n * 2)\n", True, 3),
    (DOUBLE, "import sys\nprint(2 * int(sys.stdin.read()))\nsys.exit()\n", True, 3),
    (DOUBLE, "n = int(input())\nprint(n * 2 if n > 0 else 0)\n", False, 2),
    (DOUBLE, "while True:\n    pass\n", False, 0),
    (DOUBLE, "n = int(input())\nprint(n * 2)\nraise ValueError('after printing')\n", False, 0),
    (THIRD, "print(1 / int(input()))\n", True, 1),
    (THIRD, "print(round(1 / int(input()), 2))\n", False, 0),
]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(limits=Limits(timeout_s=2.0), workers=2) as box:
        yield box


@pytest.fixture(scope="module")
def scored(sandbox):
    benchmark = Apps([ADD, TOTAL, PAIRS, DOUBLE, THIRD])
    samples = [Sample(task_id(p), completion) for p, completion, _, _ in SAMPLES]
    return benchmark, samples, score_samples(benchmark, samples, sandbox)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_each_solution_is_judged_as_apps_judges_it(scored, index):
    _, samples, verdicts = scored
    problem, completion, passes, tests_passed = SAMPLES[index]
    verdict = verdicts[index]
    assert (verdict.passed, verdict.tests_passed) == (passes, tests_passed), verdict.result
    assert verdict.tests_total == len(problem.inputs)
    assert (verdict.result == "passed") == passes


def test_failures_say_why(scored):
    _, _, verdicts = scored
    assert verdicts[2].result == "failed: syntax error"
    assert verdicts[1].result.startswith("failed: 1/3 tests passed; test 1: failed: Assert")
    assert "timed out" in verdicts[10].result
    assert "wrong answer" in verdicts[9].result


def test_metrics_overall_and_by_difficulty(scored):
    benchmark, samples, verdicts = scored
    summary = summarize(benchmark, samples, verdicts, ks=[1, 2], per_test=True)
    # Per problem: passing share of samples, mean share of tests passed.
    add = (1 / 4, (1 + 1 / 3 + 0 + 0) / 4)
    total = (1 / 2, (1 + 1 / 2) / 2)
    pairs = (1.0, 1.0)
    double = (2 / 5, (1 + 1 + 2 / 3 + 0 + 0) / 5)
    third = (1 / 2, 1 / 2)
    per_problem = [add, total, pairs, double, third]
    assert summary["problems"] == 5
    assert summary["samples"] == len(SAMPLES)
    assert summary["strict_accuracy"] == pytest.approx(sum(s for s, _ in per_problem) / 5)
    assert summary["test_case_average"] == pytest.approx(sum(t for _, t in per_problem) / 5)
    assert summary["pass_at_k"]["pass@1"] == pytest.approx(summary["strict_accuracy"])
    # pairs has one sample, so pass@2 cannot be computed over all problems ...
    assert summary["pass_at_k"]["pass@2"] is None
    groups = summary["by_group"]
    assert sorted(groups) == ["competition", "interview", "introductory"]
    assert groups["introductory"]["strict_accuracy"] == pytest.approx(add[0])
    assert groups["interview"]["test_case_average"] == pytest.approx((total[1] + pairs[1]) / 2)
    # ... but can for the competition problems, which have two or more each.
    assert groups["competition"]["pass_at_k"]["pass@2"] == pytest.approx(
        ((1 - (3 / 5) * (2 / 4)) + 1.0) / 2
    )


def test_reference_solutions_of_the_release_pass(sandbox):
    problems = load_problems(DUMMY_RELEASE)
    assert [(p.problem_id, bool(p.fn_name)) for p in problems] == [
        ("0000", False),
        ("0001", True),
    ]
    benchmark = Apps(problems)
    samples = [Sample(task_id(p), s) for p in problems for s in p.solutions]
    assert all(v.passed for v in score_samples(benchmark, samples, sandbox))


def test_problems_load_from_the_tfds_evaluation_view(tmp_path):
    apps = builder_module("apps")
    builder = apps.Builder(config="eval", data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=DUMMY_RELEASE)
    )
    assert load_problems(str(tmp_path)) == load_problems(DUMMY_RELEASE)
    with pytest.raises(FileNotFoundError, match="No APPS test problems") as raised:
        load_problems(str(tmp_path / "nothing"))
    # One sentence with the fix, not TFDS's list of every dataset it knows.
    assert len(str(raised.value)) < 400 and "\n" not in str(raised.value)


def test_cli_scores_an_apps_samples_file(tmp_path):
    problems = load_problems(DUMMY_RELEASE)
    samples = tmp_path / "samples.jsonl"
    rows = [(task_id(p), s) for p in problems for s in p.solutions]
    rows.append((task_id(problems[0]), "print(0)\n"))
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    summary = run_evaluate(
        "--dataset=apps",
        f"--apps_data_dir={DUMMY_RELEASE}",
        f"--samples_file={samples}",
        f"--output_dir={tmp_path / 'out'}",
        "--k=1",
    )
    assert summary["dataset"] == "APPS"
    assert summary["strict_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    # The table shows the APPS metrics overall and per difficulty, as the console prints it.
    table = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert table[0].endswith("| pass@1 | strict accuracy | test-case average |")
    assert (
        table[2]
        == f"| samples.jsonl | APPS | 75.00% | 75.00% | {100 * summary['test_case_average']:.2f}% |"
    )
    assert [line.split(" | ")[1] for line in table[3:]] == ["APPS, competition", "APPS, interview"]
    with open(tmp_path / "out" / "results.jsonl") as f:
        results = [json.loads(line) for line in f]
    assert [r["passed"] for r in results] == [True, True, False]
    assert results[2]["tests_total"] == 1
