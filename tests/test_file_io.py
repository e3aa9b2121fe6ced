"""Paths that may be remote: schemes, references, and replacing a directory on object stores."""

from __future__ import annotations

import os
import uuid

import pytest
import tensorflow as tf

from neo_keras import file_io


def test_local_paths_are_made_absolute_and_unknown_schemes_refused(tmp_path):
    assert file_io.absolute(f"file://{tmp_path}/a") == f"{tmp_path}/a"
    assert file_io.absolute("ram://bucket/run") == "ram://bucket/run"
    with pytest.raises(ValueError, match=r"No file system is registered for s3://"):
        file_io.absolute("s3://bucket/run")


def test_a_hub_reference_is_no_path():
    assert not file_io.exists("hf://EleutherAI/gpt-neo-125M")
    assert not file_io.isdir("hf://EleutherAI/gpt-neo-125M")


def test_replacing_a_directory_where_directories_are_only_prefixes(monkeypatch):
    """GCS has no directory objects: removing one fails with NotFound once its files are gone."""
    root = f"ram://{uuid.uuid4().hex}/preset"
    tf.io.gfile.makedirs(f"{root}/assets")
    for name in ("config.json", "model.weights.h5", "assets/vocab.json"):
        with tf.io.gfile.GFile(f"{root}/{name}", "w") as f:
            f.write("old")
    real_remove, real_copy = tf.io.gfile.remove, tf.io.gfile.copy
    copied = []

    def remove_like_gcs(path):
        if tf.io.gfile.isdir(path):
            raise tf.errors.NotFoundError(None, None, f"No such object: {path}")
        real_remove(path)

    def recording_copy(source, destination, overwrite=False):
        copied.append(os.path.relpath(destination, root))
        real_copy(source, destination, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "remove", remove_like_gcs)
    monkeypatch.setattr(tf.io.gfile, "copy", recording_copy)
    with file_io.staged_tree(root, last_file="config.json") as staged:
        os.makedirs(f"{staged}/assets")
        for name in ("config.json", "model.weights.h5", "assets/merges.txt"):
            with open(f"{staged}/{name}", "w") as f:
                f.write("new")
    assert copied[-1] == "config.json"  # a reader sees config.json only once all is there
    assert sorted(copied) == ["assets/merges.txt", "config.json", "model.weights.h5"]
    assert not tf.io.gfile.exists(f"{root}/assets/vocab.json")
    assert file_io.read_text(f"{root}/model.weights.h5") == "new"
