"""Forward and train-step throughput of GPT-Neo here beside `transformers` (PyTorch), one run.

Both sides get the same 125M-shaped model with the same random weights, the same batch, and
AdamW for the train step. Keras runs its XLA-compiled functions; PyTorch runs eager, as
`transformers` users run it by default. Prints tokens/s for each and the ratio.

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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from reference import random_reference_model  # noqa: E402
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


def keras_twin(torch_model: GPTNeoForCausalLM, dtype: str) -> GPTNeoCausalLM:
    """The same weights in Keras; bfloat16 means Keras' mixed policy (float32 variables)."""
    with tempfile.TemporaryDirectory() as directory:
        torch_model.save_pretrained(directory)
        policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
        return GPTNeoCausalLM.from_preset(directory, dtype=policy)


def seconds_per_call(fn, steps: int) -> float:
    fn()  # warm-up: compiles the XLA functions
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def keras_forward(model: GPTNeoCausalLM, inputs: dict):
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return lambda: forward(inputs).numpy()


def keras_train_step(model: GPTNeoCausalLM, inputs: dict, labels, weights):
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return lambda: model.train_on_batch(inputs, labels, sample_weight=weights)


def torch_forward(model: GPTNeoForCausalLM, token_ids):
    def run():
        with torch.no_grad():
            model(token_ids).logits.float().numpy()

    return run


def torch_train_step(model: GPTNeoForCausalLM, token_ids):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def run():
        loss = model(token_ids, labels=token_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return run


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    vocabulary_size = presets.backbone_config(args.size)["vocabulary_size"]
    token_ids = rng.integers(0, vocabulary_size, (args.batch_size, args.sequence_length))
    token_ids = token_ids.astype("int32")
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    labels = np.roll(token_ids, -1, axis=1)
    weights = np.ones_like(token_ids, dtype="float32")
    weights[:, -1] = 0
    torch_ids = torch.from_numpy(token_ids).long()

    torch_model = random_reference_model(args.size)
    keras_model = keras_twin(torch_model, args.dtype)
    if args.dtype == "bfloat16":
        torch_model.to(torch.bfloat16)
    tokens = args.batch_size * args.sequence_length
    torch_model.eval()
    rows = [("forward", keras_forward(keras_model, inputs), torch_forward(torch_model, torch_ids))]
    rows.append(
        (
            "train step",
            keras_train_step(keras_model, inputs, labels, weights),
            torch_train_step(torch_model.train(), torch_ids),
        )
    )

    print(
        f"{args.size}, {args.dtype}, batch {args.batch_size} x {args.sequence_length} tokens; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"TF {tf.__version__}, torch {torch.__version__}"
    )
    print(f"{'':12}{'neo-keras tok/s':>18}{'transformers tok/s':>21}{'ratio':>8}")
    for name, ours, theirs in rows:
        ours_tps = tokens / seconds_per_call(ours, args.steps)
        theirs_tps = tokens / seconds_per_call(theirs, args.steps)
        print(f"{name:12}{ours_tps:18.1f}{theirs_tps:21.1f}{ours_tps / theirs_tps:7.2f}x")


if __name__ == "__main__":
    main()
