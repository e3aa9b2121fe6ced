"""Where a model lives: a training output directory, or anything `from_preset` reads.

A training run writes `<run>/run_config.json` and Keras presets under
`<run>/checkpoints/{best,latest}`; the evaluator and the exporter both resolve a `--model`
(and `--checkpoint`) to the preset to load through this module. Any of these paths may be on a
`tf.io.gfile` file system such as `gs://`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from neo_keras import file_io

CHECKPOINTS_DIR = "checkpoints"
RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_NAMES = ("best", "latest")
DEFAULT_CHECKPOINT = "best"


class SourceError(ValueError):
    """The source is missing, is not a GPT-Neo model, or names a checkpoint that is absent."""


class MissingCheckpointError(SourceError, FileNotFoundError):
    """A training output directory without the checkpoint asked for."""


def _check_name(checkpoint: str) -> None:
    if checkpoint not in CHECKPOINT_NAMES:
        raise SourceError(f"checkpoint must be one of {CHECKPOINT_NAMES}, got {checkpoint!r}.")


def resolve_model_source(path: str, checkpoint: str = DEFAULT_CHECKPOINT) -> str:
    """What `GPTNeoCausalLM.from_preset` should open for `path`.

    A training output directory resolves to `<path>/checkpoints/<checkpoint>`; any other
    source (a Hugging Face directory, an `hf://` id, a named size, a Keras preset) is returned
    unchanged for `from_preset` to judge.
    """
    _check_name(checkpoint)
    if file_io.isdir(path) and is_training_output(path):
        return _checkpoint_dir(path, checkpoint)
    return path


@dataclass(frozen=True)
class Source:
    """A model reference resolved for loading.

    Attributes:
        reference: what was asked for (a path, an `hf://` id or a named size).
        model_path: what `GPTNeoCausalLM.from_preset` opens.
        checkpoint: `"best"` or `"latest"` when taken from a training output dir, else None.
        training_config: the training flags (`run_config.json`) when known, else None.
    """

    reference: str
    model_path: str
    checkpoint: str | None
    training_config: dict | None


def is_training_output(path: str) -> bool:
    """True for a directory the trainer wrote: it holds `checkpoints/` or `run_config.json`."""
    return file_io.isdir(os.path.join(path, CHECKPOINTS_DIR)) or file_io.isfile(
        os.path.join(path, RUN_CONFIG_FILE)
    )


def resolve_source(reference: str, checkpoint: str | None = None) -> Source:
    """Resolves `reference`; a training output dir resolves to its `checkpoint` (default best).

    A checkpoint directory given directly (`<run>/checkpoints/<name>`) keeps the run's
    training config.
    """
    if checkpoint is not None:
        _check_name(checkpoint)
    if file_io.isdir(reference) and is_training_output(reference):
        name = checkpoint or DEFAULT_CHECKPOINT
        return Source(
            reference=reference,
            model_path=_checkpoint_dir(reference, name),
            checkpoint=name,
            training_config=_read_run_config(reference),
        )
    if checkpoint is not None:
        raise SourceError(
            f"--checkpoint {checkpoint} applies to training output directories (holding "
            f"{CHECKPOINTS_DIR}/ and {RUN_CONFIG_FILE}); {reference} is not one. Drop the flag "
            "or point --model at the training output directory."
        )
    run_dir = _run_dir_of_checkpoint(reference)
    return Source(
        reference=reference,
        model_path=reference,
        checkpoint=os.path.basename(os.path.normpath(reference)) if run_dir else None,
        training_config=_read_run_config(run_dir) if run_dir else None,
    )


def _checkpoint_dir(run_dir: str, name: str) -> str:
    path = os.path.join(run_dir, CHECKPOINTS_DIR, name)
    if file_io.isdir(path):
        return path
    present = [
        other
        for other in CHECKPOINT_NAMES
        if file_io.isdir(os.path.join(run_dir, CHECKPOINTS_DIR, other))
    ]
    raise MissingCheckpointError(
        f"{run_dir} is a training output directory but has no {name!r} checkpoint "
        f"(found: {present or 'none'}); "
        + (
            f"pick one with --checkpoint {present[0]}."
            if present
            else "training has not saved a checkpoint yet."
        )
    )


def _run_dir_of_checkpoint(path: str) -> str | None:
    """The run directory when `path` is `<run>/checkpoints/<name>`, else None."""
    parent = os.path.dirname(file_io.absolute(path).rstrip("/"))
    if os.path.basename(parent) != CHECKPOINTS_DIR:
        return None
    run_dir = os.path.dirname(parent)
    return run_dir if file_io.isfile(os.path.join(run_dir, RUN_CONFIG_FILE)) else None


def _read_run_config(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not file_io.isfile(path):
        return None
    try:
        return json.loads(file_io.read_text(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(
            f"Cannot read the training config {path}: {error}. Fix or remove the file."
        ) from error
