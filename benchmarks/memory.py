"""Peak memory of one train step, with and without the memory savers, in one run.

Each variant runs in a fresh process whose TensorFlow CPU allocator keeps statistics
(`TF_CPU_ALLOCATOR_USE_BFC`), so the peak of the XLA-compiled step is read from TensorFlow
itself. The allocator's figures count whole chunks: a request served from a free chunk less
than twice its size (and under 128 MiB larger) is booked at the chunk's size, which made the
same step read the same peak with and without a saver. Each child therefore first takes and
frees one `--arena_gib` block, so that the step's buffers are cut from it to their own size.

The peer of every row is the first one: local attention on full T x T scores and the whole
sequence's logits at once.

    python benchmarks/memory.py
    python benchmarks/memory.py --size gpt_neo_tiny --sequence_length 512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = {
    "full T x T local scores, whole logits": {"banded": False, "loss_chunk_size": 0},
    "banded local attention": {"banded": True, "loss_chunk_size": 0},
    "banded + --loss_chunk_size 512": {"banded": True, "loss_chunk_size": 512},
    "banded + chunks + --remat": {"banded": True, "loss_chunk_size": 512, "remat": True},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="gpt_neo_125m")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--sequence_length", type=int, default=2048)
    parser.add_argument("--arena_gib", type=float, default=8.0,
                        help="Block freed before the step: over twice its largest buffer.")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one measurement, in a child
    return parser.parse_args()


def measure(args: argparse.Namespace, variant: dict) -> dict:
    """One train step of `variant` in this process; peak and resident bytes from the allocator."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
    from neo_keras.models.gpt_neo import presets
    from neo_keras.models.gpt_neo.attention import GPTNeoAttention
    from neo_keras.training.lm_trainer import CausalLMTrainer

    arena = tf.zeros([int(args.arena_gib * 2**30)], tf.uint8)  # see the module docstring
    del arena
    if not variant["banded"]:
        GPTNeoAttention._banded = lambda self, length: False
    config = presets.backbone_config(args.size)
    if variant.get("remat"):
        blocks = [f"transformer_layer_{i}" for i in range(config["num_layers"])]
        with keras.RematScope(mode="list_of_layers", layer_names=blocks):
            causal_lm = GPTNeoCausalLM(GPTNeoBackbone(**config))
    else:
        causal_lm = GPTNeoCausalLM(GPTNeoBackbone(**config))
    trainer = CausalLMTrainer(
        causal_lm, clip_norm=1.0, xla=True, loss_chunk_size=variant["loss_chunk_size"] or None
    )
    optimizer = keras.optimizers.AdamW(learning_rate=1e-5)
    optimizer.build(causal_lm.trainable_variables)
    trainer.compile(optimizer=optimizer)
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.sequence_length)
    token_ids = rng.integers(0, config["vocabulary_size"], shape).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    batch = (x, np.roll(token_ids, -1, axis=1), np.ones(shape, "float32"))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trainer.make_train_function()
    float(trainer.train_function(iterator)["loss"])  # compile, and allocate optimizer state
    resident = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    float(trainer.train_function(iterator)["loss"])
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    return {"resident": resident, "peak": peak}


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(measure(args, VARIANTS[args.variant])))
        return
    environment = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"{args.size}, batch {args.batch_size} x {args.sequence_length}, float32, AdamW")
    print(f"{'variant':40}{'resident GiB':>14}{'step peak GiB':>15}{'ratio':>8}")
    first = None
    for name in VARIANTS:
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], f"--variant={name}"],
            capture_output=True, text=True, env=environment, check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        first = first or figures["peak"]
        print(f"{name:40}{figures['resident'] / 2**30:14.2f}{figures['peak'] / 2**30:15.2f}"
              f"{figures['peak'] / first:7.2f}x")
    print("resident: weights and optimizer state between steps; ratio: over the first row.")


if __name__ == "__main__":
    main()
