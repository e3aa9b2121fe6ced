"""What defines a training run, and the checks that refuse one before anything is built.

`TrainConfig` has one field per flag of `python -m neo_keras.train`. Each `check_*` raises
`ConfigurationError` with one sentence naming the flag and the fix; `train` runs them all
before it builds a model or writes a file, so a refused start leaves `--output_dir` as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math

from absl import logging

from neo_keras import file_io
from neo_keras.accelerators import STRATEGIES, worker_count
from neo_keras.checkpoints import RunDirectory
from neo_keras.models.gpt_neo import presets


class ConfigurationError(ValueError):
    """A setting that cannot work, found before any compute is spent."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run. The program's flags map one to one onto these fields."""

    output_dir: str
    dataset: str
    data_dir: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    init: str = "scratch"
    model_size: str = "gpt_neo_125m"
    tokenizer: str | None = None
    dropout: float | None = None
    batch_size: int = 8
    micro_batch_size: int | None = None
    train_steps: int | None = None
    epochs: float | None = None
    eval_every: int = 1000
    eval_steps: int | None = None
    save_every: int = 1000
    optimizer: str = "adamw"
    schedule: str = "cosine"
    learning_rate: float = 5e-5
    end_learning_rate: float = 0.0
    warmup_steps: int = 0
    decay_steps: int | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    mixed_precision: str = "float32"
    remat: bool = False
    loss_chunk_size: int = 0
    accelerator: str = ""
    strategy: str = "auto"
    tpu: str = ""
    cpu_devices: int = 0
    steps_per_execution: int = 1
    jit_compile: bool = True
    seed: int = 0
    shuffle_buffer: int = 10_000
    peak_tflops: float = 0.0
    log_every: int = 1
    verbose: int = 1


# The fields that take one of a few values: their flags are enums, so a typo is refused as
# the command line is parsed.
CHOICES = {
    "optimizer": ("adamw", "adafactor"),
    "schedule": ("cosine", "linear", "constant"),
    "mixed_precision": ("float32", "bfloat16"),
    "strategy": STRATEGIES,
}


# Settings that may change between a run and its resumption; every other one must match.
# Memory savers (remat, loss chunks, micro-batches) change how a step is computed, not its value.
OPERATIONAL_FIELDS = {
    "remat",
    "loss_chunk_size",
    "accelerator",
    "data_dir",
    "train_steps",
    "epochs",
    "eval_every",
    "eval_steps",
    "save_every",
    "strategy",
    "tpu",
    "cpu_devices",
    "steps_per_execution",
    "jit_compile",
    "peak_tflops",
    "log_every",
    "verbose",
    "micro_batch_size",
}


def check_output_dir(config: TrainConfig) -> bool:
    """Returns True when `output_dir` holds this run already (a resumption).

    Raises `ConfigurationError` when it holds a run of another configuration, or is a file.
    """
    if file_io.isfile(config.output_dir):
        raise ConfigurationError(
            f"--output_dir={config.output_dir} is a file, not a directory: give a directory "
            "for the run's checkpoints and logs (a new one, or the run's to resume it)."
        )
    previous = RunDirectory(config.output_dir).read_config()
    if previous is None:
        return False
    current = dataclasses.asdict(config)
    changed = {
        name: (previous.get(name), value)
        for name, value in current.items()
        if name not in OPERATIONAL_FIELDS and previous.get(name) != value
    }
    if changed:
        details = ", ".join(f"--{k} was {a!r}, now {b!r}" for k, (a, b) in sorted(changed.items()))
        raise ConfigurationError(
            f"{config.output_dir} holds a run of another configuration ({details}). "
            "Use a new --output_dir, or the original flags to resume that run."
        )
    return True


def write_run_config(config: TrainConfig) -> None:
    """Records the run's flags, which a resumption must match (but `OPERATIONAL_FIELDS`)."""
    path = RunDirectory(config.output_dir).run_config
    file_io.write_text(path, json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True))


def check_intervals(config: TrainConfig) -> None:
    if config.eval_every < 1 or config.save_every < 1:
        raise ConfigurationError("--eval_every and --save_every must be positive.")


