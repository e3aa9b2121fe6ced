"""Callbacks of a training run: evaluation, throughput, checkpoints, and stopping."""

from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from neo_keras import file_io
from neo_keras.accelerators import is_tpu
from neo_keras.checkpoints import RunDirectory
from neo_keras.models.gpt_neo.presets import PRESET_CONFIG_FILE
from neo_keras.training.lm_trainer import CausalLMTrainer


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving the bad weights."""


def optimizer_step(model: CausalLMTrainer) -> int:
    """The run's step: optimizer updates so far, across resumptions."""
    return int(model.optimizer.iterations.numpy())


class ValidationEvaluator(keras.callbacks.Callback):
    """Adds `val_loss` and `val_perplexity` to the logs at the end of every epoch.

    The loss is token-weighted over the whole validation set. Put this callback first, so
    the ones after it (TensorBoard, best checkpoint) see the values.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset | tf.distribute.DistributedDataset,
        steps: int | None = None,
    ):
        """`dataset`: batches of one replica, or distributed over the trainer's strategy."""
        super().__init__()
        self.dataset = dataset
        self.steps = steps
        self._function = None

    def _evaluate(self) -> float:
        trainer: CausalLMTrainer = self.model
        strategy = trainer.distribute_strategy
        if self._function is None:

            @tf.function
            def sums(batch):
                per_replica = strategy.run(trainer.evaluation_sums, args=(batch,))
                return [strategy.reduce("SUM", v, axis=None) for v in per_replica]

            self._function = sums
        loss_sum, weight_sum = 0.0, 0.0
        for index, batch in enumerate(self.dataset):
            if self.steps is not None and index >= self.steps:
                break
            batch_loss, batch_weight = self._function(batch)
            loss_sum += float(batch_loss)
            weight_sum += float(batch_weight)
        if weight_sum == 0:
            raise ValueError("The validation split has no target tokens.")
        return loss_sum / weight_sum

    def on_epoch_end(self, epoch, logs=None):
        loss = self._evaluate()
        logs["val_loss"] = loss
        logs["val_perplexity"] = math.exp(min(loss, 80.0))


class Throughput(keras.callbacks.Callback):
    """Adds `tokens_per_second` and, when the peak is known, `mfu` to the batch logs.

    Args:
        tokens_per_step: tokens in one global batch.
        flops_per_token: training FLOPs per token (forward and backward).
        peak_flops: the hardware's peak FLOP/s over all replicas; None omits MFU.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float, peak_flops: float | None):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self._last_time = None
        self._last_step = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._last_time is None:
            self._last_time = time.perf_counter()
            self._last_step = optimizer_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        now, step = time.perf_counter(), optimizer_step(self.model)
        if step > self._last_step and now > self._last_time:
            rate = self.tokens_per_step * (step - self._last_step) / (now - self._last_time)
            logs["tokens_per_second"] = rate
            if self.peak_flops:
                logs["mfu"] = rate * self.flops_per_token / self.peak_flops
        self._last_time, self._last_step = now, step

    def on_epoch_end(self, epoch, logs=None):
        self._last_time = None  # validation time is not training time


def flops_per_token(backbone: keras.Model, sequence_length: int) -> float:
    """Training FLOPs per token: 6 per parameter used in a matmul plus attention scores."""
    positions = backbone.max_sequence_length * backbone.hidden_dim
    parameters = backbone.count_params() - positions
    attention = 12 * backbone.num_layers * backbone.hidden_dim * sequence_length
    return 6 * parameters + attention


def measured_peak_flops(dtype: str) -> float:
    """FLOP/s of a large matmul on this host: the CPU's practical peak, for MFU on CPUs."""
    size = 2048
    a = tf.random.normal((size, size), dtype=dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x), jit_compile=True)
    matmul(a).numpy()
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        matmul(a).numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_flops(
    peak_tflops: float, mixed_precision: str, strategy: tf.distribute.Strategy
) -> float | None:
    """The peak FLOP/s that MFU is measured against: `peak_tflops` when given, measured on
    CPUs, unknown (None) on other chips."""
    if peak_tflops:
        return peak_tflops * 1e12
    if is_tpu(strategy) or tf.config.list_logical_devices("GPU"):
        return None  # unknown chip: give --peak_tflops to report MFU
    return measured_peak_flops("bfloat16" if mixed_precision == "bfloat16" else "float32")


