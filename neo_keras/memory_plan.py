"""The memory plan of a training run, per replica of the hardware it is sized for.

    python -m neo_keras.memory_plan --flagfile configs/codeclippy.flags
    python -m neo_keras.memory_plan --flagfile configs/apps_1.3b.flags --accelerator=v4-8
    python -m neo_keras.memory_plan --flagfile configs/demo.flags --measure

Takes the flags of `neo_keras.train`. Prints the plan (weights, optimizer state, gradient
accumulator, bfloat16 weight copies, gradients, activations, logits, and the step's peak)
for one replica of `--accelerator`. Exits with status 1 when the step may not fit, 2 for a
configuration that cannot be planned. With `--measure`, also runs one step of random tokens
at the run's shapes on this host (its first GPU, else its CPU) and prints the peak that
TensorFlow's allocator measured beside the plan.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from typing import NoReturn

from absl import app, flags, logging

import neo_keras.train  # noqa: F401  (defines the training flags)
from neo_keras.models.gpt_neo import presets
from neo_keras.training.config import TrainConfig, check_batch_sizes
from neo_keras.training.memory_plan import (
    GIB,
    accelerator_of,
    describe_memory_plan,
    memory_plan_of,
)
from neo_keras.training.run import load_tokenizer_of
from neo_keras.training.step_memory import CPU_STATISTICS_VARIABLE

flags.DEFINE_integer(
    "sequence_length",
    0,
    "Tokens per sequence; by default the built dataset's, else the model's positions.",
)
flags.DEFINE_bool("measure", False, "Also measure one step's peak on this host.")
flags.DEFINE_float(
    "arena_gib", 4.0, "With --measure on the CPU: GiB reserved first (see step_memory)."
)
FLAGS = flags.FLAGS


def backbone_config_of(config: TrainConfig) -> dict:
    """The backbone configuration the run trains, read without building the model."""
    if config.init == "scratch":
        overrides = {"dropout": config.dropout} if config.dropout is not None else {}
        # A hub tokenizer would have to be downloaded; GPT-2's vocabulary is assumed for it.
        if config.tokenizer and not config.tokenizer.startswith(presets.HF_PREFIX):
            overrides["vocabulary_size"] = load_tokenizer_of(config.tokenizer).vocabulary_size()
        return presets.backbone_config(config.model_size, **overrides)
    if config.init in presets.BACKBONE_CONFIGS:
        return presets.backbone_config(config.init)
    from neo_keras import file_io
    from neo_keras.models.gpt_neo import hf_convert

    path = os.path.join(config.init, presets.PRESET_CONFIG_FILE)
    if config.init.startswith(presets.HF_PREFIX) or not file_io.exists(path):
        raise ValueError(
            f"--init={config.init}: the plan reads a named size ({sorted(presets.HUB_IDS)}) "
            f"or a directory with a {presets.PRESET_CONFIG_FILE}; give the size as --init."
        )
    saved = json.loads(file_io.read_text(path))
    if "model_type" in saved:  # a Hugging Face checkpoint
        return hf_convert.backbone_kwargs_from_hf_config(saved)
    return saved["config"]


def sequence_length_of(config: TrainConfig, backbone_config: dict) -> int:
    """`--sequence_length`, else that of the dataset built in `--data_dir`, else that of its
    builder config in `data_builders/` (from the repository's root), else the model's."""
    if FLAGS.sequence_length:
        return FLAGS.sequence_length
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(config.dataset, data_dir=config.data_dir)
        if builder.is_prepared():
            return builder.info.features["input_ids"].shape[0]
    except tfds.core.registered.DatasetNotFoundError:
        pass
    length = builder_sequence_length(config.dataset)
    if length is None:
        length = backbone_config["max_sequence_length"]
        print(
            f"{config.dataset} is unknown here: planning for {length} tokens "
            "(give --sequence_length)."
        )
    return length


def builder_sequence_length(dataset: str) -> int | None:
    """The sequence length of `dataset`'s (`name/config`) builder config in `data_builders/`,
    or None when this process cannot import that builder."""
    import tensorflow_datasets as tfds

    name, _, config_name = dataset.partition("/")
    try:
        try:
            builder_class = tfds.builder_cls(name)
        except tfds.core.registered.DatasetNotFoundError:
            importlib.import_module(f"data_builders.{name}.{name}_dataset_builder")
            builder_class = tfds.builder_cls(name)
        return builder_class.builder_configs[config_name].sequence_length
    except (ImportError, tfds.core.registered.DatasetNotFoundError, KeyError, AttributeError):
        return None


def measure(config: TrainConfig, sequence_length: int, replicas: int) -> None:
    """Runs one replica's step on this host's first GPU, else its CPU, and prints the peak."""
    import keras
    import tensorflow as tf

    from neo_keras.training import step_memory
    from neo_keras.training.run import build_trainer

    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if on_gpu:
        device = "GPU:0"
    else:
        device = "CPU:0"
        if config.mixed_precision == "bfloat16":
            print("  (XLA on the CPU computes bfloat16 in float32: a higher peak than on chips)")
        step_memory.reserve_arena(FLAGS.arena_gib)
    keras.utils.set_random_seed(config.seed)
    measured = step_memory.measure_train_step(
        lambda: build_trainer(config, steps=1),
        config.batch_size // replicas,
        sequence_length,
        device=device,
    )
    print(
        f"  {'step peak measured on ' + device:38}{measured.peak / GIB:8.2f} GiB  "
        f"(resident {measured.resident / GIB:.2f} GiB)"
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # TFDS's notes on datasets not built here
    if FLAGS.measure:  # read when TensorFlow first creates its CPU device
        os.environ.setdefault(CPU_STATISTICS_VARIABLE, "true")
    config = TrainConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)})
    try:
        hardware = accelerator_of(config)
        replicas = hardware.replicas if hardware else 1
        check_batch_sizes(config, replicas)
        backbone_config = backbone_config_of(config)
        sequence_length = sequence_length_of(config, backbone_config)
        plan = memory_plan_of(config, backbone_config, sequence_length, replicas)
    except ValueError as error:
        _exit_with_error(error)
    model = config.model_size if config.init == "scratch" else config.init
    print(f"{model}: {config.batch_size // replicas} x {sequence_length} tokens per replica")
    text, warnings = describe_memory_plan(plan, hardware, replicas)
    print(text)
    for warning in warnings:
        print(f"warning: {warning}")
    if FLAGS.measure:
        try:
            measure(config, sequence_length, replicas)
        except RuntimeError as error:
            _exit_with_error(error)
    if hardware and not plan.fits(hardware.replica_bytes):
        sys.exit(1)


def _exit_with_error(error: Exception) -> NoReturn:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    app.run(main)
