"""Where exports come from (training runs, checkpoints) and what they refuse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from neo_keras import GPTNeoCausalLM
from neo_keras.exporting import ExportError, export_model
from neo_keras.models.gpt_neo.hf_convert import hf_state_dict
from tests.export.conftest import RUN_CONFIG, read_record, run_cli


def exported_tensors(path: str) -> dict[str, np.ndarray]:
    return safetensors.numpy.load_file(os.path.join(path, "model.safetensors"))


def assert_same_weights(path: str, model: GPTNeoCausalLM) -> None:
    actual = exported_tensors(path)
    for name, value in hf_state_dict(model.backbone).items():
        np.testing.assert_array_equal(actual[name], value)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def latest_model(run_dir) -> GPTNeoCausalLM:
    return GPTNeoCausalLM.from_preset(os.path.join(run_dir, "checkpoints", "latest"))


def test_training_dir_exports_its_best_checkpoint(run_dir, source_model, tmp_path):
    path = str(tmp_path / "best")
    run_cli("--model", run_dir, "--format", "hf", "--output", path)
    assert_same_weights(path, source_model)
    record = read_record(path)
    assert record["checkpoint"] == "best"
    assert record["training_config"] == RUN_CONFIG
    assert record["model_path"] == os.path.join(run_dir, "checkpoints", "best")


def test_training_dir_exports_latest_on_request(run_dir, latest_model, tmp_path):
    path = str(tmp_path / "latest")
    run_cli("--model", run_dir, "--checkpoint", "latest", "--format", "hf", "--output", path)
    assert_same_weights(path, latest_model)
    assert read_record(path)["checkpoint"] == "latest"


def test_checkpoint_dir_given_directly_keeps_the_training_config(run_dir, latest_model, tmp_path):
    path = str(tmp_path / "direct")
    export_model(os.path.join(run_dir, "checkpoints", "latest"), "hf", path)
    assert_same_weights(path, latest_model)
    record = read_record(path)
    assert (record["checkpoint"], record["training_config"]) == ("latest", RUN_CONFIG)


def test_missing_checkpoint_names_what_is_there(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "checkpoints" / "best")
    (run / "checkpoints" / "resume").mkdir()  # the trainer's resumable state, not a preset
    with pytest.raises(ExportError, match=r"no 'best' checkpoint \(found: \['latest'\]\)"):
        export_model(str(run), "hf", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_checkpoint_flag_needs_a_training_dir(source_dir, tmp_path):
    with pytest.raises(ExportError, match="applies to training output directories"):
        export_model(source_dir, "hf", str(tmp_path / "out"), checkpoint="latest")


def test_corrupt_run_config_is_named(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "run_config.json").write_text("{not json")
    with pytest.raises(ExportError, match="Cannot read the training config .*run_config.json"):
        export_model(str(run), "hf", str(tmp_path / "out"))


def test_missing_source_is_refused(tmp_path):
    with pytest.raises(ExportError, match="No model at"):
        export_model(str(tmp_path / "nothing"), "keras", str(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no model here")
    with pytest.raises(ExportError, match="not a GPT-Neo model: it has no config.json"):
        export_model(str(tmp_path / "notes"), "keras", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_other_hf_architecture_is_refused(source_dir, tmp_path):
    source = tmp_path / "gpt2"
    shutil.copytree(source_dir, source)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ExportError, match="not a loadable GPT-Neo model.*model_type 'gpt2'"):
        export_model(str(source), "hf", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_other_keras_architecture_is_refused(run_dir, tmp_path):
    source = tmp_path / "other_preset"
    shutil.copytree(os.path.join(run_dir, "checkpoints", "best"), source)
    config = json.loads((source / "config.json").read_text())
    config.update(class_name="GPT2Backbone", registered_name="keras_hub>GPT2Backbone")
    config["module"] = "keras_hub.src.models.gpt2.gpt2_backbone"
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="not a loadable GPT-Neo model"):
        export_model(str(source), "hf", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_and_kept(source_dir, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="taken exists; .*--overwrite"):
        run_cli("--model", source_dir, "--format", "hf", "--output", str(taken))
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_the_output(source_dir, source_model, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "old.txt").write_text("old")
    run_cli("--model", source_dir, "--format", "hf", "--output", str(taken), "--overwrite")
    assert not (taken / "old.txt").exists()
    assert_same_weights(str(taken), source_model)
    assert leftovers(tmp_path) == []


def test_output_may_not_replace_the_source(source_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(source_dir, source)
    with pytest.raises(ExportError, match="would replace the model being exported"):
        export_model(str(source), "hf", str(source), overwrite=True)
    assert (source / "model.safetensors").exists()


@pytest.mark.parametrize("overwrite", [False, True], ids=["fresh", "replacing"])
def test_failed_write_leaves_nothing_behind(source_dir, tmp_path, monkeypatch, overwrite):
    output = tmp_path / "out"
    if overwrite:
        output.mkdir()
        (output / "previous.txt").write_text("previous export")

    def full_disk(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(ExportError, match="Writing hf export to .*No space left on device"):
        export_model(source_dir, "hf", str(output), overwrite=overwrite)
    if overwrite:
        assert [p.name for p in output.iterdir()] == ["previous.txt"]
    else:
        assert not output.exists()
    assert leftovers(tmp_path) == []


def test_saved_model_length_beyond_the_model_is_refused(source_dir, tmp_path):
    with pytest.raises(ExportError, match="max_length 65 exceeds the model's 64 positions"):
        export_model(source_dir, "saved_model", str(tmp_path / "out"), max_length=65)
    assert not (tmp_path / "out").exists()


def test_command_line_reports_a_refusal_and_exits_nonzero(source_dir, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "neo_keras.export", "--model", source_dir, "--format", "hf"]
        + ["--output", str(taken)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"export failed: {taken} exists;" in result.stderr
    assert "--overwrite" in result.stderr
    assert list(taken.iterdir()) == []
