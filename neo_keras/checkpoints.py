"""Where a model lives: a training output directory, or anything `from_preset` reads."""

from __future__ import annotations

import os

CHECKPOINTS_DIR = "checkpoints"
RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_NAMES = ("best", "latest")


def is_training_output(path: str) -> bool:
    """True for a directory written by training: it has `run_config.json` or `checkpoints/`."""
    return os.path.isfile(os.path.join(path, RUN_CONFIG_FILE)) or os.path.isdir(
        os.path.join(path, CHECKPOINTS_DIR)
    )


def resolve_model_source(path: str, checkpoint: str = "best") -> str:
    """Turns a model reference into something `GPTNeoCausalLM.from_preset` loads.

    A training output directory resolves to the Keras preset of one of its checkpoints
    (`<path>/checkpoints/<checkpoint>`); everything else (a Hugging Face directory, an `hf://`
    id, a named size, a Keras preset) is returned unchanged for `from_preset` to judge.

    Args:
        path: a training output directory or a `from_preset` source.
        checkpoint: which checkpoint of a training run: `"best"` or `"latest"`.

    Raises:
        ValueError: `checkpoint` is not one of the names training writes.
        FileNotFoundError: `path` is a training output without that checkpoint.
    """
    if checkpoint not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint must be one of {CHECKPOINT_NAMES}, got {checkpoint!r}.")
    if not (os.path.isdir(path) and is_training_output(path)):
        return path
    checkpoints = os.path.join(path, CHECKPOINTS_DIR)
    source = os.path.join(checkpoints, checkpoint)
    if not os.path.isdir(source):
        present = sorted(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else []
        raise FileNotFoundError(
            f"{path} is a training output directory but has no {checkpoint!r} checkpoint "
            f"(found: {present or 'none'}); pick another with --checkpoint, or train until "
            "a checkpoint is written."
        )
    return source
