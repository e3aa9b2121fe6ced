"""Checkpoint formats: round trips, the tokenizer, and clear errors for bad checkpoints."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import neo_keras
from neo_keras import GPTNeoCausalLM
from neo_keras.models.gpt_neo.hf_convert import CheckpointError
from tests.models.hf_fixtures import CODE_SAMPLES, make_hf_checkpoint, train_tokenizer


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("hf"))
    make_hf_checkpoint(directory)
    train_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def model(hf_dir):
    return GPTNeoCausalLM.from_preset(hf_dir)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, 300, size=(2, 12)).astype("int32")
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}


def logits_of(model, inputs):
    return np.asarray(model(inputs))


def edit_config(directory: str, **changes) -> None:
    config_path = os.path.join(directory, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    with open(config_path, "w") as f:
        json.dump({**config, **changes}, f)


def copy_checkpoint(source: str, destination) -> str:
    destination = str(destination)
    shutil.copytree(source, destination)
    return destination


def test_tokenizer_matches_huggingface(model, hf_dir):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(hf_dir)
    for text in [*CODE_SAMPLES, "  x  =\t[1,2]\n\n\n# über ünïcode"]:
        ours = np.asarray(model.preprocessor.tokenizer(text)).tolist()
        assert ours == reference(text)["input_ids"], text
    assert model.preprocessor.tokenizer.end_token_id == 0


def test_hf_export_round_trip(model, inputs, tmp_path):
    path = str(tmp_path / "exported")
    model.export_to_transformers(path)
    reloaded = GPTNeoCausalLM.from_preset(path)
    np.testing.assert_array_equal(logits_of(reloaded, inputs), logits_of(model, inputs))
    assert reloaded.preprocessor.tokenizer.vocabulary == model.preprocessor.tokenizer.vocabulary


def test_hf_export_loads_in_transformers(model, inputs, tmp_path):
    from transformers import AutoTokenizer, GPTNeoForCausalLM

    path = str(tmp_path / "for_transformers")
    model.export_to_transformers(path)
    torch_model = GPTNeoForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(inputs["token_ids"]).long()).logits.numpy()
    np.testing.assert_allclose(logits_of(model, inputs), expected, atol=1e-4, rtol=0)
    exported = AutoTokenizer.from_pretrained(path)
    for text in ("def f():", 'END = "<|endoftext|>"'):  # the literal is text, as here
        ours = np.asarray(model.preprocessor.tokenizer(text)).tolist()
        assert exported(text)["input_ids"] == ours, text
    assert model.preprocessor.tokenizer.end_token_id not in ours
    assert exported.eos_token_id == model.preprocessor.tokenizer.end_token_id


def test_hf_export_refuses_existing_path(model, tmp_path):
    path = tmp_path / "taken"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists"):
        model.export_to_transformers(str(path))
    assert (path / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


def test_keras_file_round_trip(model, inputs, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, neo_keras.GPTNeoCausalLM)
    np.testing.assert_array_equal(logits_of(reloaded, inputs), logits_of(model, inputs))


def test_keras_preset_round_trip(model, inputs, tmp_path):
    path = str(tmp_path / "preset")
    model.save_to_preset(path)
    reloaded = GPTNeoCausalLM.from_preset(path)
    np.testing.assert_array_equal(logits_of(reloaded, inputs), logits_of(model, inputs))
    assert reloaded.preprocessor is not None


def test_backbone_from_hf_directory(hf_dir, model):
    backbone = neo_keras.GPTNeoBackbone.from_preset(hf_dir)
    assert backbone.attention_types == ["global", "local"]
    for ours, theirs in zip(backbone.weights, model.backbone.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_mixed_bfloat16_runs_close_to_float32(hf_dir, model, inputs):
    mixed = GPTNeoCausalLM.from_preset(hf_dir, dtype="mixed_bfloat16")
    assert mixed.backbone.token_embedding.embeddings.dtype == "float32"
    logits = logits_of(mixed, inputs)
    assert logits.dtype == np.float32
    reference = logits_of(model, inputs)
    # bfloat16 keeps ~3 significant digits; the argmax barely moves.
    assert np.mean(logits.argmax(-1) == reference.argmax(-1)) > 0.9
    assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max()


def test_other_model_type_is_refused(hf_dir, tmp_path):
    path = copy_checkpoint(hf_dir, tmp_path / "gpt2")
    edit_config(path, model_type="gpt2")
    with pytest.raises(CheckpointError, match="model_type 'gpt2', not 'gpt_neo'"):
        GPTNeoCausalLM.from_preset(path)


def test_truncated_safetensors_is_refused(hf_dir, tmp_path):
    path = copy_checkpoint(hf_dir, tmp_path / "truncated")
    weights = os.path.join(path, "model.safetensors")
    size = os.path.getsize(weights)
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        GPTNeoCausalLM.from_preset(path)


def test_attention_types_length_mismatch_is_refused(hf_dir, tmp_path):
    path = copy_checkpoint(hf_dir, tmp_path / "mismatch")
    edit_config(path, attention_types=[[["global", "local"], 2]])  # 4 layers named, 2 exist
    with pytest.raises(CheckpointError, match="names 4 layers but num_layers is 2"):
        GPTNeoCausalLM.from_preset(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), r"missing tensors \['transformer.h.1"),
        (
            lambda t: t.update(extra=np.zeros(3, "float32")),
            r"unexpected tensors \['transformer.extra",
        ),
        (
            lambda t: t.update({"transformer.h.0.ln_1.weight": np.ones(31, "float32")}),
            r"transformer.h.0.ln_1.weight has shape \(31,\)",
        ),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_tensor_mismatches_name_the_tensor(hf_dir, tmp_path, edit, message):
    path = copy_checkpoint(hf_dir, tmp_path / "edited")
    weights = os.path.join(path, "model.safetensors")
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, weights)
    with pytest.raises(CheckpointError, match=message):
        GPTNeoCausalLM.from_preset(path)


def test_missing_preset_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model at"):
        GPTNeoCausalLM.from_preset(str(tmp_path / "nothing"))


def test_string_prompt_generates_past_the_padding(model):
    # The preprocessor pads with <|endoftext|>, which is also the stop token.
    model.compile(sampler="greedy")
    prompt = "def add(a, b):"
    completion = model.generate(prompt, max_length=24)
    assert completion.startswith(prompt)
    assert len(completion) > len(prompt)


def test_tokenizer_from_a_checkpoint_without_one_is_refused(hf_dir, tmp_path):
    path = copy_checkpoint(hf_dir, tmp_path / "no_tokenizer")
    for name in ("vocab.json", "merges.txt"):
        os.remove(os.path.join(path, name))
    with pytest.raises(CheckpointError, match="No tokenizer at"):
        neo_keras.GPTNeoTokenizer.from_preset(path)
