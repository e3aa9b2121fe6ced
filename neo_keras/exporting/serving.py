"""The TensorFlow SavedModel form: XLA-compiled `serve` and `generate` endpoints.

Both endpoints take fixed-shape `[batch_size, max_length]` inputs, chosen at export time, so
each compiles once and TF Serving can batch requests against a known shape. The SavedModel
holds only TensorFlow graphs and variables: loading it needs neither Keras nor this package.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from neo_keras.generation import decode, token_choice
from neo_keras.models.gpt_neo.causal_lm import GPTNeoCausalLM

SERVE_ENDPOINT = "serve"
GENERATE_ENDPOINT = "generate"


def sequence_specs(batch_size: int, max_length: int) -> dict[str, tf.TensorSpec]:
    """Input specs shared by both endpoints: right-padded token ids and their padding mask."""
    shape = [batch_size, max_length]
    return {
        "token_ids": tf.TensorSpec(shape, tf.int32, name="token_ids"),
        "padding_mask": tf.TensorSpec(shape, tf.int32, name="padding_mask"),
    }


def sampling_specs() -> dict[str, tf.TensorSpec]:
    """Scalar inputs of `generate`: the new-token budget and the sampling settings."""
    return {
        "max_new_tokens": tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        "temperature": tf.TensorSpec([], tf.float32, name="temperature"),
        "top_k": tf.TensorSpec([], tf.int32, name="top_k"),
        "top_p": tf.TensorSpec([], tf.float32, name="top_p"),
        "seed": tf.TensorSpec([], tf.int32, name="seed"),
    }


def generate_tokens(
    model: GPTNeoCausalLM,
    end_token_id: int,
    token_ids,
    padding_mask,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    seed,
) -> dict[str, tf.Tensor]:
    """Continues each right-padded prompt by up to `max_new_tokens`, with the KV cache.

    Prompts are the leading `padding_mask` positions of each row; an empty row is treated
    as the prompt `end_token_id`. A row stops after it emits `end_token_id`, after
    `max_new_tokens`, or at the end of the fixed length. Returns the prompts with their
    continuations (`token_ids`, padded with `end_token_id`) and a `padding_mask` that is 1
    on prompt and generated tokens.

    `temperature <= 0` decodes greedily; otherwise row `r` draws from the counter-based
    generator keyed by (`seed`, `r`), so a row's tokens do not depend on the others.
    """
    max_length = token_ids.shape[1]
    positions = tf.range(max_length)[tf.newaxis, :]
    # An empty prompt becomes `<|endoftext|>`, the document boundary the model was trained
    # to continue from; position 0 must hold a token to predict from.
    token_ids = tf.where(padding_mask > 0, token_ids, end_token_id)
    prompt_lengths = tf.maximum(decode.prompt_lengths_of(padding_mask > 0), 1)
    prompt_mask = positions < prompt_lengths[:, tf.newaxis]
    row_ends = tf.minimum(prompt_lengths + tf.maximum(max_new_tokens, 0), max_length)
    keys = token_choice.seeded_row_keys(seed, tf.shape(token_ids)[0])

    def choose(logits, index):
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
        draws = token_choice.uniform_draws(keys, index - prompt_lengths)
        warmed = tf.maximum(temperature, 1e-6)  # the sampled branch is computed either way
        sampled = token_choice.sample_tokens(logits, draws, warmed, top_k, top_p)
        return tf.where(temperature > 0.0, sampled, greedy)

    cache = model.prefill(token_ids)
    start = tf.reduce_min(prompt_lengths)
    token_ids, _, _, _ = decode.decode_steps(
        model,
        token_ids,
        cache,
        start,
        prompt_mask,
        row_ends,
        finished=row_ends <= start,
        choose=choose,
        stop_token_ids=(end_token_id,),
        pad_token_id=end_token_id,
    )
    generated = decode.kept_positions(token_ids, prompt_mask, row_ends, (end_token_id,))
    return {"token_ids": token_ids, "padding_mask": tf.cast(generated, tf.int32)}


def write_saved_model(
    model: GPTNeoCausalLM, path: str, batch_size: int, max_length: int, end_token_id: int
) -> None:
    """Writes `model` as a SavedModel at `path` with the `serve` and `generate` endpoints."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"The SavedModel export needs the TensorFlow Keras backend, not "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow."
        )
    sequences = sequence_specs(batch_size, max_length)
    sampling = sampling_specs()

    @tf.function(input_signature=list(sequences.values()), jit_compile=True, autograph=False)
    def serve(token_ids, padding_mask):
        logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        return {"logits": logits}

    @tf.function(
        input_signature=[*sequences.values(), *sampling.values()],
        jit_compile=True,
        autograph=False,
    )
    def generate(token_ids, padding_mask, max_new_tokens, temperature, top_k, top_p, seed):
        return generate_tokens(
            model,
            end_token_id,
            token_ids,
            padding_mask,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            seed,
        )

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in ((SERVE_ENDPOINT, serve), (GENERATE_ENDPOINT, generate)):
        function.get_concrete_function()
        archive.add_endpoint(name, function)
    archive.write_out(path, verbose=False)
