"""The TensorFlow SavedModel form: XLA-compiled `serve` and `generate` endpoints.

Both endpoints take fixed-shape `[batch_size, max_length]` inputs, chosen at export time, so
each compiles once and TF Serving can batch requests against a known shape. The SavedModel
holds only TensorFlow graphs and variables: loading it needs neither Keras nor this package.
"""

from __future__ import annotations

import keras
import tensorflow as tf

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


def filter_top_k_top_p(logits: tf.Tensor, top_k: tf.Tensor, top_p: tf.Tensor) -> tf.Tensor:
    """Sets to -inf every logit outside the top `top_k`, then outside the top-`top_p` mass.

    `top_k <= 0` keeps all tokens; `top_p` outside (0, 1) keeps all tokens. The nucleus is
    taken from the distribution renormalized over the top-k tokens, and always holds the
    most likely token. Works with a runtime `top_k`, which `tf.math.top_k` under XLA cannot.
    """
    vocabulary_size = logits.shape[-1]
    ranks = tf.range(vocabulary_size)[tf.newaxis, :]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocabulary_size), vocabulary_size)
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    in_top_k = ranks < k
    probabilities = tf.nn.softmax(tf.where(in_top_k, ranked, float("-inf")), axis=-1)
    mass_before = tf.cumsum(probabilities, axis=-1, exclusive=True)
    nucleus_off = tf.logical_or(top_p <= 0.0, top_p >= 1.0)
    in_nucleus = tf.logical_or(mass_before < top_p, nucleus_off)
    kept = tf.logical_and(in_top_k, tf.logical_or(in_nucleus, ranks == 0))
    threshold = tf.reduce_min(tf.where(kept, ranked, float("inf")), axis=-1, keepdims=True)
    return tf.where(logits >= threshold, logits, float("-inf"))


def next_tokens(logits, temperature, top_k, top_p, seed, step) -> tf.Tensor:
    """One token per row: the argmax when `temperature <= 0`, else a seeded sample."""

    def greedy():
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def sample():
        scaled = filter_top_k_top_p(logits / temperature, top_k, top_p)
        draw = tf.random.stateless_categorical(
            scaled, 1, seed=tf.stack([seed, step]), dtype=tf.int32
        )
        return draw[:, 0]

    return tf.cond(temperature > 0.0, sample, greedy)


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
    """
    max_length = token_ids.shape[1]
    prompt_mask = padding_mask > 0
    token_ids = tf.where(prompt_mask, token_ids, end_token_id)
    # An empty prompt becomes `<|endoftext|>`, the document boundary the model was trained
    # to continue from; position 0 must hold a token to predict from.
    prompt_lengths = tf.maximum(tf.reduce_sum(tf.cast(prompt_mask, tf.int32), axis=-1), 1)
    limits = tf.minimum(prompt_lengths + tf.maximum(max_new_tokens, 0), max_length)
    _, cache = model._build_cache(token_ids)
    start = tf.reduce_min(prompt_lengths)

    def unfinished(index, token_ids, cache, lengths, done):
        return tf.reduce_any(tf.logical_and(tf.logical_not(done), index < limits))

    def step(index, token_ids, cache, lengths, done):
        previous = tf.slice(token_ids, [0, index - 1], [-1, 1])
        logits, _, cache = model.call_with_cache(previous, cache, index - 1)
        candidates = next_tokens(logits[:, 0, :], temperature, top_k, top_p, seed, index)
        writing = (index >= prompt_lengths) & (index < limits) & tf.logical_not(done)
        column = tf.where(writing, candidates, token_ids[:, index])
        at_index = tf.equal(tf.range(max_length), index)[tf.newaxis, :]
        token_ids = tf.where(at_index, column[:, tf.newaxis], token_ids)
        lengths = lengths + tf.cast(writing, tf.int32)
        done = done | (writing & tf.equal(candidates, end_token_id))
        return index + 1, token_ids, cache, lengths, done

    done = tf.zeros_like(prompt_lengths, dtype=tf.bool)
    _, token_ids, _, lengths, _ = tf.while_loop(
        unfinished,
        step,
        (start, token_ids, cache, prompt_lengths, done),
        maximum_iterations=max_length - start,
    )
    generated_mask = tf.range(max_length)[tf.newaxis, :] < lengths[:, tf.newaxis]
    return {"token_ids": token_ids, "padding_mask": tf.cast(generated_mask, tf.int32)}


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