class StepLogger(keras.callbacks.Callback):
    """Writes per-step scalars to TensorBoard under the optimizer's step count."""

    def __init__(self, log_dir: str, every: int = 1):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.every = every

    def on_train_batch_end(self, batch, logs=None):
        step = optimizer_step(self.model)
        if step % self.every:
            return
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                tf.summary.scalar(name, value)
            if "loss" in logs:
                tf.summary.scalar("perplexity", math.exp(min(float(logs["loss"]), 80.0)))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=optimizer_step(self.model)):
            for name in ("val_loss", "val_perplexity"):
                if name in (logs or {}):
                    tf.summary.scalar(name, logs[name])
        self.writer.flush()


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops at the first NaN or infinite loss or gradient, before that step is checkpointed."""

    def __init__(self):
        super().__init__()
        self.failed_step = None

    def on_train_batch_end(self, batch, logs=None):
        # A non-finite gradient has just been applied, even when this step's loss was finite.
        watched = (float(logs.get("loss", 0.0)), float(logs.get("gradient_norm", 0.0)))
        if not np.all(np.isfinite(watched)):
            self.failed_step = optimizer_step(self.model)
            self.model.stop_training = True
            logs["non_finite"] = True


class StopAtStep(keras.callbacks.Callback):
    """Ends training once the optimizer has taken `last_step` steps."""

    def __init__(self, last_step: int):
        super().__init__()
        self.last_step = last_step

    def on_train_batch_end(self, batch, logs=None):
        if optimizer_step(self.model) >= self.last_step:
            self.model.stop_training = True


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state and step every `every` steps, for exact resumption.

    `restore()` returns the step reached (0 for a fresh run). Nothing is saved for a step
    whose loss was not finite. With `writes` False (a worker that is not the chief) it
    restores but never saves: its variables equal the chief's, which saves them.
    """

    def __init__(
        self, directory: str, causal_lm: keras.Model, optimizer, every: int, writes: bool = True
    ):
        super().__init__()
        self.every = every
        self.writes = writes
        self.checkpoint = tf.train.Checkpoint(model=causal_lm, optimizer=optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        self._saved_step = None
        self._last_loss_finite = True

    def restore(self) -> int:
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(self.checkpoint.optimizer.iterations.numpy())
        self._saved_step = step
        logging.info("Resumed from %s at step %d.", latest, step)
        return step

    def save(self) -> None:
        step = optimizer_step(self.model)
        if self.writes and step != self._saved_step:
            self.manager.save(checkpoint_number=step)
            self._saved_step = step

    def on_train_batch_end(self, batch, logs=None):
        self._last_loss_finite = not logs.get("non_finite")
        if not self._last_loss_finite:
            return
        if optimizer_step(self.model) // self.every != (self._saved_step or 0) // self.every:
            self.save()

    def on_train_end(self, logs=None):
        if self._last_loss_finite:
            self.save()


class PresetCheckpoints(keras.callbacks.Callback):
    """Keeps the run's `best` (lowest validation loss) and `latest` Keras presets.

    Each is written to a temporary sibling and renamed, so a reader never sees half a preset.
    The best loss so far is kept beside them (`RunDirectory.best_record`) so that a resumed
    run continues the comparison.
    """

    def __init__(self, run: RunDirectory, causal_lm: keras.Model):
        super().__init__()
        self.run = run
        self.causal_lm = causal_lm
        self.best_loss = math.inf
        if file_io.exists(run.best_record):
            self.best_loss = json.loads(file_io.read_text(run.best_record))["val_loss"]

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        save_preset_atomically(self.causal_lm, self.run.preset("latest"))
        if loss is not None and loss < self.best_loss:
            self.best_loss = loss
            save_preset_atomically(self.causal_lm, self.run.preset("best"))
            record = {"val_loss": loss, "step": optimizer_step(self.model)}
            file_io.write_text(self.run.best_record, json.dumps(record))


def save_preset_atomically(causal_lm: keras.Model, path: str) -> None:
    """`save_to_preset` into `path`, replacing what was there only once the new one is whole."""
    with file_io.staged_tree(path, last_file=PRESET_CONFIG_FILE) as staged:
        causal_lm.save_to_preset(staged)
