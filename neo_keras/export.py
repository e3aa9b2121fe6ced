"""Exports a GPT-Neo model for deployment.

    python -m neo_keras.export --model SRC --format keras|saved_model|hf --output OUT

SRC is a Hugging Face GPT-Neo directory or `hf://` id, a named size, a Keras preset, or a
training output directory (its best checkpoint, or `--checkpoint latest`). OUT must not
exist unless `--overwrite`; it appears complete or not at all.
"""

from __future__ import annotations

from absl import app, flags

from neo_keras.checkpoints import CHECKPOINT_NAMES
from neo_keras.exporting import DTYPES, FORMATS, ExportError, export_model


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the export flags on `flag_values` (the global flags when run as a program)."""
    flags.DEFINE_string(
        "model",
        None,
        "Model to export: HF dir or hf:// id, named size, Keras preset, training output dir.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum("format", None, FORMATS, "Export format.", flag_values=flag_values)
    flags.DEFINE_string("output", None, "Directory to create.", flag_values=flag_values)
    flags.DEFINE_enum(
        "checkpoint",
        None,
        CHECKPOINT_NAMES,
        "Checkpoint of a training output dir (default: best).",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "dtype", "float32", DTYPES, "Weight dtype of the export.", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Replace an existing output, once the new export is complete.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "batch_size",
        1,
        "SavedModel: fixed batch size.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "max_length",
        None,
        "SavedModel: fixed prompt-plus-generation length (default: the model's maximum).",
        lower_bound=2,
        flag_values=flag_values,
    )
    flags.mark_flags_as_required(["model", "format", "output"], flag_values=flag_values)


def run(flag_values: flags.FlagValues) -> str:
    """Runs the export that the parsed `flag_values` describe; returns the output path.

    Raises `SystemExit` with the reason (exit status 1) when the export is refused or fails.
    """
    try:
        return export_model(
            flag_values.model,
            flag_values.format,
            flag_values.output,
            checkpoint=flag_values.checkpoint,
            dtype=flag_values.dtype,
            overwrite=flag_values.overwrite,
            batch_size=flag_values.batch_size,
            max_length=flag_values.max_length,
        )
    except ExportError as error:
        raise SystemExit(f"export failed: {error}") from error


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    output = run(flags.FLAGS)
    print(f"Exported {flags.FLAGS.model} as {flags.FLAGS.format} to {output}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
