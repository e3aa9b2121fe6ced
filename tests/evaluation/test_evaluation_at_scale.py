"""Evaluation that holds at scale: every replica and host samples, the same completions
whatever the layout, streamed to disk, resumed after a kill, refused when settings change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from neo_keras.evaluation.evaluator import ResumeError
from neo_keras.evaluation.results import JsonlLog
from tests.evaluation.cli import run_evaluate
from tests.evaluation.tiny_model import make_tiny_model_dir

# Sampled, not greedy, so that equal files mean equal random draws.
SAMPLING = [
    "--limit=3",
    "--num_samples=4",
    "--max_new_tokens=8",
    "--bucket_size=16",
    "--temperature=1.2",
    "--top_p=0.95",
    "--seed=5",
    "--workers=2",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model_dir(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    """One replica, batches of 5: the run every other layout must reproduce."""
    output = tmp_path_factory.mktemp("reference")
    summary = run_evaluate(
        f"--model={model}", *SAMPLING, "--batch_size=5", "--strategy=cpu", f"--output_dir={output}"
    )
    return output, summary


def files(output) -> dict[str, str]:
    return {name: (output / name).read_text() for name in ("samples.jsonl", "results.jsonl")}


def evaluate_command(model, output, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "neo_keras.evaluate",
        f"--model={model}",
        *SAMPLING,
        "--noprogress",
        f"--output_dir={output}",
        *extra,
    ]


def run_command(command, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, **kwargs)


def test_samples_of_a_problem_differ(reference):
    output, summary = reference
    rows = [json.loads(line) for line in files(output)["samples.jsonl"].splitlines()]
    assert len(rows) == 12 and summary["samples"] == 12
    first = [r["completion"] for r in rows if r["task_id"] == "HumanEval/0"]
    assert len(set(first)) > 1


def test_another_batch_size_samples_the_same(model, reference, tmp_path):
    run_evaluate(f"--model={model}", *SAMPLING, "--batch_size=3", f"--output_dir={tmp_path}")
    assert files(tmp_path) == files(reference[0])


def test_two_replicas_sample_the_same(model, reference, tmp_path):
    result = run_command(
        evaluate_command(
            model, tmp_path, "--cpu_devices=2", "--strategy=mirrored", "--batch_size=2"
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert files(tmp_path) == files(reference[0])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["replicas"] == 2
    assert len(summary["settings"]["devices"]) == 2


def test_a_killed_run_resumes_to_what_an_uninterrupted_one_writes(model, reference, tmp_path):
    process = subprocess.Popen(
        evaluate_command(model, tmp_path, "--batch_size=2", "--strategy=cpu"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    samples = tmp_path / "samples.jsonl"
    deadline = time.monotonic() + 300
    while not (samples.exists() and samples.stat().st_size) and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before writing a sample"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Samples were on disk while it ran, and it did not get to finish.
    written = samples.read_text().count("\n")
    assert 0 < written < 12
    assert not (tmp_path / "summary.json").exists()
    summary = run_evaluate(
        f"--model={model}", *SAMPLING, "--batch_size=4", f"--output_dir={tmp_path}"
    )
    assert files(tmp_path) == files(reference[0])
    assert summary["pass_at_k"] == reference[1]["pass_at_k"]


def test_a_rerun_with_other_settings_is_refused_until_overwrite(model, reference, tmp_path):
    output = tmp_path / "out"
    run_evaluate(f"--model={model}", *SAMPLING, f"--output_dir={output}")
    before = files(output)
    with pytest.raises(ResumeError, match="seed=5, and this one has seed=6"):
        run_evaluate(f"--model={model}", *SAMPLING, "--seed=6", f"--output_dir={output}")
    with pytest.raises(ResumeError, match="stop_sequences"):
        run_evaluate(f"--model={model}", *SAMPLING, "--stop_sequences=", f"--output_dir={output}")
    assert files(output) == before
    # Samples drawn by an earlier mapping from draws to tokens are not mixed with this one's.
    settings_file = output / "settings.json"
    settings = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**settings, "token_choice": 1}))
    with pytest.raises(ResumeError, match="token_choice=1, and this one has token_choice=2"):
        run_evaluate(f"--model={model}", *SAMPLING, f"--output_dir={output}")
    settings_file.write_text(json.dumps(settings))
    run_evaluate(f"--model={model}", *SAMPLING, "--seed=6", "--overwrite", f"--output_dir={output}")
    assert files(output) != before


def test_an_output_dir_of_unknown_evaluation_files_is_refused(model, tmp_path):
    (tmp_path / "results.jsonl").write_text("precious\n")
    with pytest.raises(ResumeError, match="--overwrite"):
        run_evaluate(f"--model={model}", *SAMPLING, f"--output_dir={tmp_path}")
    assert (tmp_path / "results.jsonl").read_text() == "precious\n"


def test_two_hosts_of_a_cluster_write_what_one_process_does(model, reference, tmp_path):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    processes = [
        subprocess.Popen(
            evaluate_command(model, tmp_path, "--batch_size=2", "--strategy=cpu"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": task}),
            },
        )
        for task in ({"type": "chief", "index": 0}, {"type": "worker", "index": 0})
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    assert files(tmp_path) == files(reference[0])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["hosts"] == 2 and summary["samples"] == 12
    shares = [files(tmp_path / f"host-{i}")["samples.jsonl"].count("\n") for i in (0, 1)]
    assert shares == [6, 6]


def test_a_line_cut_by_a_kill_is_dropped_and_cut_off(tmp_path):
    log = JsonlLog(str(tmp_path / "rows.jsonl"))
    log.append([{"a": 1}, {"a": 2}])
    with open(tmp_path / "rows.jsonl", "a") as f:
        f.write('{"a": 3, "cut')
    assert JsonlLog(str(tmp_path / "rows.jsonl")).read() == [{"a": 1}, {"a": 2}]
    resumed = JsonlLog(str(tmp_path / "rows.jsonl"))
    resumed.append([{"a": 4}])
    assert (tmp_path / "rows.jsonl").read_text() == '{"a": 1}\n{"a": 2}\n{"a": 4}\n'


def test_without_append_each_batch_is_a_part(tmp_path):
    log = JsonlLog("ram://" + str(tmp_path / "rows.jsonl"))
    log.append([{"a": 1}])
    log.append([{"a": 2}, {"a": 3}])
    again = JsonlLog(log.path)
    assert again.read() == [{"a": 1}, {"a": 2}, {"a": 3}]
    again.append([{"a": 4}])
    again.finish([{"a": 0}])
    assert JsonlLog(log.path).read() == [{"a": 0}]
