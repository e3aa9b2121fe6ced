"""Writing an export all at once: a staging area first, then into place (`file_io`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from neo_keras import file_io
from neo_keras.exporting.provenance import RECORD_FILE


class OutputExistsError(FileExistsError):
    """The output path is taken and replacing it was not asked for."""


def check_output_path(path: str, overwrite: bool) -> None:
    """Refuses an existing `path` unless `overwrite`; refuses a path whose parent is a file."""
    if (file_io.exists(path) or os.path.islink(path)) and not overwrite:
        raise OutputExistsError(
            f"{path} exists; choose a new output path, or pass --overwrite to replace it."
        )
    parent = os.path.dirname(file_io.absolute(path).rstrip("/"))
    if file_io.isfile(parent):
        raise NotADirectoryError(f"Cannot write {path}: {parent} is a file, not a directory.")


@contextlib.contextmanager
def staged_output(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yields a fresh local path to write to; on success it replaces `path`.

    If the body raises, the staging area is removed and `path` is left as it was. With
    `overwrite`, an existing `path` is replaced only after the new output is complete.
    """
    check_output_path(path, overwrite)
    with file_io.staged_tree(path, last_file=RECORD_FILE) as staged:
        yield staged
        check_output_path(path, overwrite)  # another writer may have taken it meanwhile
