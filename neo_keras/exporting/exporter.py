"""Exporting a GPT-Neo model in the forms it is deployed in: Keras, SavedModel, Hugging Face."""

from __future__ import annotations

import os

from neo_keras import checkpoints, file_io
from neo_keras.exporting import provenance, sources, staging
from neo_keras.models.gpt_neo import GPTNeoCausalLM, hf_convert

FORMATS = ("keras", "saved_model", "hf")
DTYPES = ("float32", "bfloat16")
KERAS_FILE = "model.keras"
TOKENIZER_DIR = "tokenizer"


class ExportError(RuntimeError):
    """An export that could not be made; the message says why and what to do."""


def export_model(
    source: str,
    export_format: str,
    output: str,
    *,
    checkpoint: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    batch_size: int = 1,
    max_length: int | None = None,
) -> str:
    """Exports the GPT-Neo model at `source` to `output` as `export_format`; returns `output`.

    Args:
        source: anything `GPTNeoCausalLM.from_preset` accepts, or a training output dir.
        export_format: `"keras"` (a directory with `model.keras` and the Keras preset),
            `"saved_model"` (a TensorFlow SavedModel with `serve` and `generate`) or `"hf"`
            (a Hugging Face GPT-Neo directory).
        output: the directory to create.
        checkpoint: `"best"` (default) or `"latest"`, for a training output dir.
        dtype: weight dtype, `"float32"` or `"bfloat16"`.
        overwrite: replace an existing `output` (only once the new one is complete).
        batch_size: the SavedModel's fixed batch size.
        max_length: the SavedModel's fixed prompt-plus-generation length; the model's
            maximum sequence length when None.

    Raises:
        ExportError: bad arguments, a source that is missing or not GPT-Neo, an existing
            `output` without `overwrite`, or a failed write. Nothing is left at `output`
            (or the previous `output` is kept) when it is raised.
    """
    _check_arguments(export_format, dtype, batch_size, max_length)
    try:
        staging.check_output_path(output, overwrite)
        resolved = checkpoints.resolve_source(source, checkpoint)
        _refuse_replacing_source(resolved.model_path, output)
        # Hugging Face files are cast when written, so the model itself stays float32.
        model = sources.load_model(resolved, "float32" if export_format == "hf" else dtype)
    except (checkpoints.SourceError, OSError) as error:
        raise ExportError(str(error)) from error
    details = _format_details(model, export_format, batch_size, max_length)
    record = provenance.export_record(
        export_format=export_format,
        dtype=dtype,
        source=source,
        model_path=_absolute_if_local(resolved.model_path),
        checkpoint=resolved.checkpoint,
        training_config=resolved.training_config,
        details=details,
    )
    try:
        with staging.staged_output(output, overwrite) as staged:
            _write(model, export_format, staged, dtype, details)
            provenance.write_record(staged, record)
    except staging.OutputExistsError as error:
        raise ExportError(str(error)) from error
    except (OSError, RuntimeError, ValueError) as error:
        raise ExportError(
            f"Writing {export_format} export to {output} failed: {error}. Nothing was left "
            f"at {output}" + (" (any previous output there is kept)." if overwrite else ".")
        ) from error
    return output


def _check_arguments(export_format, dtype, batch_size, max_length) -> None:
    if export_format not in FORMATS:
        raise ExportError(f"Unknown format {export_format!r}; choose one of {FORMATS}.")
    if dtype not in DTYPES:
        raise ExportError(f"Unknown dtype {dtype!r}; choose one of {DTYPES}.")
    if batch_size < 1:
        raise ExportError(f"batch_size must be at least 1, got {batch_size}.")
    if max_length is not None and max_length < 2:
        raise ExportError(f"max_length must be at least 2, got {max_length}.")


def _refuse_replacing_source(model_path: str, output: str) -> None:
    if not file_io.exists(model_path):
        return  # A hub id or named size: nothing stored to protect.
    model_path, output = _canonical(model_path), _canonical(output)
    if model_path == output or model_path.startswith(output + "/"):
        raise ExportError(
            f"The output {output} would replace the model being exported; choose another path."
        )


def _canonical(path: str) -> str:
    return path.rstrip("/") if file_io.scheme(path) else os.path.realpath(path)


def _absolute_if_local(reference: str) -> str:
    return file_io.absolute(reference) if file_io.exists(reference) else reference


def end_token_id(model: GPTNeoCausalLM) -> int:
    """The id generation stops at: the tokenizer's `<|endoftext|>`, else the last id."""
    if model.preprocessor is not None:
        return int(model.preprocessor.tokenizer.end_token_id)
    return model.backbone.vocabulary_size - 1


def _format_details(model, export_format, batch_size, max_length) -> dict:
    """Settings of the export that its users need to know, recorded in the provenance."""
    if export_format != "saved_model":
        return {}
    limit = model.backbone.max_sequence_length
    max_length = max_length or limit
    if max_length > limit:
        raise ExportError(
            f"max_length {max_length} exceeds the model's {limit} positions; use at most {limit}."
        )
    return {
        "batch_size": batch_size,
        "max_length": max_length,
        "end_token_id": end_token_id(model),
        "vocabulary_size": model.backbone.vocabulary_size,
    }


def _write(model: GPTNeoCausalLM, export_format: str, path: str, dtype: str, details) -> None:
    if export_format == "keras":
        write_keras(model, path)
    elif export_format == "hf":
        hf_convert.save_hf_checkpoint(model, path, dtype=dtype)
    else:
        write_saved_model_with_tokenizer(model, path, details)


def write_keras(model: GPTNeoCausalLM, path: str) -> None:
    """A directory that is a Keras preset and also holds the single-file `model.keras`."""
    model.save_to_preset(path)
    model.save(os.path.join(path, KERAS_FILE))


def write_saved_model_with_tokenizer(model: GPTNeoCausalLM, path: str, details: dict) -> None:
    """The SavedModel, plus the tokenizer's vocabulary and merges for making its token ids."""
    from neo_keras.exporting import serving

    serving.write_saved_model(
        model,
        path,
        batch_size=details["batch_size"],
        max_length=details["max_length"],
        end_token_id=details["end_token_id"],
    )
    if model.preprocessor is not None:
        tokenizer_dir = os.path.join(path, TOKENIZER_DIR)
        os.makedirs(tokenizer_dir)
        model.preprocessor.tokenizer.save_assets(tokenizer_dir)
