"""Shared sources and exports for the export tests, each made once per session."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from absl import flags

from neo_keras import GPTNeoCausalLM
from tests.models.hf_fixtures import make_hf_checkpoint, train_tokenizer

# The SavedModel's fixed shapes in these tests.
BATCH_SIZE = 3
MAX_LENGTH = 24
# Weights wide enough that greedy decoding has no near-ties (top-two logit gaps stay far
# above the ~1e-6 by which XLA and the unfused kernels differ), narrow enough that logits
# stay within a few units, where float32 round-off across the graphs is below 1e-5.
INITIALIZER_RANGE = 0.15
# A larger <|endoftext|> embedding makes the tied head predict it now and then, so greedy
# continuations of random prompts end at different steps.
END_TOKEN_BOOST = 2.0
RUN_CONFIG = {"model": "gpt_neo_tiny", "learning_rate": 3e-4, "train_steps": 10}


def run_cli(*args: str) -> None:
    """Runs `python -m neo_keras.export ARGS` in this process, on flags of its own."""
    from neo_keras import export

    flag_values = flags.FlagValues()
    export.define_flags(flag_values)
    flag_values(["neo_keras.export", *args])
    export.run(flag_values)


def make_source(directory: str, seed: int = 0) -> str:
    """A tiny random Hugging Face GPT-Neo checkpoint with a trained BPE tokenizer."""
    import torch

    torch_model = make_hf_checkpoint(directory, seed=seed, initializer_range=INITIALIZER_RANGE)
    with torch.no_grad():
        torch_model.transformer.wte.weight[0] *= END_TOKEN_BOOST
    torch_model.save_pretrained(directory, safe_serialization=True)
    train_tokenizer(directory)
    return directory


def read_record(directory: str) -> dict:
    with open(os.path.join(directory, "neo_keras_export.json"), encoding="utf-8") as f:
        return json.load(f)


def logits_of(model, batch: dict) -> np.ndarray:
    return np.asarray(model(batch))


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory) -> str:
    return make_source(str(tmp_path_factory.mktemp("source")))


@pytest.fixture(scope="session")
def source_model(source_dir) -> GPTNeoCausalLM:
    return GPTNeoCausalLM.from_preset(source_dir)


@pytest.fixture(scope="session")
def probe() -> dict:
    """Right-padded rows of different lengths, in the SavedModel's fixed shape."""
    rng = np.random.default_rng(7)
    token_ids = rng.integers(1, 300, size=(BATCH_SIZE, MAX_LENGTH)).astype("int32")
    lengths = np.array([MAX_LENGTH, 17, 9])
    padding_mask = (np.arange(MAX_LENGTH)[None, :] < lengths[:, None]).astype("int32")
    return {"token_ids": np.where(padding_mask > 0, token_ids, 0), "padding_mask": padding_mask}


@pytest.fixture(scope="session")
def exports(tmp_path_factory, source_dir) -> dict[str, str]:
    """The source exported in each format through the command line."""
    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for export_format in ("keras", "hf", "saved_model"):
        paths[export_format] = str(root / export_format)
        extra = ["--batch_size", str(BATCH_SIZE), "--max_length", str(MAX_LENGTH)]
        run_cli(
            "--model",
            source_dir,
            "--format",
            export_format,
            "--output",
            paths[export_format],
            *(extra if export_format == "saved_model" else []),
        )
    return paths


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, source_model) -> str:
    """A training output dir: the source as `best`, another model as `latest`."""
    root = tmp_path_factory.mktemp("run")
    source_model.save_to_preset(str(root / "checkpoints" / "best"))
    other = GPTNeoCausalLM.from_preset(make_source(str(tmp_path_factory.mktemp("other")), 1))
    other.save_to_preset(str(root / "checkpoints" / "latest"))
    (root / "run_config.json").write_text(json.dumps(RUN_CONFIG))
    return str(root)
