"""`neo_keras.evaluate --tpu`: an accelerator that cannot be used is refused up front.

(Sampling on every replica is tested in test_evaluation_at_scale.py.)"""

from __future__ import annotations

import subprocess
import sys


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
