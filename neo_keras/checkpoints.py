"""A training run's directory, and where a model lives: a run's checkpoint, or anything
`from_preset` reads.

`RunDirectory` is the one place the run's files are named: the trainer writes through it, and
train, evaluate and export resolve a model reference with `resolve_source`. Any of these paths
may be on a `tf.io.gfile` file system such as `gs://`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from neo_keras import file_io
from neo_keras.models.gpt_neo import presets

CHECKPOINT_NAMES = ("best", "latest")
DEFAULT_CHECKPOINT = "best"


@dataclass(frozen=True)
class RunDirectory:
    """The files of a training run under `root`:

    run_config.json                     the run's flags, checked when it resumes
    logs/                               TensorBoard scalars
    checkpoints/best/                   Keras preset of the lowest validation loss
    checkpoints/best_val_loss.json      that loss and its step
    checkpoints/latest/                 Keras preset of the last validation pass
    checkpoints/resume/                 weights, optimizer state and step
    """

    root: str

    @property
    def run_config(self) -> str:
        return os.path.join(self.root, "run_config.json")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    def preset(self, name: str) -> str:
        """The Keras preset `name` ("best" or "latest")."""
        return os.path.join(self.checkpoints, name)

    @property
    def best_record(self) -> str:
        return os.path.join(self.checkpoints, "best_val_loss.json")

    @property
    def resume(self) -> str:
        return os.path.join(self.checkpoints, "resume")

    def is_run(self) -> bool:
        """True when the trainer wrote here: there is `checkpoints/` or `run_config.json`."""
        return file_io.isdir(self.checkpoints) or file_io.isfile(self.run_config)

    def read_config(self) -> dict | None:
        """The run's flags, or None before the run has written them."""
        if not file_io.isfile(self.run_config):
            return None
        try:
            return json.loads(file_io.read_text(self.run_config))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SourceError(
                f"Cannot read the training config {self.run_config}: {error}. Fix or remove "
                "the file."
            ) from error


class SourceError(ValueError):
    """The source is missing, is not a GPT-Neo model, or names a checkpoint that is absent."""


class MissingCheckpointError(SourceError, FileNotFoundError):
    """A training output directory without the checkpoint asked for."""


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


def resolve_source(reference: str, checkpoint: str | None = None) -> Source:
    """Resolves `reference`; a training output dir resolves to its `checkpoint` (default best).

    A checkpoint directory given directly (`<run>/checkpoints/<name>`) keeps the run's
    training config. Any other source (a Hugging Face directory, an `hf://` id, a named size,
    a Keras preset) is returned as it is, for `from_preset` to judge; a `checkpoint` named for
    one is an error.
    """
    if checkpoint is not None and checkpoint not in CHECKPOINT_NAMES:
        raise SourceError(f"checkpoint must be one of {CHECKPOINT_NAMES}, got {checkpoint!r}.")
    if presets.is_hub_reference(reference):
        if checkpoint is not None:
            raise _not_a_run(reference, checkpoint)
        return Source(reference, reference, None, None)
    run = RunDirectory(reference)
    if file_io.isdir(reference) and run.is_run():
        name = checkpoint or DEFAULT_CHECKPOINT
        return Source(reference, _checkpoint_of(run, name), name, run.read_config())
    if checkpoint is not None:
        raise _not_a_run(reference, checkpoint)
    run = _run_of_checkpoint(reference)
    if run is None:
        return Source(reference, reference, None, None)
    name = os.path.basename(os.path.normpath(reference))
    return Source(reference, reference, name, run.read_config())


def _not_a_run(reference: str, checkpoint: str) -> SourceError:
    return SourceError(
        f"--checkpoint {checkpoint} applies to training output directories (holding "
        f"checkpoints/ and run_config.json); {reference} is not one. Drop the flag "
        "or point --model at the training output directory."
    )


def _checkpoint_of(run: RunDirectory, name: str) -> str:
    if file_io.isdir(run.preset(name)):
        return run.preset(name)
    present = [other for other in CHECKPOINT_NAMES if file_io.isdir(run.preset(other))]
    raise MissingCheckpointError(
        f"{run.root} is a training output directory but has no {name!r} checkpoint "
        f"(found: {present or 'none'}); "
        + (
            f"pick one with --checkpoint {present[0]}."
            if present
            else "training has not saved a checkpoint yet."
        )
    )


def _run_of_checkpoint(path: str) -> RunDirectory | None:
    """The run when `path` is `<run>/checkpoints/<name>` of a run with its config, else None."""
    checkpoints = os.path.dirname(file_io.absolute(path).rstrip("/"))
    run = RunDirectory(os.path.dirname(checkpoints))
    if checkpoints != run.checkpoints or not file_io.isfile(run.run_config):
        return None
    return run
