"""What an export came from: source, checkpoint, training flags, code revision, dtype."""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import neo_keras

RECORD_FILE = "neo_keras_export.json"
UNKNOWN_REVISION = "unknown"


def git_revision(directory: str | None = None) -> str:
    """The commit checked out in the repository holding `directory` (this package by default).

    "unknown" when the code does not run from a git checkout or git is unavailable.
    """
    directory = directory or os.path.dirname(os.path.abspath(neo_keras.__file__))
    try:
        result = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_REVISION
    return result.stdout.strip() or UNKNOWN_REVISION


def export_record(
    *,
    export_format: str,
    dtype: str,
    source: str,
    model_path: str,
    checkpoint: str | None,
    training_config: dict | None,
    details: dict | None = None,
) -> dict:
    """The provenance record written beside every export."""
    return {
        "format": export_format,
        "dtype": dtype,
        "source": source,
        "model_path": model_path,
        "checkpoint": checkpoint,
        "training_config": training_config,
        "git_revision": git_revision(),
        "neo_keras_version": neo_keras.__version__,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **(details or {}),
    }


def write_record(directory: str, record: dict) -> str:
    """Writes `record` as `neo_keras_export.json` in `directory`; returns the file's path."""
    path = os.path.join(directory, RECORD_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
