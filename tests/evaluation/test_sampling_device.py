"""`neo_keras.evaluate --strategy/--tpu`: where sampling runs, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.evaluation.tiny_model import make_tiny_model_dir

# Two logical CPUs make a MirroredStrategy of two replicas; both runs share one process so
# that TensorFlow's devices are configured once, before anything else starts it.
TWO_DEVICE_RUNS = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.evaluation.cli import run_evaluate

    model, output = sys.argv[1:]
    devices = {}
    for strategy in ("mirrored", "cpu"):
        summary = run_evaluate(
            f"--model={model}", f"--strategy={strategy}", "--greedy", "--limit=2",
            "--max_new_tokens=6", "--bucket_size=16", f"--output_dir={output}/{strategy}",
        )
        devices[strategy] = summary["settings"]["device"]
    print(json.dumps(devices))
    """
)


def test_sampling_runs_on_the_first_device_of_the_strategy(tmp_path):
    model = make_tiny_model_dir(str(tmp_path / "model"))
    result = subprocess.run(
        [sys.executable, "-c", TWO_DEVICE_RUNS, model, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    devices = json.loads(result.stdout.strip().splitlines()[-1])
    assert devices == {
        "mirrored": "/job:localhost/replica:0/task:0/device:CPU:0",
        "cpu": "/CPU:0",
    }
    mirrored, default = (
        (tmp_path / name / "samples.jsonl").read_text() for name in ("mirrored", "cpu")
    )
    assert mirrored == default and mirrored.count("\n") == 2


def test_an_unreachable_tpu_stops_evaluation_before_anything_is_written(tmp_path):
    output = tmp_path / "eval"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "neo_keras.evaluate",
            "--model=gpt_neo_125m",
            "--tpu=grpc://127.0.0.1:1",
            "--limit=1",
            f"--output_dir={output}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "error: Cannot reach TPU grpc://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
