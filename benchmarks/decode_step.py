"""Where a decode step's time goes: its parts timed apart, beside this machine's limits.

One compiled loop of `--steps` decode steps (`neo_keras.generation.decode.decode_steps`, the
loop the evaluator, `GPTNeoCausalLM.generate` and the SavedModel run), `--rows` rows of a
randomly initialised model of `--size` (full vocabulary), a key/value cache of `--length`
positions filled up to `--filled`. Then its parts, each in a compiled loop of its own:

- the transformer layers with that cache, and with a cache of 64 positions: the difference
  is what reading the longer cache costs (the blocks of it that each layer sees,
  `neo_keras.models.gpt_neo.kv_cache`);
- the LM head (the tied embedding, reversed) and an argmax;
- the token choice alone (softmax, top-p, one draw a row) on random logits.

The layers and the head run in the form the decode loop takes for these rows on this host
(the rows as columns on a CPU, `neo_keras.models.gpt_neo.columns`), with the kernels it makes.

Beside them, measured in the same run: the read bandwidth of an XLA reduction over 1 GiB and
the rate of a large XLA float32 matmul, and what the step's weights, cache and FLOPs would
take at those rates.

    python benchmarks/decode_step.py                              # 125M, 32 rows, 256 positions
    python benchmarks/decode_step.py --rows 1 --length 128 --filled 112
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from generate import measured_bandwidth  # noqa: E402

from neo_keras import GPTNeoBackbone, GPTNeoCausalLM  # noqa: E402
from neo_keras.generation import decode, token_choice  # noqa: E402
from neo_keras.models.gpt_neo import columns, kv_cache, presets  # noqa: E402
from neo_keras.training.callbacks import measured_peak_flops  # noqa: E402

SHORT_CACHE = 64


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="gpt_neo_125m", choices=sorted(presets.BACKBONE_CONFIGS))
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--length", type=int, default=256, help="cache positions")
    parser.add_argument("--filled", type=int, default=176, help="positions already cached")
    parser.add_argument("--steps", type=int, default=16, help="steps per timed loop")
    args = parser.parse_args()
    if not SHORT_CACHE <= args.filled <= args.length - args.steps:
        parser.error(f"--filled must lie in [{SHORT_CACHE}, --length - --steps].")
    return args


def seconds_per_step(function, *inputs, steps: int, repeats: int = 4) -> float:
    """Best of `repeats` timed calls (after one that compiles), over `steps`."""
    tf.nest.map_structure(lambda t: t.numpy(), function(*inputs))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(*inputs))
        best = min(best, time.perf_counter() - started)
    return best / steps


def random_cache(model, rows: int, length: int):
    return tuple(
        (tf.random.normal(keys.shape, stddev=0.1), tf.random.normal(values.shape))
        for keys, values in model.empty_cache(rows, length)
    )


def in_loop(body, steps: int):
    """A compiled function running `body(i, state) -> state` for `steps` iterations."""

    @tf.function(jit_compile=True)
    def run(*state):
        return tf.while_loop(
            lambda i, *_: i < steps, lambda i, *s: (i + 1, *body(i, *s)), (0, *state)
        )[1:]

    return run


def decode_step(model, args, settings: token_choice.SamplingSettings) -> float:
    rows, length = args.rows, args.length
    keys = tf.constant(token_choice.row_keys(0, ["task"] * rows, list(range(rows))))
    choose = token_choice.row_chooser(settings, keys, tf.zeros([rows], tf.int32))

    @tf.function(jit_compile=True)
    def run(token_ids, cache):
        token_ids, _, _, finished = decode.decode_steps(
            model,
            token_ids,
            cache,
            tf.constant(args.filled),
            tf.zeros([rows, length], bool),
            tf.fill([rows], length),
            tf.zeros([rows], bool),
            choose,
            max_steps=args.steps,
        )
        return token_ids, finished

    vocabulary = model.backbone.vocabulary_size
    token_ids = tf.random.uniform([rows, length], 0, vocabulary, tf.int32)
    return seconds_per_step(run, token_ids, random_cache(model, rows, length), steps=args.steps)


def layers_step(model, args, length: int) -> float:
    backbone = model.backbone
    start = min(args.filled, length - args.steps)
    kernels = model.decode_kernels(args.rows)

    def body(i, hidden, cache):
        updated = []
        for number, (layer, layer_cache) in enumerate(
            zip(backbone.transformer_layers, cache, strict=True)
        ):
            if "layers" in kernels:  # the rows as columns, as the decode loop takes them
                hidden, layer_cache = columns.decoder_step(
                    layer, hidden, kernels["layers"][number], layer_cache, start + i
                )
            else:
                hidden, layer_cache = layer(hidden, cache=layer_cache, cache_update_index=start + i)
            updated.append(layer_cache)
        return hidden, tuple(updated)

    hidden = tf.random.normal(hidden_shape(model, args.rows, kernels))
    cache = random_cache(model, args.rows, length)
    return seconds_per_step(in_loop(body, args.steps), hidden, cache, steps=args.steps)


def hidden_shape(model, rows: int, kernels: dict) -> list[int]:
    """A step's hidden states: `[hidden, rows]` in the column form, `[rows, 1, hidden]` else."""
    hidden_dim = model.backbone.hidden_dim
    return [hidden_dim, rows] if "layers" in kernels else [rows, 1, hidden_dim]


