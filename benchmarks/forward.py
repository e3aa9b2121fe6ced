"""Forward and train-step throughput of GPT-Neo here beside `transformers` (PyTorch), one run.

Both sides get the same 125M-shaped model with the same random weights and the same batch.
Keras runs XLA-compiled functions (the train step is `CausalLMTrainer`'s, as in
`neo_keras.train`); PyTorch runs eager, as `transformers` users run it by default. bfloat16
means Keras' mixed_bfloat16 policy against torch autocast. Prints tokens/s and the ratio.

    python benchmarks/forward.py                         # 125M, float32, batch 2 x 512
    python benchmarks/forward.py --dtype bfloat16 --steps 3
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from reference import random_reference_model  # noqa: E402
from train import keras_step, torch_step  # noqa: E402
from transformers import GPTNeoForCausalLM  # noqa: E402

from neo_keras import GPTNeoCausalLM  # noqa: E402
from neo_keras.models.gpt_neo import presets  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="gpt_neo_125m", choices=sorted(presets.BACKBONE_CONFIGS))
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    return parser.parse_args()


def seconds_per_call(fn, steps: int) -> float:
    fn()  # warm-up: compiles the XLA functions
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def keras_forward(checkpoint_dir: str, dtype: str, inputs: dict):
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    model = GPTNeoCausalLM.from_preset(checkpoint_dir, dtype=policy)
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return lambda: forward(inputs).numpy()


def torch_forward(checkpoint_dir: str, dtype: str, token_ids):
    model = GPTNeoForCausalLM.from_pretrained(checkpoint_dir).eval()

    def run():
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == "bfloat16"):
            model(token_ids).logits.float().numpy()

    return run


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    vocabulary_size = presets.backbone_config(args.size)["vocabulary_size"]
    token_ids = rng.integers(0, vocabulary_size, (args.batch_size, args.sequence_length))
    token_ids = token_ids.astype("int32")
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    weights = np.ones_like(token_ids, dtype="float32")
    weights[:, -1] = 0
    batch = (inputs, np.roll(token_ids, -1, axis=1), weights)
    torch_ids = torch.from_numpy(token_ids).long()
    tokens = args.batch_size * args.sequence_length

    print(
        f"{args.size}, {args.dtype}, batch {args.batch_size} x {args.sequence_length} tokens; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"TF {tf.__version__}, torch {torch.__version__}"
    )
    print(f"{'':12}{'neo-keras tok/s':>18}{'transformers tok/s':>21}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        random_reference_model(args.size).save_pretrained(checkpoint_dir)
        rows = [
            (
                "forward",
                lambda: keras_forward(checkpoint_dir, args.dtype, inputs),
                lambda: torch_forward(checkpoint_dir, args.dtype, torch_ids),
            ),
            (
                "train step",
                lambda: keras_step(checkpoint_dir, args.dtype, batch)[0],
                lambda: torch_step(checkpoint_dir, args.dtype, torch_ids),
            ),
        ]
        for name, make_ours, make_theirs in rows:
            ours = tokens / seconds_per_call(make_ours(), args.steps)
            theirs = tokens / seconds_per_call(make_theirs(), args.steps)
            print(f"{name:12}{ours:18.1f}{theirs:21.1f}{ours / theirs:7.2f}x")


if __name__ == "__main__":
    main()
