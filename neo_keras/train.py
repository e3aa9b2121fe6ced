"""Train or fine-tune GPT-Neo on a TFDS dataset.

    python -m neo_keras.train --flagfile configs/codeclippy.flags
    python -m neo_keras.train --flagfile configs/apps.flags --tpu=my-tpu --output_dir=gs://b/apps

Rerunning the same command resumes the run in --output_dir at the step it reached.
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import sys

from absl import app, flags, logging

from neo_keras.training.config import CHOICES, ConfigurationError, TrainConfig

_HELP = {
    "output_dir": "Where checkpoints, logs and run_config.json go (local path or gs://).",
    "dataset": "TFDS dataset as name/config, e.g. codeclippy/dedup or apps/train.",
    "data_dir": "TFDS data_dir the dataset was built into.",
    "train_split": "Split to train on.",
    "validation_split": "Split to evaluate on.",
    "init": "'scratch', or a model to start from: HF dir, hf://id, named size, Keras preset.",
    "model_size": "Named size when --init=scratch (gpt_neo_125m, gpt_neo_1.3b, ...).",
    "tokenizer": "Tokenizer (tokenizer.json or a directory) saved with a from-scratch model.",
    "dropout": "Dropout rate for a from-scratch model.",
    "batch_size": "Global batch size in sequences (over all replicas).",
    "micro_batch_size": "Sequences per forward/backward pass on a replica; gradients accumulate.",
    "train_steps": "Optimizer steps to train for (or give --epochs).",
    "epochs": "Passes over the training split (may be fractional).",
    "eval_every": "Steps between validation passes (and best/latest presets).",
    "eval_steps": "Validation batches per pass; all of the split when unset.",
    "save_every": "Steps between resumable checkpoints.",
    "optimizer": "Optimizer.",
    "schedule": "cosine (warmup then cosine), linear (warmup then linear to 0), or constant.",
    "learning_rate": "Peak learning rate.",
    "end_learning_rate": "Final learning rate of the cosine schedule.",
    "warmup_steps": "Linear warmup steps from 0 to the peak.",
    "decay_steps": "Cosine decay steps after warmup (default: to the last step).",
    "beta_1": "Adam beta_1.",
    "beta_2": "Adam beta_2.",
    "epsilon": "Adam epsilon.",
    "weight_decay": "Decoupled weight decay (not on biases, LayerNorm or embeddings).",
    "clip_norm": "Global-norm gradient clipping; 0 disables it.",
    "mixed_precision": "bfloat16 is mixed: float32 variables, bfloat16 compute.",
    "remat": "Recompute activations in the backward pass to save memory.",
    "loss_chunk_size": "LM head and loss over this many positions at a time (0: all at once): "
    "one chunk's logits in memory instead of the sequence's.",
    "accelerator": "Hardware the run is sized for, as a TPU type (v3-8, v4-32) or GPUs "
    "(8xa100-80gb): the step's memory plan is checked against one of its replicas.",
    "strategy": "Where training runs; auto picks a TPU, a TF_CONFIG cluster or several GPUs.",
    "cpu_devices": "Split the host CPU into this many devices, each a replica under "
    "--strategy=mirrored (to run the multi-replica path on any machine); 0 leaves it whole.",
    "tpu": "TPU name or grpc:// address; one that cannot be reached is an error.",
    "steps_per_execution": "Train steps per compiled call.",
    "jit_compile": "Compile the forward and backward passes with XLA.",
    "seed": "Seed of initialization and data order.",
    "shuffle_buffer": "Examples in the shuffle buffer.",
    "peak_tflops": "Peak TFLOP/s of all replicas, for MFU (measured on CPUs when 0).",
    "log_every": "Steps between TensorBoard points.",
    "verbose": "Progress: 0 none, 1 a bar on a terminal (plain lines in a log file), "
    "2 plain lines.",
}


def _define_flags() -> None:
    for field in dataclasses.fields(TrainConfig):
        default = field.default
        required = default is dataclasses.MISSING
        default = None if required else default
        kind = str(field.type)
        if field.name in CHOICES:
            flags.DEFINE_enum(field.name, default, CHOICES[field.name], _HELP[field.name])
        elif "bool" in kind:
            flags.DEFINE_bool(field.name, default, _HELP[field.name])
        elif "int" in kind:
            flags.DEFINE_integer(field.name, default, _HELP[field.name])
        elif "float" in kind:
            flags.DEFINE_float(field.name, default, _HELP[field.name])
        else:
            flags.DEFINE_string(field.name, default, _HELP[field.name])
        if required:
            flags.mark_flag_as_required(field.name)


_define_flags()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from neo_keras.accelerators import AcceleratorError, split_host_cpu
    from neo_keras.data.pipeline import DatasetNotBuiltError
    from neo_keras.training.run import train

    # Our progress notes (resumption, validation) at INFO; TensorFlow's own INFO chatter off.
    logging.set_verbosity(logging.INFO)
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)

    config = TrainConfig(
        **{f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)}
    )
    try:
        if config.cpu_devices:
            split_host_cpu(config.cpu_devices)
        final = train(config)
    # Expected failures: their message says what to do, and a traceback (with TFDS's list of
    # every dataset it knows, for an unbuilt one) would bury it.
    except (ConfigurationError, AcceleratorError, DatasetNotBuiltError) as error:
        sys.exit(f"error: {error}")
    logging.info("Finished: %s", final)


if __name__ == "__main__":
    app.run(main)
