"""Writing an output path all at once: a temporary sibling first, then a rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


class OutputExistsError(FileExistsError):
    """The output path is taken and replacing it was not asked for."""


def check_output_path(path: str, overwrite: bool) -> None:
    """Refuses an existing `path` unless `overwrite`; refuses a path whose parent is a file."""
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            f"{path} exists; choose a new output path, or pass --overwrite to replace it."
        )
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(f"Cannot write {path}: {parent} is a file, not a directory.")


@contextlib.contextmanager
def staged_output(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yields a fresh path to write to; on success it is renamed to `path`.

    The fresh path lies in a hidden temporary directory beside `path`, so the final rename
    stays on one filesystem. If the body raises, the temporary directory is removed and
    `path` is left as it was. With `overwrite`, an existing `path` is replaced only after
    the new output is complete.
    """
    check_output_path(path, overwrite)
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    workspace = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
    try:
        staged = os.path.join(workspace, name)
        yield staged
        if not os.path.lexists(staged):
            raise FileNotFoundError(f"Nothing was written for {path}.")
        _move_into_place(staged, path, workspace, overwrite)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _move_into_place(staged: str, path: str, workspace: str, overwrite: bool) -> None:
    if not os.path.lexists(path):
        os.rename(staged, path)
        return
    if not overwrite:
        raise OutputExistsError(f"{path} appeared while the export was being written; kept it.")
    previous = os.path.join(workspace, "previous")
    os.rename(path, previous)
    try:
        os.rename(staged, path)
    except BaseException:
        os.rename(previous, path)
        raise
