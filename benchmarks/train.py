"""Train-step throughput and MFU of the neo-keras trainer beside `transformers`, in one run.

Both sides train the same 125M-shaped GPT-Neo (same random weights, same batch) with AdamW and
global-norm clipping at 1.0. neo-keras runs `CausalLMTrainer` (the step `neo_keras.train`
uses: masked token-weighted loss, XLA-compiled forward and backward); `transformers` runs
`GPTNeoForCausalLM` under PyTorch eager, its defaults. One row per precision: float32, and
bfloat16 (Keras mixed_bfloat16 against torch autocast to bfloat16).

    python benchmarks/train.py
    python benchmarks/train.py --size gpt_neo_tiny --sequence_length 256
    python benchmarks/train.py --batch_size 1 --sequence_length 2048 --loss_chunk_size 512
    python benchmarks/train.py --batch_size 1 --sequence_length 2048 --full_local_attention

`--full_local_attention` measures local layers on the full T x T score matrix, as before the
banded computation; `--loss_chunk_size` runs the LM head and loss in chunks, as the flag of
`neo_keras.train`.
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
from neo_keras.models.gpt_neo.attention import GPTNeoAttention  # noqa: E402
from neo_keras.training.callbacks import flops_per_token, measured_peak_flops  # noqa: E402
from neo_keras.training.lm_trainer import CausalLMTrainer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="gpt_neo_125m", choices=sorted(presets.BACKBONE_CONFIGS))
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--loss_chunk_size", type=int, default=0)
    parser.add_argument("--full_local_attention", action="store_true")
    return parser.parse_args()


def keras_step(checkpoint_dir: str, precision: str, batch, loss_chunk_size: int):
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    causal_lm = GPTNeoCausalLM.from_preset(checkpoint_dir, dtype=policy)
    trainer = CausalLMTrainer(
        causal_lm, clip_norm=1.0, xla=True, loss_chunk_size=loss_chunk_size or None
    )
    trainer.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-5))
    x, y, weights = batch
    data = tf.data.Dataset.from_tensors((x, y, weights)).repeat()
    iterator = iter(data)
    trainer.make_train_function()

    def run():
        logs = trainer.train_function(iterator)
        float(logs["loss"])

    return run, causal_lm


def torch_step(checkpoint_dir: str, precision: str, token_ids):
    model = GPTNeoForCausalLM.from_pretrained(checkpoint_dir).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    labels = token_ids.clone()

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            loss = model(token_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return run


def tokens_per_second(fn, tokens: int, steps: int) -> float:
    fn()  # warm-up: compilation, allocator
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return tokens * steps / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.full_local_attention:
        GPTNeoAttention._banded = lambda self, length: False
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    vocabulary = presets.backbone_config(args.size)["vocabulary_size"]
    token_ids = rng.integers(0, vocabulary, (args.batch_size, args.sequence_length)).astype("int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    weights = np.ones_like(token_ids, dtype="float32")
    weights[:, -1] = 0.0
    batch = (x, np.roll(token_ids, -1, axis=1), weights)
    tokens = args.batch_size * args.sequence_length

    print(
        f"{args.size}, batch {args.batch_size} x {args.sequence_length}, AdamW, clip 1.0, "
        f"loss chunk {args.loss_chunk_size or 'off'}, local attention "
        f"{'full T x T' if args.full_local_attention else 'banded'}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs; TF {tf.__version__}, "
        f"torch {torch.__version__}"
    )
    print(
        f"{'precision':10}{'neo-keras tok/s':>17}{'MFU':>7}{'transformers tok/s':>20}{'MFU':>7}"
        f"{'ratio':>8}"
    )
    with tempfile.TemporaryDirectory() as checkpoint_dir:
        random_reference_model(args.size).save_pretrained(checkpoint_dir)
        for precision in args.precisions.split(","):
            ours_fn, causal_lm = keras_step(checkpoint_dir, precision, batch, args.loss_chunk_size)
            flops = flops_per_token(causal_lm.backbone, args.sequence_length)
            peak = measured_peak_flops(precision)
            ours = tokens_per_second(ours_fn, tokens, args.steps)
            theirs_fn = torch_step(checkpoint_dir, precision, torch.from_numpy(token_ids).long())
            theirs = tokens_per_second(theirs_fn, tokens, args.steps)
            print(
                f"{precision:10}{ours:17.1f}{ours * flops / peak:7.1%}{theirs:20.1f}"
                f"{theirs * flops / peak:7.1%}{ours / theirs:7.2f}x"
            )
    print("MFU: achieved training FLOP/s over this machine's measured matmul peak per precision.")


if __name__ == "__main__":
    main()
