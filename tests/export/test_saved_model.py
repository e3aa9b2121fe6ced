"""The SavedModel export served by TensorFlow alone: `serve` logits and `generate` tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from neo_keras import GPTNeoCausalLM
from tests.export.conftest import BATCH_SIZE, MAX_LENGTH, logits_of, read_record

GREEDY = {
    "prompts": "stopping",
    "max_new_tokens": 100,
    "temperature": 0.0,
    "top_k": 0,
    "top_p": 1.0,
    "seed": 0,
}
CALLS = {
    "empty_row": {**GREEDY, "prompts": "empty_row", "max_new_tokens": 5},
    "greedy": GREEDY,
    "budget_3": {**GREEDY, "max_new_tokens": 3},
    "top_k_1": {**GREEDY, "temperature": 0.8, "top_k": 1, "seed": 5},
    "tiny_top_p": {**GREEDY, "temperature": 0.8, "top_p": 1e-6, "seed": 5},
    "sample_seed_1": {**GREEDY, "temperature": 1.0, "seed": 1},
    "sample_seed_1_again": {**GREEDY, "temperature": 1.0, "seed": 1},
    "sample_seed_2": {**GREEDY, "temperature": 1.0, "seed": 2},
    "top_k_3": {**GREEDY, "temperature": 2.0, "top_k": 3, "seed": 3},
    "top_p_half": {**GREEDY, "temperature": 2.0, "top_p": 0.5, "seed": 3},
}
TOP_K = 3
TOP_P = 0.5


@pytest.fixture(scope="module")
def prompts(source_model) -> dict:
    """Right-padded prompts of lengths 3, 6 and 2 for testing per-row stopping.

    Picked from random candidates with the Keras model: row 0's greedy continuation emits
    `<|endoftext|>` after a few tokens, rows 1 and 2 come from continuations that did not.
    """
    rng = np.random.default_rng(11)
    lengths = [3, 6, 2]
    candidates = rng.integers(1, 300, size=(16, MAX_LENGTH)).astype("int32")
    continuations = greedy_without_stop(source_model, candidates, prompt_length=3)
    ends = continuations[:, 3:] == end_token(source_model)
    stopping = [int(i) for i in np.flatnonzero(ends[:, 2:].any(axis=1))]
    running = [int(i) for i in np.flatnonzero(~ends.any(axis=1))]
    assert stopping and len(running) > 1, "the fixture model no longer ends some continuations"
    rows = [stopping[0], running[0], running[1]]
    token_ids = candidates[rows]
    padding_mask = (np.arange(MAX_LENGTH)[None, :] < np.array(lengths)[:, None]).astype("int32")
    return {"token_ids": np.where(padding_mask > 0, token_ids, 0), "padding_mask": padding_mask}


def end_token(model: GPTNeoCausalLM) -> int:
    return model.preprocessor.tokenizer.end_token_id


def keras_generate(model, token_ids, padding_mask, stop_token_ids):
    """`GPTNeoCausalLM.generate` on token ids (no preprocessor), greedy."""
    bare = GPTNeoCausalLM(model.backbone)
    bare.compile(sampler="greedy")
    # The Keras sampler treats an end token in the padding as already generated; fill the
    # padding with another id (it is overwritten anyway).
    filler = np.where(padding_mask > 0, token_ids, end_token(model) + 1)
    outputs = bare.generate(
        {"token_ids": filler, "padding_mask": padding_mask > 0}, stop_token_ids=stop_token_ids
    )
    return {k: np.asarray(v) for k, v in outputs.items()}


def greedy_without_stop(model, token_ids, prompt_length):
    padding_mask = np.zeros(token_ids.shape, "int32")
    padding_mask[:, :prompt_length] = 1
    return keras_generate(model, token_ids, padding_mask, None)["token_ids"]


@pytest.fixture(scope="module")
def served(exports, probe, prompts, tmp_path_factory) -> dict:
    """Outputs of the SavedModel run in a process that imports only TensorFlow."""
    work = tmp_path_factory.mktemp("served")
    paths = {name: str(work / name) for name in ("probe.npz", "prompts.npz", "calls.json")}
    np.savez(paths["probe.npz"], **probe)
    prompt_sets = {"stopping": prompts, "empty_row": empty_row_prompts()}
    np.savez(
        paths["prompts.npz"],
        **{
            f"{name}/{key}": value
            for name, batch in prompt_sets.items()
            for key, value in batch.items()
        },
    )
    with open(paths["calls.json"], "w") as f:
        json.dump(CALLS, f)
    outputs = str(work / "outputs.npz")
    script = os.path.join(os.path.dirname(__file__), "fresh_saved_model.py")
    subprocess.run(
        [sys.executable, script, exports["saved_model"], *paths.values(), outputs],
        check=True,
        cwd=str(work),
    )
    results = dict(np.load(outputs))
    results["report"] = json.loads(str(results["report"]))
    return results


def generated(served, name):
    return served[f"{name}/token_ids"], served[f"{name}/padding_mask"]


def test_serving_needs_neither_neo_keras_nor_keras_hub(served):
    assert served["report"]["modules"] == []


def test_serve_logits_match_the_source(served, source_model, probe):
    expected = logits_of(source_model, probe)
    assert served["logits"].shape == expected.shape
    np.testing.assert_allclose(served["logits"], expected, atol=1e-5, rtol=0)


def test_endpoints_have_the_documented_static_shapes(served, exports):
    sequence = [BATCH_SIZE, MAX_LENGTH]
    assert served["report"]["shapes"] == {
        "serve": {"token_ids": sequence, "padding_mask": sequence},
        "generate": {
            "token_ids": sequence,
            "padding_mask": sequence,
            "max_new_tokens": [],
            "temperature": [],
            "top_k": [],
            "top_p": [],
            "seed": [],
        },
    }
    record = read_record(exports["saved_model"])
    assert (record["batch_size"], record["max_length"]) == (BATCH_SIZE, MAX_LENGTH)


def test_endpoints_are_xla_compiled(exports):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(exports["saved_model"], "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    compiled = {
        function.signature.name.split("_")[3]
        for function in saved_model.meta_graphs[0].graph_def.library.function
        if function.attr["_XlaMustCompile"].b
    }
    assert {"serve", "generate"} <= compiled


def test_greedy_generate_matches_keras_generate(served, source_model, prompts):
    token_ids, padding_mask = generated(served, "greedy")
    expected = keras_generate(
        source_model, prompts["token_ids"], prompts["padding_mask"], [end_token(source_model)]
    )
    np.testing.assert_array_equal(padding_mask.astype(bool), expected["padding_mask"])
    np.testing.assert_array_equal(
        token_ids[padding_mask > 0], expected["token_ids"][padding_mask > 0]
    )
    # Rows that stopped are padded with the end token after it.
    np.testing.assert_array_equal(token_ids[padding_mask == 0], end_token(source_model))
    lengths = padding_mask.sum(axis=1)
    assert lengths.min() < MAX_LENGTH == lengths.max(), "want rows that stop and rows that run"


def test_max_new_tokens_limits_each_row(served, prompts):
    greedy_ids, greedy_mask = generated(served, "greedy")
    token_ids, padding_mask = generated(served, "budget_3")
    prompt_lengths = prompts["padding_mask"].sum(axis=1)
    expected_lengths = np.minimum(prompt_lengths + 3, greedy_mask.sum(axis=1))
    np.testing.assert_array_equal(padding_mask.sum(axis=1), expected_lengths)
    for row, length in enumerate(expected_lengths):
        np.testing.assert_array_equal(token_ids[row, :length], greedy_ids[row, :length])


@pytest.mark.parametrize("name", ["top_k_1", "tiny_top_p"])
def test_sampling_that_keeps_one_token_is_greedy(served, name):
    for actual, expected in zip(generated(served, name), generated(served, "greedy"), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_sampling_follows_the_seed(served):
    first, again, other = (
        generated(served, name)[0]
        for name in ("sample_seed_1", "sample_seed_1_again", "sample_seed_2")
    )
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, generated(served, "greedy")[0])


@pytest.mark.parametrize("name", ["top_k_3", "top_p_half"])
def test_samples_stay_inside_top_k_and_top_p(served, source_model, prompts, name):
    token_ids, padding_mask = generated(served, name)
    logits = logits_of(source_model, {"token_ids": token_ids, "padding_mask": padding_mask})
    allowed = allowed_tokens(logits / 2.0, name)
    prompt_lengths = prompts["padding_mask"].sum(axis=1)
    sampled = 0
    for row in range(BATCH_SIZE):
        for position in range(prompt_lengths[row], padding_mask[row].sum()):
            assert token_ids[row, position] in allowed[row][position - 1], (row, position)
            sampled += 1
    assert sampled > 10


def allowed_tokens(logits: np.ndarray, name: str) -> list[list[set]]:
    """Per row and position, the tokens a top-k or top-p filter lets through."""
    order = np.argsort(-logits, axis=-1)
    if name == "top_k_3":
        keep = np.zeros(order.shape, bool)
        keep[..., :TOP_K] = True
    else:
        ranked = np.take_along_axis(logits, order, axis=-1)
        probabilities = np.exp(ranked - ranked.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        keep = np.cumsum(probabilities, axis=-1) - probabilities < TOP_P
    return [
        [set(order[row, t][keep[row, t]].tolist()) for t in range(logits.shape[1])]
        for row in range(logits.shape[0])
    ]


def test_tokenizer_files_ship_with_the_saved_model(exports, source_model):
    from tokenizers import ByteLevelBPETokenizer

    directory = os.path.join(exports["saved_model"], "tokenizer")
    tokenizer = ByteLevelBPETokenizer(
        os.path.join(directory, "vocabulary.json"), os.path.join(directory, "merges.txt")
    )
    text = "def add(a, b):\n    return a + b  # über\n"
    expected = np.asarray(source_model.preprocessor.tokenizer(text)).tolist()
    assert tokenizer.encode(text).ids == expected


def test_bfloat16_saved_model_keeps_bfloat16_weights(source_dir, source_model, probe, tmp_path):
    import tensorflow as tf

    from neo_keras.exporting import export_model

    path = str(tmp_path / "bf16")
    export_model(source_dir, "saved_model", path, dtype="bfloat16", batch_size=1, max_length=16)
    loaded = tf.saved_model.load(path)
    assert {v.dtype for v in loaded.variables} == {tf.bfloat16}
    row = {name: value[:1, :16] for name, value in probe.items()}
    logits = loaded.signatures["serve"](**row)["logits"].numpy()
    assert logits.dtype == np.float32
    expected = logits_of(source_model, row).argmax(-1)
    assert np.mean(logits.argmax(-1) == expected) > 0.9
    assert read_record(path)["dtype"] == "bfloat16"


def empty_row_prompts() -> dict:
    """Four-token prompts, except row 0, which is empty."""
    rng = np.random.default_rng(3)
    token_ids = rng.integers(1, 300, size=(BATCH_SIZE, MAX_LENGTH)).astype("int32")
    padding_mask = np.zeros_like(token_ids)
    padding_mask[1:, :4] = 1
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def test_empty_prompt_continues_from_end_of_text(served, source_model):
    end = end_token(source_model)
    token_ids, padding_mask = generated(served, "empty_row")
    row_ids, row_mask = token_ids[0], padding_mask[0]
    as_prompt = np.full((1, MAX_LENGTH), end, "int32")
    mask = np.zeros_like(as_prompt)
    mask[0, 0] = 1
    expected = keras_generate(source_model, as_prompt, mask, None)["token_ids"][0]
    length = row_mask.sum()
    # <|endoftext|> plus five new tokens, or fewer when one of them is <|endoftext|>.
    assert row_ids[0] == end
    assert length == 6 or (1 < length < 6 and row_ids[length - 1] == end)
    np.testing.assert_array_equal(row_mask, np.arange(MAX_LENGTH) < length)
    np.testing.assert_array_equal(row_ids[:length], expected[:length])
    np.testing.assert_array_equal(row_ids[length:], end)
