"""`make demo`'s quick variant, end to end, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_fast_demo_runs_every_step_and_reports(tmp_path):
    output = tmp_path / "demo"
    environment = {**os.environ, "DEMO_FAST": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "neo_keras.demo", f"--output_dir={output}"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    for artefact in (
        "corpus/train",
        "tokenizer/tokenizer.json",
        "tfds/codeclippy/demo",
        "run/checkpoints/best",
        "humaneval/summary.json",
        "export_hf/model.safetensors",
        "training_curve.png",
    ):
        assert (output / artefact).exists(), artefact
    assert (output / "training_curve.png").read_bytes().startswith(b"\x89PNG")
    first, last = map(float, re.search(r"validation loss: +([\d.]+) -> ([\d.]+)", log).groups())
    assert last < first
    summary = json.loads((output / "humaneval" / "summary.json").read_text())
    assert "pass@1" in json.dumps(summary)
    assert re.search(r"throughput: +[\d,]+ tokens/s, MFU", log)
    assert "| demo gpt_neo_tiny | HumanEval |" in log

    # A rerun of one step reuses what is built instead of rebuilding it.
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "neo_keras.demo",
            f"--output_dir={output}",
            "--steps=corpus,tokenizer,dataset,report",
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for step in ("corpus", "tokenizer", "dataset"):
        assert f"{step}: reusing" in rerun.stdout
