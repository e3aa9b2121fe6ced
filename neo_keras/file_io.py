"""Paths that may be local or remote: `gs://` or any other `tf.io.gfile` file system.

Everything a run reads or writes goes through these helpers or `tf.io.gfile`, so an
`--output_dir=gs://bucket/run` works wherever a local path does. Libraries that only write
local files (Keras presets, Hugging Face directories) write into a local temporary directory
that is then copied; loading from a remote path copies it into a temporary directory that is
removed once the model is in memory, so nothing stale is ever read from a cache.

A directory is replaced atomically on a local disk (rename). Object stores have no atomic
directory rename: there the old files are removed first and `last_file` (a preset's
`config.json`, which every loader opens first) is written after everything else, so a reader
sees the whole new directory or a clear "not a preset" error, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import tensorflow as tf

_LOCAL_SCHEMES = ("", "file")


def scheme(path: str) -> str:
    """The file-system scheme of `path` (`gs`, `ram`, ...), or "" for a plain local path."""
    return path.split("://", 1)[0].lower() if "://" in path else ""


def is_remote(path: str) -> bool:
    """True for a path on a non-local `tf.io.gfile` file system, such as `gs://b/run`."""
    kind = scheme(path)
    return kind not in _LOCAL_SCHEMES and kind in tf.io.gfile.get_registered_schemes()


def absolute(path: str) -> str:
    """`path` made absolute when local (`file://` dropped); a remote path is already absolute.

    Raises `ValueError` for a scheme no file system is registered for (`s3://` without
    tensorflow-io), rather than writing to a local folder named after it.
    """
    if is_remote(path):
        return path
    kind = scheme(path)
    if kind not in _LOCAL_SCHEMES:
        raise ValueError(
            f"No file system is registered for {kind}:// (in {path}); TensorFlow reads "
            f"{sorted(tf.io.gfile.get_registered_schemes())}. Install the package that adds "
            "it (tensorflow-io for s3:// and hdfs://) or use a local path."
        )
    if kind == "file":
        path = path[len("file://") :]
    return os.path.abspath(os.path.expanduser(path))


def exists(path: str) -> bool:
    """Whether `path` exists; False for a reference no file system reads (`hf://` ids)."""
    if scheme(path) not in _LOCAL_SCHEMES and not is_remote(path):
        return False
    return tf.io.gfile.exists(path)


def isdir(path: str) -> bool:
    return exists(path) and tf.io.gfile.isdir(path)


def isfile(path: str) -> bool:
    return exists(path) and not tf.io.gfile.isdir(path)


def remove(path: str) -> None:
    """Removes the file at `path`."""
    tf.io.gfile.remove(path)


def read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to a temporary sibling, then renames it over `path`."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str, content: bytes) -> None:
    """Writes `content` to a temporary sibling, then renames it over `path`."""
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    partial = os.path.join(parent, f".{os.path.basename(path)}.partial-{uuid.uuid4().hex[:8]}")
    try:
        with tf.io.gfile.GFile(partial, "wb") as f:
            f.write(content)
        tf.io.gfile.rename(partial, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(partial):
            tf.io.gfile.remove(partial)
        raise


def _walk(root: str, topdown: bool = True) -> Iterator[tuple[str, list[str]]]:
    """`(directory, files)` under `root`.

    TensorFlow's `ram://` file system lists children by name prefix, so `best/` also lists
    the `_val_loss.json` of a sibling `best_val_loss.json`; names that are not there are
    dropped.
    """
    for directory, _, files in tf.io.gfile.walk(root, topdown=topdown):
        yield directory, [n for n in files if tf.io.gfile.exists(os.path.join(directory, n))]


def _files_under(root: str) -> list[str]:
    """Paths of the files under `root`, relative to it."""
    found = []
    for directory, files in _walk(root):
        relative = os.path.relpath(directory, root) if directory != root else ""
        found.extend(os.path.join(relative, name) for name in files)
    return sorted(found)


def copy_tree(source: str, destination: str, last_file: str | None = None) -> None:
    """Copies every file under `source` to `destination`; `last_file` (relative) goes last."""
    files = _files_under(source)
    if last_file in files:
        files.remove(last_file)
        files.append(last_file)
    tf.io.gfile.makedirs(destination)
    for relative in files:
        target = os.path.join(destination, relative)
        tf.io.gfile.makedirs(os.path.dirname(target))
        tf.io.gfile.copy(os.path.join(source, relative), target, overwrite=True)


def remove_tree(path: str, first_file: str | None = None) -> None:
    """Removes `path` and everything under it; `first_file` (relative) goes first.

    File by file, because not every file system implements a recursive delete (`ram://`
    does not); a directory that exists only as a prefix of its files (GCS) is gone with them.
    """
    if not exists(path):
        return
    if not tf.io.gfile.isdir(path):
        tf.io.gfile.remove(path)
        return
    if first_file and isfile(os.path.join(path, first_file)):
        tf.io.gfile.remove(os.path.join(path, first_file))
    for directory, files in _walk(path, topdown=False):
        for name in files:
            tf.io.gfile.remove(os.path.join(directory, name))
        with contextlib.suppress(tf.errors.NotFoundError):  # GCS: a prefix, already gone
            tf.io.gfile.remove(directory)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """Yields a local path holding what `path` holds; a remote one is copied and then removed."""
    if not is_remote(path):
        yield path
        return
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")
    workspace = tempfile.mkdtemp(prefix="neo_keras-read-")
    try:
        local = os.path.join(workspace, os.path.basename(path.rstrip("/")) or "root")
        if tf.io.gfile.isdir(path):
            copy_tree(path, local)
        else:
            tf.io.gfile.copy(path, local)
        yield local
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


@contextlib.contextmanager
def staged_tree(path: str, last_file: str | None = None) -> Iterator[str]:
    """Yields a fresh local path to write a directory (or file) to; then it replaces `path`.

    If the body raises, `path` is left as it was. On a local disk the staging area lies
    beside `path` and the replacement is a rename; for a remote `path` it is a local
    temporary directory whose files are then copied (see the module docstring).
    """
    path = absolute(path)
    remote = is_remote(path)
    parent, name = os.path.split(path.rstrip("/"))
    if not remote:
        os.makedirs(parent, exist_ok=True)
    workspace = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=None if remote else parent)
    try:
        staged = os.path.join(workspace, name)
        yield staged
        if not os.path.lexists(staged):
            raise FileNotFoundError(f"Nothing was written for {path}.")
        if remote:
            _publish_remote(staged, path, last_file)
        else:
            _replace_local(staged, path, workspace)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _replace_local(staged: str, path: str, workspace: str) -> None:
    if not os.path.lexists(path):
        os.rename(staged, path)
        return
    previous = os.path.join(workspace, "previous")
    os.rename(path, previous)
    try:
        os.rename(staged, path)
    except BaseException:
        os.rename(previous, path)
        raise


def _publish_remote(staged: str, path: str, last_file: str | None) -> None:
    remove_tree(path, first_file=last_file)
    if os.path.isdir(staged):
        copy_tree(staged, path, last_file=last_file)
    else:
        tf.io.gfile.copy(staged, path, overwrite=True)
