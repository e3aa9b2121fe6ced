"""The memory one train step takes, as TensorFlow's allocator counts it.

On the CPU the allocator keeps counts only when TensorFlow starts with
`TF_CPU_ALLOCATOR_USE_BFC=true`. Its counts are of whole chunks: a buffer cut from a free
chunk less than twice its size (and under 128 MiB larger) is booked at the chunk's size, so
the peak of a step can read the same with and without a memory saver. `reserve_arena` takes
and frees one large block first, so that later buffers are cut from it to their own size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

CPU_STATISTICS_VARIABLE = "TF_CPU_ALLOCATOR_USE_BFC"


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """Bytes a model and its train step added to the device, over what it held before."""

    resident: int  # between steps: weights and optimizer state
    peak: int  # the most at once during a step


def reserve_arena(gib: float, device: str = "CPU:0") -> None:
    """Grows the allocator's pool by a block of `gib` GiB and frees it again; the block
    should exceed twice the largest buffer measured after it."""
    with tf.device(device):
        arena = tf.zeros([int(gib * 2**30)], tf.uint8)
    del arena


def device_bytes(device: str = "CPU:0") -> dict[str, int]:
    """The allocator's `current` and `peak` bytes on `device`."""
    try:
        return tf.config.experimental.get_memory_info(device)
    except ValueError as error:
        raise RuntimeError(
            f"TensorFlow keeps no memory counts on {device}; on the CPU start the process "
            f"with {CPU_STATISTICS_VARIABLE}=true."
        ) from error


def measure_train_step(
    build_trainer: Callable, batch_size: int, sequence_length: int, device: str = "CPU:0"
) -> StepMemory:
    """Builds a trainer with `build_trainer()` (a compiled `CausalLMTrainer` with a built
    optimizer) and measures one step on random tokens.

    The first step compiles; the second is the one measured. Counts are relative to what
    `device` held before the trainer was built, so several measurements can share a process.
    """
    before = device_bytes(device)["current"]
    trainer = build_trainer()
    vocabulary_size = trainer.causal_lm.backbone.vocabulary_size
    token_ids = np.random.default_rng(0).integers(
        0, vocabulary_size, (batch_size, sequence_length), dtype="int32"
    )
    features = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    batch = (features, np.roll(token_ids, -1, axis=1), np.ones(token_ids.shape, "float32"))
    batches = iter(tf.data.Dataset.from_tensors(batch).repeat())
    train_function = trainer.make_train_function()
    float(train_function(batches)["loss"])
    resident = device_bytes(device)["current"] - before
    tf.config.experimental.reset_memory_stats(device)
    float(train_function(batches)["loss"])
    peak = device_bytes(device)["peak"] - before
    return StepMemory(resident=resident, peak=peak)
