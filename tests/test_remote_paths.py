"""Train, kill, resume, evaluate and export with every output on a remote file system.

TensorFlow's in-memory `ram://` file system stands in for `gs://`: both are reached only
through `tf.io.gfile`, so any local file call on an output path fails here as it would on a
TPU VM writing to a bucket.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from neo_keras import (
    GPTNeoBackbone,
    GPTNeoCausalLM,
    GPTNeoCausalLMPreprocessor,
    GPTNeoTokenizer,
)
from neo_keras.data.builder_support import token_features
from neo_keras.training import callbacks as run_callbacks
from neo_keras.training.run import train
from tests.evaluation.cli import run_evaluate
from tests.export.conftest import run_cli
from tests.models.hf_fixtures import train_tokenizer
from tests.training.test_train_program import config_from_flags, counting_examples, tiny_overrides

STEPS = 6
KILLED_AT = 3  # after the checkpoint of step 2, before the one of step 4


class Killed(BaseException):
    """Stands in for the machine going away mid-run."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[str, str]:
    """A local TFDS data_dir and tokenizer: the inputs, not the outputs, of the run."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds.dataset_builders.store_as_tfds_dataset(
        name="counting",
        version="1.0.0",
        features=token_features(16),
        split_datasets={"train": counting_examples(64, 0), "validation": counting_examples(8, 1)},
        config="tiny",
        data_dir=data_dir,
    )
    tokenizer_dir = str(tmp_path_factory.mktemp("tokenizer"))
    train_tokenizer(tokenizer_dir)
    return data_dir, tokenizer_dir


@pytest.fixture
def local_disk(tmp_path, monkeypatch):
    """An empty working directory and home, and what the temporary directory held before."""
    for name in ("cwd", "home"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home" / ".keras"))
    before = set(os.listdir(tempfile.gettempdir()))
    yield tmp_path
    assert not os.listdir(tmp_path / "cwd")
    assert not os.listdir(tmp_path / "home")
    # Every staging copy is removed; only TensorFlow's own autograph modules remain.
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert all(name.startswith("__autograph_generated_file") for name in left), left


def run_config(inputs, output_dir: str):
    data_dir, tokenizer_dir = inputs
    return config_from_flags(
        [
            *tiny_overrides(data_dir, tokenizer_dir, output_dir),
            f"--train_steps={STEPS}",
            "--save_every=2",
            "--eval_every=2",
            "--learning_rate=1e-3",
        ]
    )


def read_json(path: str) -> dict:
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def assert_same_weights(actual: GPTNeoCausalLM, expected: GPTNeoCausalLM) -> None:
    for a, e in zip(actual.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6, rtol=0)


def test_a_run_on_remote_storage_from_training_to_export(inputs, local_disk, monkeypatch):
    root = f"ram://{uuid.uuid4().hex}"
    reference_run, run = f"{root}/reference", f"{root}/run"
    train(run_config(inputs, reference_run))

    class KilledMidRun(run_callbacks.StopAtStep):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == KILLED_AT:
                raise Killed
            super().on_train_batch_end(batch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(run_callbacks, "StopAtStep", KilledMidRun)
        with pytest.raises(Killed):
            train(run_config(inputs, run))
    final = train(run_config(inputs, run))  # the same command again: it resumes
    assert final["step"] == STEPS

    for name in ("best", "latest"):
        assert tf.io.gfile.exists(f"{run}/checkpoints/{name}/config.json")
    assert tf.io.gfile.glob(f"{run}/logs/train/events.out.tfevents.*")
    assert read_json(f"{run}/run_config.json")["output_dir"] == run
    latest = GPTNeoCausalLM.from_preset(f"{run}/checkpoints/latest")
    assert_same_weights(latest, GPTNeoCausalLM.from_preset(f"{reference_run}/checkpoints/latest"))

    summary = run_evaluate(
        f"--model={run}",
        "--checkpoint=latest",
        "--limit=1",
        "--num_samples=2",
        "--max_new_tokens=4",
        "--batch_size=2",
        "--bucket_size=16",
        f"--output_dir={root}/eval",
    )
    assert read_json(f"{root}/eval/summary.json")["pass_at_k"] == summary["pass_at_k"]
    assert summary["settings"]["model_source"] == f"{run}/checkpoints/latest"
    with tf.io.gfile.GFile(f"{root}/eval/samples.jsonl") as f:
        assert len(f.read().splitlines()) == 2

    for export_format in ("keras", "hf"):
        output = f"{root}/export_{export_format}"
        run_cli(
            f"--model={run}",
            "--checkpoint=latest",
            f"--format={export_format}",
            f"--output={output}",
        )
        assert read_json(f"{output}/neo_keras_export.json")["format"] == export_format
        assert_same_weights(GPTNeoCausalLM.from_preset(output), latest)
    assert tf.io.gfile.exists(f"{root}/export_keras/model.keras")
    # Each class reads the remote checkpoint through the same from_preset.
    for cls in (GPTNeoBackbone, GPTNeoTokenizer, GPTNeoCausalLMPreprocessor):
        for export_format in ("keras", "hf"):
            assert isinstance(cls.from_preset(f"{root}/export_{export_format}"), cls)