def head_step(model, args) -> float:
    embedding = model.backbone.token_embedding
    kernels = model.decode_kernels(args.rows)

    def body(i, hidden, total):
        shifted = hidden + tf.cast(i, tf.float32)
        if "layers" in kernels:
            logits = columns.logits(embedding, shifted)
        else:
            logits = tf.matmul(shifted[:, 0], kernels["head"])
        return hidden, total + tf.argmax(logits, -1, output_type=tf.int32)

    hidden = tf.random.normal(hidden_shape(model, args.rows, kernels))
    run = in_loop(body, args.steps)
    return seconds_per_step(run, hidden, tf.zeros([args.rows], tf.int32), steps=args.steps)


def choice_step(model, args, settings: token_choice.SamplingSettings) -> float:
    rows = args.rows
    keys = tf.constant(token_choice.row_keys(0, ["task"] * rows, list(range(rows))))

    def body(i, logits, total):
        draws = token_choice.uniform_draws(keys, tf.fill([rows], i))
        shifted = logits + tf.cast(i, tf.float32) * 1e-3
        return logits, total + token_choice.choose_tokens(shifted, draws, settings)

    logits = 3.0 * tf.random.normal([rows, model.backbone.vocabulary_size])
    run = in_loop(body, args.steps)
    return seconds_per_step(run, logits, tf.zeros([rows], tf.int32), steps=args.steps)


def main() -> None:
    args = parse_args()
    model = GPTNeoCausalLM(GPTNeoBackbone(**presets.backbone_config(args.size)))
    backbone = model.backbone
    bandwidth, matmul = measured_bandwidth(), measured_peak_flops("float32")
    sampling = token_choice.SamplingSettings(temperature=0.8, top_p=0.95)
    parts = {
        "decode step, greedy": decode_step(model, args, token_choice.SamplingSettings(greedy=True)),
        "decode step, T=0.8 top-p 0.95": decode_step(model, args, sampling),
        f"layers, {args.length}-position cache": layers_step(model, args, args.length),
        f"layers, {SHORT_CACHE}-position cache": layers_step(model, args, SHORT_CACHE),
        "LM head and argmax": head_step(model, args),
        "token choice, T=0.8 top-p 0.95": choice_step(model, args, sampling),
    }
    print(
        f"{args.size}, {args.rows} rows, cache of {args.length} positions filled to "
        f"{args.filled}, {args.steps} steps a loop"
    )
    for name, seconds in parts.items():
        print(f"{name:36}{1e3 * seconds:9.2f} ms")
    position_bytes = 2 * args.rows * backbone.hidden_dim * 4  # keys and values, one layer
    read_bytes = position_bytes * positions_read(backbone, args.length, args)
    short_bytes = position_bytes * positions_read(backbone, SHORT_CACHE, args)
    filled_bytes = position_bytes * backbone.num_layers * (args.filled + args.steps / 2)
    extra = parts[f"layers, {args.length}-position cache"]
    extra -= parts[f"layers, {SHORT_CACHE}-position cache"]
    weight_bytes = 4 * backbone.count_params()
    flops = 2 * backbone.count_params() * args.rows
    print(
        f"Machine, measured here: {bandwidth / 1e9:.1f} GB/s read, {matmul / 1e9:.0f} GFLOP/s "
        "float32 matmul."
    )
    if extra > 0:
        more = read_bytes - short_bytes
        print(
            f"The longer cache adds {1e3 * extra:.1f} ms for the {more / 1e6:.0f} MB more that a "
            f"step reads of it: {more / extra / 1e9:.1f} GB/s, {more / extra / bandwidth:.0%} of "
            "the bandwidth."
        )
    print(
        f"A step reads {read_bytes / 1e6:.0f} MB of the {args.length}-position cache (the blocks "
        f"its layers see; {filled_bytes / 1e6:.0f} MB filled)."
    )
    print(
        f"At the measured rates the step reads {weight_bytes / 1e6:.0f} MB of weights and the "
        f"filled cache ({1e3 * (weight_bytes + filled_bytes) / bandwidth:.1f} ms) and computes "
        f"{flops / 1e9:.1f} GFLOP ({1e3 * flops / matmul:.1f} ms)."
    )


def positions_read(backbone, length: int, args) -> float:
    """Cache positions a step reads, over all layers, on average over the loop's steps: the
    blocks each layer sees (`kv_cache.visible_blocks`)."""
    start = min(args.filled, length - args.steps)
    total = 0
    for layer in backbone.transformer_layers:
        for index in range(start, start + args.steps):
            first, end = kv_cache.visible_blocks(index, layer.attention_type, layer.window_size)
            total += (int(end) - int(first)) * kv_cache.BLOCK_POSITIONS
    return total / args.steps


if __name__ == "__main__":
    main()
