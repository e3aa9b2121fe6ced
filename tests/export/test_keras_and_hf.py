"""The Keras and Hugging Face exports reloaded in new processes, and bfloat16 weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from safetensors import safe_open

import neo_keras
from neo_keras.exporting import export_model
from neo_keras.models.gpt_neo.hf_convert import hf_state_dict
from tests.export.conftest import logits_of, read_record

TEXT = "def add(a, b):\n    return a + b  # über\n"


def run_fresh(script: str, *args: str) -> None:
    path = os.path.join(os.path.dirname(__file__), script)
    subprocess.run([sys.executable, path, *args], check=True)


@pytest.fixture(scope="module")
def reloaded(exports, probe, tmp_path_factory) -> dict:
    """Logits and token ids from the exports, each side in its own new process."""
    work = tmp_path_factory.mktemp("reloaded")
    inputs = str(work / "inputs.npz")
    np.savez(inputs, **probe)
    keras_out, transformers_out = str(work / "keras.npz"), str(work / "transformers.npz")
    run_fresh("fresh_keras.py", exports["keras"], exports["hf"], inputs, TEXT, keras_out)
    run_fresh("fresh_transformers.py", exports["hf"], inputs, TEXT, transformers_out)
    return {"keras": dict(np.load(keras_out)), "transformers": dict(np.load(transformers_out))}


@pytest.mark.parametrize("name", ["keras_logits", "preset_logits", "hf_logits"])
def test_reloaded_logits_match_the_source(reloaded, source_model, probe, name):
    np.testing.assert_allclose(
        reloaded["keras"][name], logits_of(source_model, probe), atol=1e-5, rtol=0
    )


def test_keras_file_restores_the_causal_lm_with_its_tokenizer(reloaded, source_model):
    assert str(reloaded["keras"]["keras_class"]) == "GPTNeoCausalLM"
    expected = np.asarray(source_model.preprocessor.tokenizer(TEXT))
    np.testing.assert_array_equal(reloaded["keras"]["keras_token_ids"], expected)
    np.testing.assert_array_equal(reloaded["keras"]["preset_token_ids"], expected)


def test_transformers_gives_the_same_logits(reloaded, source_model, probe):
    real = probe["padding_mask"] > 0  # transformers fills padded positions differently
    expected = logits_of(source_model, probe)[real]
    np.testing.assert_allclose(
        reloaded["transformers"]["logits"][real], expected, atol=1e-5, rtol=0
    )


def test_transformers_tokenizes_like_the_source(reloaded, source_model):
    expected = np.asarray(source_model.preprocessor.tokenizer(TEXT))
    np.testing.assert_array_equal(reloaded["transformers"]["token_ids"], expected)


def test_each_export_records_its_provenance(exports, source_dir):
    revision = subprocess.run(
        ["git", "-C", os.path.dirname(neo_keras.__file__), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for export_format, path in exports.items():
        record = read_record(path)
        assert record["format"] == export_format
        assert record["dtype"] == "float32"
        assert record["source"] == source_dir
        assert record["checkpoint"] is None and record["training_config"] is None
        assert record["git_revision"] == (revision or "unknown")


def test_hf_export_in_bfloat16(source_model, source_dir, tmp_path):
    path = str(tmp_path / "hf_bf16")
    export_model(source_dir, "hf", path, dtype="bfloat16")
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    expected = hf_state_dict(source_model.backbone, "bfloat16")
    with safe_open(os.path.join(path, "model.safetensors"), "np") as tensors:
        assert set(tensors.keys()) == set(expected)
        for name, value in expected.items():
            actual = tensors.get_tensor(name)
            assert actual.dtype == value.dtype
            np.testing.assert_array_equal(actual.view(np.uint16), value.view(np.uint16))
    assert read_record(path)["dtype"] == "bfloat16"


def test_keras_export_in_bfloat16(source_model, source_dir, probe, tmp_path):
    path = str(tmp_path / "keras_bf16")
    export_model(source_dir, "keras", path, dtype="bfloat16")
    reloaded = keras.saving.load_model(os.path.join(path, "model.keras"))
    assert {v.dtype for v in reloaded.weights} == {"bfloat16"}
    for ours, source in zip(reloaded.weights, source_model.weights, strict=True):
        np.testing.assert_array_equal(
            np.asarray(ours.numpy(), np.float32),
            np.asarray(keras.ops.cast(source, "bfloat16"), np.float32),
        )
    logits = logits_of(reloaded, probe)
    assert logits.dtype == np.float32
    assert np.mean(logits.argmax(-1) == logits_of(source_model, probe).argmax(-1)) > 0.9
