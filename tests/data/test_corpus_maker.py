"""Making a Code Clippy format corpus from local source trees."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from neo_keras.data import corpus_maker
from neo_keras.data.corpus_format import iter_records, list_shards
from neo_keras.data.corpus_maker import (
    CorpusError,
    CorpusOutputError,
    assign_splits,
    make_corpus,
)

MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining..."
APACHE = "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/"
GPL3 = "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n"


def source(path: str) -> str:
    """A small Python file that names its own path, to check each record's `file_name`."""
    return f"# path: {path}\ndef function_in_{abs(hash(path)) % 10**6}():\n    return 1\n"


def write(root, relative, content):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.fixture
def sources(tmp_path):
    """A git checkout with bad files, and a folder of repositories with loose files."""
    checkout = tmp_path / "alpha"
    write(checkout, ".git/config", '[remote "origin"]\n\turl = git@github.com:octo/alpha.git\n')
    write(checkout, "LICENSE", MIT)
    for relative in ("main.py", "pkg/util.py", "pkg/deep/more.py"):
        write(checkout, relative, source(relative))
    write(checkout, "node_modules/dep/index.js", "module.exports = 1;\n")
    write(checkout, ".hidden/secret.py", source(".hidden/secret.py"))
    write(checkout, "pkg/__pycache__/util.cpython-311.pyc", b"\x00\x01")
    write(checkout, "blob.py", b"x = 1\x00\x00\x00\n")
    write(checkout, "digits.py", "1234567890" * 50 + "\n")
    write(checkout, "bundle.js", "var a=1;" * 30)  # one 240-character line
    write(checkout, "latin1.py", "# caf\xe9\n".encode("latin-1"))
    write(checkout, "empty.py", "   \n")
    write(checkout, "notes.txt", "not code\n")
    folder = tmp_path / "folder"
    write(folder, "LICENSE.txt", APACHE)
    write(folder, "top.py", source("top.py"))
    for repo in ("beta", "gamma", "delta", "epsilon"):
        for relative in ("a.py", "b/c.py"):
            write(folder / repo, relative, source(relative))
    write(folder / "gamma", "COPYING", GPL3)
    write(folder / "epsilon", "lib.rs", "fn main() {}\n")
    return [checkout, folder]


def read_corpus(root):
    return {
        split: [
            record
            for shard in list_shards(root / split)
            for record in iter_records(shard, Counter())
        ]
        for split in ("train", "validation", "test")
    }


def test_every_file_is_one_record_with_its_own_name_and_repo_metadata(tmp_path, sources):
    summary = make_corpus(sources, tmp_path / "corpus", validation_fraction=0.2, test_fraction=0.2)
    records = [
        r for split_records in read_corpus(tmp_path / "corpus").values() for r in split_records
    ]
    by_repo = defaultdict(dict)
    for record in records:
        by_repo[record.meta["repo_name"]][record.meta["file_name"]] = record
        assert record.text.startswith(f"# path: {record.meta['file_name']}\n") or (
            record.meta["file_name"].endswith(".rs")
        )
    assert set(by_repo) == {
        "octo/alpha",
        "folder/beta",
        "folder/gamma",
        "folder/delta",
        "folder/epsilon",
        "folder",
    }
    assert set(by_repo["octo/alpha"]) == {"main.py", "pkg/util.py", "pkg/deep/more.py"}
    assert set(by_repo["folder"]) == {"top.py"}
    assert set(by_repo["folder/epsilon"]) == {"a.py", "b/c.py", "lib.rs"}
    licenses = {repo: next(iter(files.values())).meta["license"] for repo, files in by_repo.items()}
    assert licenses == {
        "octo/alpha": "mit",
        "folder/beta": "apache-2.0",
        "folder/gamma": "gpl-3.0",
        "folder/delta": "apache-2.0",
        "folder/epsilon": "apache-2.0",
        "folder": "apache-2.0",
    }
    main = by_repo["octo/alpha"]["main.py"].meta
    assert (main["repo_language"], main["mime_type"], main["stars"]) == (
        "Python",
        "text/x-python",
        None,
    )
    assert by_repo["folder/epsilon"]["lib.rs"].meta["mime_type"] == "text/plain"
    assert summary.skipped["binary"] == 1
    assert summary.skipped["mostly_digits"] == 1
    assert summary.skipped["long_lines"] == 1
    assert summary.skipped["not_utf8"] == 1
    assert summary.skipped["empty"] == 1
    assert summary.skipped["not_code"] == 4  # notes.txt and three license files
    assert sum(summary.files.values()) == len(records)


