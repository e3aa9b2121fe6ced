"""Peak memory of one train step, with and without the memory savers, beside the plan.

Each variant runs in a fresh process whose TensorFlow CPU allocator keeps statistics
(`TF_CPU_ALLOCATOR_USE_BFC`), so the peak of the XLA-compiled step is read from TensorFlow
itself (`neo_keras.training.step_memory`, which explains the `--arena_gib` block each child
takes first). The plan column is `neo_keras.training.memory_plan`'s figure for the same step.

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
    parser.add_argument(
        "--arena_gib",
        type=float,
        default=8.0,
        help="Block freed before the step: over twice its largest buffer.",
    )
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one measurement, in a child
    return parser.parse_args()


def run_config(args: argparse.Namespace, variant: dict):
    """The training program's configuration of `variant`'s step: float32, AdamW."""
    from neo_keras.training.config import TrainConfig

    return TrainConfig(
        output_dir="unused",
        dataset="unused",
        model_size=args.size,
        batch_size=args.batch_size,
        remat=variant.get("remat", False),
        loss_chunk_size=variant["loss_chunk_size"],
    )


def measure(args: argparse.Namespace, variant: dict) -> dict:
    """One train step of `variant`, built as the training program builds it, in this process,
    from the allocator's counts."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from neo_keras.models.gpt_neo.attention import GPTNeoAttention
    from neo_keras.training import step_memory
    from neo_keras.training.run import build_trainer

    step_memory.reserve_arena(args.arena_gib)
    if not variant["banded"]:
        GPTNeoAttention._banded = lambda self, length: False
    config = run_config(args, variant)
    measured = step_memory.measure_train_step(
        lambda: build_trainer(config, steps=1), args.batch_size, args.sequence_length
    )
    return {"resident": measured.resident, "peak": measured.peak}


def plan(args: argparse.Namespace, variant: dict) -> int:
    """`neo_keras.training.memory_plan`'s step peak for `variant`."""
    from neo_keras.models.gpt_neo import presets
    from neo_keras.training.memory_plan import memory_plan_of

    backbone_config = presets.backbone_config(args.size)
    if not variant["banded"]:  # local layers then score every key, as global ones do
        backbone_config["window_size"] = args.sequence_length
    config = run_config(args, variant)
    return memory_plan_of(config, backbone_config, args.sequence_length, replicas=1).peak


def main() -> None:
    args = parse_args()
    if args.variant:
        print(json.dumps(measure(args, VARIANTS[args.variant])))
        return
    environment = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    print(f"{args.size}, batch {args.batch_size} x {args.sequence_length}, float32, AdamW")
    print(
        f"{'variant':40}{'resident GiB':>14}{'step peak GiB':>15}{'ratio':>8}"
        f"{'plan GiB':>10}{'plan/peak':>11}"
    )
    first = None
    for name in VARIANTS:
        child = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], f"--variant={name}"],
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        first = first or figures["peak"]
        planned = plan(args, VARIANTS[name])
        print(
            f"{name:40}{figures['resident'] / 2**30:14.2f}{figures['peak'] / 2**30:15.2f}"
            f"{figures['peak'] / first:7.2f}x{planned / 2**30:10.2f}"
            f"{planned / figures['peak']:10.2f}x"
        )
    print("resident: weights and optimizer state between steps; ratio: over the first row;")
    print("plan: neo_keras.training.memory_plan's step peak for the same step.")


if __name__ == "__main__":
    main()