def check_model_source(config: TrainConfig) -> None:
    """Raises `ConfigurationError` for an `--init`, `--model_size` or `--tokenizer` that
    names nothing: found before a model is built."""
    if config.init != "scratch":
        try:
            presets.check_exists(config.init)
        except FileNotFoundError as error:
            raise ConfigurationError(f"--init: {error}") from None
        return
    try:
        presets.backbone_config(config.model_size)
    except ValueError as error:
        raise ConfigurationError(f"--model_size: {error}") from None
    if config.tokenizer and not file_io.exists(config.tokenizer):
        raise ConfigurationError(
            f"--tokenizer={config.tokenizer} does not exist: give a tokenizer.json, or a "
            "directory holding one (a Hugging Face checkpoint's, say)."
        )


def check_batch_sizes(config: TrainConfig, replicas: int) -> None:
    """Raises `ConfigurationError` for batch sizes that do not split over `replicas`."""
    per_replica, remainder = divmod(config.batch_size, replicas)
    if remainder:
        raise ConfigurationError(
            f"--batch_size={config.batch_size} does not split evenly over {replicas} replicas."
        )
    if config.micro_batch_size and per_replica % config.micro_batch_size:
        raise ConfigurationError(
            f"--batch_size={config.batch_size} is {per_replica} per replica, not a multiple of "
            f"--micro_batch_size={config.micro_batch_size}; use a batch size divisible by "
            f"replicas x micro-batch ({replicas} x {config.micro_batch_size})."
        )
    for name in ("eval_every", "save_every"):
        if getattr(config, name) % config.steps_per_execution:
            raise ConfigurationError(
                f"--{name}={getattr(config, name)} must be a multiple of "
                f"--steps_per_execution={config.steps_per_execution}."
            )


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """`train_steps`, or `epochs` passes of `steps_per_epoch` global batches.

    A `train_steps` given with `epochs` (a flag over a flagfile) wins, and the log says so.
    """
    if config.train_steps:
        if config.epochs:
            logging.info(
                "--train_steps=%d given: --epochs=%s is not used.",
                config.train_steps,
                config.epochs,
            )
        return config.train_steps
    if config.epochs:
        return max(1, math.floor(config.epochs * steps_per_epoch))
    raise ConfigurationError("Give --train_steps or --epochs.")


# More passes than this over one dataset is rarely meant; say so before the compute is spent.
_MANY_EPOCHS = 20


def warn_about_run_length(config: TrainConfig, steps: int, steps_per_epoch: int) -> None:
    """Logs a warning for a run that repeats its data many times or ends inside its warmup."""
    epochs = steps / steps_per_epoch
    if epochs > _MANY_EPOCHS:
        logging.warning(
            "%d steps are %.0f passes over %s (%d steps each); for a small dataset give "
            "--epochs instead of --train_steps.",
            steps,
            epochs,
            config.dataset,
            steps_per_epoch,
        )
    if config.warmup_steps >= steps:
        logging.warning(
            "--warmup_steps=%d is not shorter than the run (%d steps): the learning rate never "
            "reaches --learning_rate.",
            config.warmup_steps,
            steps,
        )


def check_loss_chunk(config: TrainConfig, sequence_length: int) -> None:
    chunk = config.loss_chunk_size
    if chunk < 0 or (chunk and sequence_length % min(chunk, sequence_length)):
        raise ConfigurationError(
            f"--loss_chunk_size={chunk} does not divide the sequence length "
            f"{sequence_length} of {config.dataset}; use a divisor of it (0 turns chunking off)."
        )
    if chunk >= sequence_length:
        logging.warning(
            "--loss_chunk_size=%d is not shorter than the sequences (%d): one chunk saves no "
            "memory and its gradient's buffers add some; use a smaller divisor or 0.",
            chunk,
            sequence_length,
        )


def warn_about_local_output_dir(config: TrainConfig) -> None:
    if worker_count() > 1 and not file_io.is_remote(config.output_dir):
        # Only the chief writes; the others read checkpoints back when the run resumes.
        logging.warning(
            "--output_dir=%s is a local path and this job has %d workers: it must be one "
            "file system they all see (NFS), or a bucket (gs://...), or resuming fails.",
            config.output_dir,
            worker_count(),
        )