def test_splits_are_made_by_repository(tmp_path, sources):
    make_corpus(sources, tmp_path / "corpus", validation_fraction=0.2, test_fraction=0.2)
    repos = {
        split: {r.meta["repo_name"] for r in split_records}
        for split, split_records in read_corpus(tmp_path / "corpus").items()
    }
    assert repos["train"] and repos["validation"] and repos["test"]
    assert not repos["train"] & repos["validation"]
    assert not repos["train"] & repos["test"]
    assert not repos["validation"] & repos["test"]


def test_split_assignment_aims_at_the_byte_fractions_and_is_stable():
    sizes = {f"repo{i}": 1000 for i in range(100)}
    splits = assign_splits(sizes, 0.1, 0.05)
    counts = Counter(splits.values())
    assert counts["validation"] == 10 and counts["test"] == 5
    sizes["repo_new"] = 1000
    again = assign_splits(sizes, 0.1, 0.05)
    assert sum(splits[name] != again[name] for name in splits) <= 3
    assert set(assign_splits({"a": 5, "b": 7}, 0.5, 0.5).values()) == {"train"}
    one_big = assign_splits({"big": 10**6, "small1": 10, "small2": 10}, 0.05, 0.05)
    assert one_big["big"] == "train"


def test_existing_output_is_kept_unless_overwrite(tmp_path, sources):
    output = tmp_path / "corpus"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(CorpusOutputError, match="--overwrite"):
        make_corpus(sources, output)
    assert (output / "keep.txt").read_text() == "mine"
    make_corpus(sources, output, overwrite=True)
    assert not (output / "keep.txt").exists()
    assert list_shards(output / "train")


def test_an_interrupted_run_leaves_no_partial_corpus(tmp_path, sources, monkeypatch):
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0

    monkeypatch.setattr(corpus_maker, "_write_repository", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        make_corpus(sources, tmp_path / "corpus")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha", "folder"]


def test_a_source_that_is_not_a_directory_is_named(tmp_path):
    with pytest.raises(CorpusError, match="missing is not a directory"):
        make_corpus([tmp_path / "missing"], tmp_path / "corpus")


def repositories(root, names):
    for name in names:
        write(root / name, "main.py", source(f"{name}/main.py"))
    return root


def test_too_few_repositories_for_the_splits_is_an_error_with_the_counts(tmp_path):
    folder = repositories(tmp_path / "two", ["one", "two"])
    with pytest.raises(CorpusError) as refused:
        make_corpus([folder], tmp_path / "corpus")
    assert str(refused.value).startswith(
        "The validation and test split would get no repositories (train 2, validation 0, test 0)"
    )
    assert "--validation_fraction=0 --test_fraction=0" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # nothing written
    summary = make_corpus([folder], tmp_path / "corpus", validation_fraction=0, test_fraction=0)
    assert summary.files == {"train": 2}


def test_a_repository_without_code_takes_no_split(tmp_path):
    folder = repositories(tmp_path / "repos", ["one", "two", "three"])
    write(folder / "docs", "notes.txt", "only prose\n")
    summary = make_corpus([folder], tmp_path / "corpus", 0.2, 0.2)
    assert summary.skipped["repositories_without_code"] == 1
    assert all(read_corpus(tmp_path / "corpus").values())


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"validation_fraction": 1.5}, r"--validation_fraction=1.5 is not in \[0, 1\)"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "leave nothing to train on"),
        ({"records_per_shard": 0}, "--records_per_shard=0 must be positive"),
    ],
)
def test_impossible_settings_are_refused(arguments, message, tmp_path, sources):
    with pytest.raises(CorpusError, match=message):
        make_corpus(sources, tmp_path / "corpus", **arguments)
    assert not (tmp_path / "corpus").exists()


def test_a_source_without_code_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "prose", "notes.txt", "words\n")
    with pytest.raises(CorpusError, match="No source files in a known language under .*empty"):
        make_corpus([tmp_path / "empty", tmp_path / "prose"], tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, sources):
    output = tmp_path / "corpus"
    output.write_text("mine")
    with pytest.raises(CorpusError, match="is a file"):
        make_corpus(sources, output, overwrite=True)
    assert output.read_text() == "mine"


def test_the_program_says_what_is_wrong_in_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "neo_keras.make_corpus",
            str(tmp_path / "missing"),
            f"--output={tmp_path / 'corpus'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: Source {tmp_path / 'missing'} is not a directory: give git checkouts or "
        "folders of them."
    )
