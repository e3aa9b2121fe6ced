"""The command lines a user runs: make_corpus, `tfds build` of every builder, tfds.load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tests.data import fixtures

SEQUENCE_LENGTH = 192


def run(command: list[str], cwd: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def write_repositories(root: Path) -> Path:
    """Four one-package repositories, enough for make_corpus to fill every split."""
    for index, name in enumerate(("red", "green", "blue", "amber")):
        package = root / name / name
        package.mkdir(parents=True)
        for module in range(3):
            (package / f"m{module}.py").write_text(
                f"def {name}_{module}(value):\n    return value * {index + module}\n"
            )
    return root


def test_make_corpus_and_tfds_build_then_tfds_load_reads_every_builder(tmp_path, tokenizer_dir):
    manual = tmp_path / "manual"
    run(
        [
            sys.executable,
            "-m",
            "neo_keras.make_corpus",
            str(write_repositories(tmp_path / "src")),
            "--output",
            str(manual / "codeclippy"),
            "--validation_fraction=0.25",
            "--test_fraction=0.25",
        ],
        cwd=fixtures.REPO_ROOT,
    )
    fixtures.write_apps_tree(manual / "apps")
    fixtures.write_code_search_net_tree(manual / "code_search_net")
    config = json.dumps(
        {"name": "cli", "tokenizer": str(tokenizer_dir), "sequence_length": SEQUENCE_LENGTH}
    )
    data_dir = tmp_path / "data"
    tfds_cli = Path(sys.executable).with_name("tfds")
    log = run(
        [
            str(tfds_cli),
            "build",
            "data_builders/codeclippy",
            "data_builders/apps",
            "data_builders/code_search_net",
            f"--manual_dir={manual}",
            "--add_name_to_manual_dir",
            f"--config={config}",
            f"--data_dir={data_dir}",
        ],
        cwd=fixtures.REPO_ROOT,
    )
    assert "split 'train'" in log  # the build report reaches the log
    for name in ("codeclippy/cli", "apps/cli", "code_search_net/cli"):
        examples = list(tfds.as_numpy(tfds.load(name, split="train", data_dir=str(data_dir))))
        assert examples, name
        for example in examples:
            assert example["input_ids"].shape == (SEQUENCE_LENGTH,)
            assert np.all(example["loss_mask"] <= example["attention_mask"])
