"""GPT-Neo here against `transformers` GPT-Neo: logits, loss and greedy generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neo_keras import GPTNeoCausalLM
from neo_keras.models.gpt_neo import columns
from tests.models.hf_fixtures import make_hf_checkpoint

# Each shape makes the local window shorter than the sequence, so local attention matters.
SHAPES = {
    "alternating": {},
    "global_local_local": {
        "num_layers": 3,
        "hidden_size": 48,
        "num_heads": 6,
        "attention_types": [[["global", "local", "local"], 1]],
        "window_size": 5,
    },
    "all_local_custom_mlp": {
        "num_layers": 2,
        "hidden_size": 24,
        "num_heads": 2,
        "intermediate_size": 40,
        "attention_types": [[["local"], 2]],
        "window_size": 3,
    },
    "flat_global": {
        "num_layers": 2,
        "hidden_size": 16,
        "num_heads": 4,
        "attention_types": [[["global"], 2]],
    },
}
SEQUENCE_LENGTH = 24
ROW_LENGTHS = [24, 17, 9]  # right padding in the batch


@pytest.fixture(scope="module", params=sorted(SHAPES))
def pair(request, tmp_path_factory):
    """(torch model, Keras model) holding the same random weights."""
    directory = str(tmp_path_factory.mktemp(request.param))
    torch_model = make_hf_checkpoint(directory, **SHAPES[request.param])
    return torch_model, GPTNeoCausalLM.from_preset(directory)


def padded_batch(vocabulary_size: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, vocabulary_size, size=(len(ROW_LENGTHS), SEQUENCE_LENGTH))
    padding_mask = np.arange(SEQUENCE_LENGTH)[None, :] < np.array(ROW_LENGTHS)[:, None]
    return np.where(padding_mask, token_ids, 0).astype("int32"), padding_mask


def torch_logits(torch_model, token_ids, padding_mask):
    with torch.no_grad():
        return torch_model(
            input_ids=torch.from_numpy(token_ids).long(),
            attention_mask=torch.from_numpy(padding_mask.astype("int64")),
        ).logits.numpy()


def test_logits_match_transformers(pair):
    torch_model, keras_model = pair
    token_ids, padding_mask = padded_batch(torch_model.config.vocab_size)
    expected = torch_logits(torch_model, token_ids, padding_mask)
    actual = np.asarray(keras_model({"token_ids": token_ids, "padding_mask": padding_mask}))
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual[padding_mask], expected[padding_mask], atol=1e-4, rtol=0)


def test_masked_lm_loss_matches_transformers(pair):
    torch_model, keras_model = pair
    token_ids, padding_mask = padded_batch(torch_model.config.vocab_size, seed=2)
    labels = np.where(padding_mask, token_ids, -100)
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.from_numpy(token_ids).long(),
            attention_mask=torch.from_numpy(padding_mask.astype("int64")),
            labels=torch.from_numpy(labels).long(),
        ).loss.item()
    logits = np.asarray(keras_model({"token_ids": token_ids, "padding_mask": padding_mask}))
    # Position t predicts token t + 1; the weight says whether that token is real.
    log_probs = logits[:, :-1] - np.log(np.exp(logits[:, :-1]).sum(-1, keepdims=True))
    targets = token_ids[:, 1:]
    weights = padding_mask[:, 1:].astype("float64")
    token_loss = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    actual = (token_loss * weights).sum() / weights.sum()
    assert actual == pytest.approx(expected, abs=1e-4)


@pytest.fixture(params=["rows", "columns"])
def decoding_form(request, monkeypatch):
    """Decoding steps in the row or the column form (`columns`), whichever this CPU would
    choose, so that both are checked on every machine."""
    monkeypatch.setattr(columns, "suits", lambda rows, kernel_bytes: request.param == "columns")
    return request.param


def test_greedy_generation_matches_transformers(pair, decoding_form):
    torch_model, keras_model = pair
    prompt = padded_batch(torch_model.config.vocab_size, seed=3)[0][:1, :8]
    assert_greedy_tokens_match(torch_model, keras_model, prompt, new_tokens=32)


def test_greedy_generation_across_cache_blocks_matches_transformers(tmp_path):
    """150 positions: the cache spans three blocks, and a decoding step's local layer reads
    only the one or two its window reaches."""
    torch_model = make_hf_checkpoint(str(tmp_path), max_position_embeddings=160)
    keras_model = GPTNeoCausalLM.from_preset(str(tmp_path))
    prompt = padded_batch(torch_model.config.vocab_size, seed=5)[0][:1, :10]
    assert_greedy_tokens_match(torch_model, keras_model, prompt, new_tokens=140)


def assert_greedy_tokens_match(torch_model, keras_model, prompt, new_tokens: int):
    with torch.no_grad():
        expected = torch_model.generate(
            torch.from_numpy(prompt).long(),
            attention_mask=torch.ones_like(torch.from_numpy(prompt)),
            max_new_tokens=new_tokens,
            do_sample=False,
            eos_token_id=None,  # generate every token, as the Keras side does
            pad_token_id=0,
        ).numpy()
    rows = prompt.shape[0]
    assert expected.shape == (rows, prompt.shape[1] + new_tokens)
    keras_model.compile(sampler="greedy")
    token_ids = np.zeros((rows, prompt.shape[1] + new_tokens), "int32")
    token_ids[:, : prompt.shape[1]] = prompt
    padding_mask = np.zeros(token_ids.shape, bool)
    padding_mask[:, : prompt.shape[1]] = True
    generated = keras_model.generate(
        {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None
    )
    np.testing.assert_array_equal(np.asarray(generated["token_ids"]), expected)


def test_padding_does_not_change_a_prompts_greedy_tokens(pair):
    _, keras_model = pair
    keras_model.compile(sampler="greedy")
    length, short, long = 20, 5, 11
    rng = np.random.default_rng(4)
    prompts = rng.integers(1, keras_model.backbone.vocabulary_size, size=(2, long)).astype("int32")
    batch = np.zeros((2, length), "int32")
    batch[0, :short] = prompts[0, :short]
    batch[1, :long] = prompts[1]
    mask = np.zeros((2, length), bool)
    mask[0, :short] = True
    mask[1, :long] = True
    together = keras_model.generate({"token_ids": batch, "padding_mask": mask}, stop_token_ids=None)
    alone = keras_model.generate(
        {"token_ids": batch[:1], "padding_mask": mask[:1]}, stop_token_ids=None
    )
    np.testing.assert_array_equal(together["token_ids"][0], alone["token_ids"][0])
    np.testing.assert_array_equal(together["token_ids"][1, :long], prompts[1])


def test_score_logits_and_loss_match_transformers(pair):
    torch_model, keras_model = pair
    token_ids, padding_mask = padded_batch(torch_model.config.vocab_size, seed=5)
    expected_logits = torch_logits(torch_model, token_ids, padding_mask)
    targets = np.roll(token_ids, -1, axis=1)
    expected_loss = torch.nn.functional.cross_entropy(
        torch.from_numpy(expected_logits).permute(0, 2, 1),
        torch.from_numpy(targets).long(),
        reduction="none",
    ).numpy()
    logits = np.asarray(keras_model.score(token_ids, padding_mask))
    loss = np.asarray(
        keras_model.score(token_ids, padding_mask, scoring_mode="loss", target_ids=targets)
    )
    np.testing.assert_allclose(logits[padding_mask], expected_logits[padding_mask], atol=1e-4)
    np.testing.assert_allclose(loss[padding_mask], expected_loss[padding_mask], atol=1e-4)


def test_score_calls_the_intercept_on_embeddings_and_every_block(pair):
    _, keras_model = pair
    token_ids, _ = padded_batch(keras_model.backbone.vocabulary_size, seed=6)
    seen = []

    def silence_last_block(hidden_states, index):
        seen.append(index)
        last = keras_model.backbone.num_layers - 1
        return hidden_states * 0 if index == last else hidden_states

    logits = np.asarray(keras_model.score(token_ids, layer_intercept_fn=silence_last_block))
    assert seen == list(range(-1, keras_model.backbone.num_layers))
    # With the last block's output zeroed, every position sees the same input to the head.
    np.testing.assert_allclose(logits, np.broadcast_to(logits[:1, :1], logits.shape), atol=1e-5)


def test_score_refuses_loss_without_targets(pair):
    _, keras_model = pair
    with pytest.raises(ValueError, match="target_ids"):
        keras_model.score(np.ones((1, 4), "int32"), scoring_mode="loss")


def test_greedy_generation_of_many_rows_matches_transformers(pair, decoding_form):
    torch_model, keras_model = pair
    assert ("layers" in keras_model.decode_kernels(16)) == (decoding_form == "columns")
    rng = np.random.default_rng(6)
    prompts = rng.integers(1, torch_model.config.vocab_size, size=(16, 6)).astype("int32")
    assert_greedy_tokens_match(torch_model, keras_model, prompts, new_tokens=14)
