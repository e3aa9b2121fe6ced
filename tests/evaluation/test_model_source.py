"""Which model a reference names: a training run's checkpoint, or a from_preset source."""

from __future__ import annotations

import os

import pytest

from neo_keras.checkpoints import SourceError, resolve_source


def resolve_model_source(reference, checkpoint=None):
    return resolve_source(reference, checkpoint).model_path


def test_training_output_resolves_to_its_checkpoint(tmp_path):
    for name in ("best", "latest"):
        os.makedirs(tmp_path / "checkpoints" / name)
    assert resolve_model_source(str(tmp_path)) == str(tmp_path / "checkpoints" / "best")
    assert resolve_model_source(str(tmp_path), "latest") == str(tmp_path / "checkpoints" / "latest")


def test_a_missing_checkpoint_names_what_is_there(tmp_path):
    os.makedirs(tmp_path / "checkpoints" / "latest")
    with pytest.raises(FileNotFoundError, match=r"no 'best' checkpoint \(found: \['latest'\]\)"):
        resolve_model_source(str(tmp_path))
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "run_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="found: none"):
        resolve_model_source(str(tmp_path / "fresh"))


def test_other_sources_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for source in [str(tmp_path), "hf://EleutherAI/gpt-neo-125M", "gpt_neo_125m"]:
        assert resolve_model_source(source) == source
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        resolve_model_source(str(tmp_path), "final")
    # A checkpoint named for what is not a training run is refused, by evaluate and export alike.
    with pytest.raises(SourceError, match="--checkpoint latest applies to training output"):
        resolve_model_source(str(tmp_path), "latest")


@pytest.mark.parametrize("model", ["/nonexistent/model", "EMPTY_DIR"])
def test_a_model_that_is_not_there_is_refused_before_the_output_dir_is_made(model, tmp_path):
    from tests.evaluation.cli import run_evaluate

    if model == "EMPTY_DIR":
        model = str(tmp_path / "empty")
        os.makedirs(model)
    output = tmp_path / "eval"
    with pytest.raises(FileNotFoundError, match="No model at|holds no model"):
        run_evaluate(f"--model={model}", "--limit=1", f"--output_dir={output}")
    assert not output.exists()  # so the corrected command is not refused as another run


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model=gpt_neo_125m", "--k=1,0"],
            "error: --k takes positive integers such as 1,10,100, got 1,0.",
        ),
        (["--model=gpt_neo_125m", "--dataset=apps"], "error: --dataset=apps needs --apps_data_dir"),
    ],
    ids=["k", "apps_data_dir"],
)
def test_a_bad_flag_is_one_line_not_the_usage_text(argv, message, tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "neo_keras.evaluate", *argv, f"--output_dir={tmp_path / 'e'}"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 1
    ours = [
        line
        for line in done.stderr.splitlines()
        if line and not line.startswith(("WARNING: All log messages", "I0000", "E0000"))
    ]
    assert len(ours) == 1 and ours[0].startswith(message), done.stderr
    assert not (tmp_path / "e").exists()
