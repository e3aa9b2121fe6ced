"""Finding and loading the model to export: a preset reference or a training output dir."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from neo_keras.models.gpt_neo import GPTNeoCausalLM, presets
from neo_keras.models.gpt_neo.hf_convert import CheckpointError

CHECKPOINTS_DIR = "checkpoints"
RUN_CONFIG_FILE = "run_config.json"
CHECKPOINT_NAMES = ("best", "latest")
DEFAULT_CHECKPOINT = "best"


class SourceError(ValueError):
    """The source is missing, is not a GPT-Neo model, or names a checkpoint that is absent."""


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
    return os.path.isdir(os.path.join(path, CHECKPOINTS_DIR)) or os.path.isfile(
        os.path.join(path, RUN_CONFIG_FILE)
    )


def resolve_source(reference: str, checkpoint: str | None = None) -> Source:
    """Resolves `reference`; a training output dir resolves to its `checkpoint` (default best).

    A checkpoint directory given directly (`<run>/checkpoints/<name>`) keeps the run's
    training config.
    """
    if checkpoint is not None and checkpoint not in CHECKPOINT_NAMES:
        raise SourceError(f"Unknown checkpoint {checkpoint!r}; choose one of {CHECKPOINT_NAMES}.")
    if os.path.isdir(reference) and is_training_output(reference):
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
    if os.path.isdir(path):
        return path
    present = [
        other
        for other in CHECKPOINT_NAMES
        if os.path.isdir(os.path.join(run_dir, CHECKPOINTS_DIR, other))
    ]
    raise SourceError(
        f"{run_dir} is a training output directory without a {name!r} checkpoint "
        f"({path} is missing; present: {present or 'none'}). "
        + (
            f"Pick one with --checkpoint {present[0]}."
            if present
            else "Training has not saved a checkpoint yet."
        )
    )


def _run_dir_of_checkpoint(path: str) -> str | None:
    """The run directory when `path` is `<run>/checkpoints/<name>`, else None."""
    parent = os.path.dirname(os.path.normpath(os.path.abspath(path)))
    if os.path.basename(parent) != CHECKPOINTS_DIR:
        return None
    run_dir = os.path.dirname(parent)
    return run_dir if os.path.isfile(os.path.join(run_dir, RUN_CONFIG_FILE)) else None


def _read_run_config(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceError(
            f"Cannot read the training config {path}: {error}. Fix or remove the file."
        ) from error


def _is_hub_reference(reference: str) -> bool:
    return reference.startswith(presets.HF_PREFIX) or reference in presets.HUB_IDS


def load_model(source: Source, dtype: str) -> GPTNeoCausalLM:
    """Loads the GPT-Neo causal LM at `source` with weights and compute in `dtype`."""
    path = source.model_path
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise SourceError(
            f"{path} is not a GPT-Neo model: it has no config.json. Give a Hugging Face "
            "GPT-Neo directory, a Keras preset (save_to_preset), a training output "
            "directory, an hf:// id or a named size."
        )
    try:
        model = GPTNeoCausalLM.from_preset(path, dtype=dtype)
    except FileNotFoundError as error:
        if os.path.exists(path) or not _is_hub_reference(path):
            raise SourceError(str(error)) from error
        raise SourceError(
            f"Cannot fetch {path} from the Hugging Face hub: {error} Download it while online "
            "(it is cached), or give a local directory."
        ) from error
    except (CheckpointError, ValueError, TypeError, KeyError, OSError) as error:
        raise SourceError(f"{path} is not a loadable GPT-Neo model: {error}") from error
    if not isinstance(model, GPTNeoCausalLM):
        raise SourceError(
            f"{path} holds a {type(model).__name__}, not a GPT-Neo causal LM; nothing exported."
        )
    return model
