"""What the codeclippy builder writes: which files, how packed, what it counts, Beam or not."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions

from neo_keras.data import code_corpus
from neo_keras.data.builder_support import EmptySplitError, ManualDataError
from tests.data import fixtures
from tests.data.builders import builder_module

codeclippy = builder_module("codeclippy")


def build(tmp_path, manual_dir, tokenizer_dir, name, beam=False, **config_values):
    config = codeclippy.CodeClippyConfig(
        name=name, tokenizer=str(tokenizer_dir), **{"sequence_length": 256, **config_values}
    )
    builder = codeclippy.Builder(config=config, data_dir=str(tmp_path / "data"))
    options = PipelineOptions(["--runner=DirectRunner"]) if beam else None
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir), beam_options=options
        )
    )
    return builder


def documents(builder, split, tokenizer):
    """Every packed document of a split, decoded (blocks hold whole dummy shards here)."""
    texts = []
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        real = example["input_ids"][example["attention_mask"] == 1]
        texts += tokenizer.decode(real.tolist()).split("<|endoftext|>")[:-1]
    return sorted(texts)


def assert_nothing_built(tmp_path):
    """No dataset that `tfds.load` would accept, not even partly written."""
    assert not list((tmp_path / "data").rglob("dataset_info.json"))
    assert not list((tmp_path / "data").rglob("*.tfrecord*"))


def test_full_keeps_every_usable_file_each_followed_by_end_of_text(
    tmp_path, codeclippy_corpus, tokenizer_dir, tokenizer
):
    builder = build(tmp_path, codeclippy_corpus, tokenizer_dir, "t_full")
    assert documents(builder, "train", tokenizer) == sorted(
        [
            fixtures.ADD,
            fixtures.STACK,
            *fixtures.SAMPLED,
            fixtures.MUL,
            fixtures.ADD_REFORMATTED,
            fixtures.SUB_COPY,
        ]
    )
    assert documents(builder, "validation", tokenizer) == sorted([fixtures.SUB, fixtures.HELLO])
    for example in tfds.as_numpy(builder.as_dataset(split="train")):
        np.testing.assert_array_equal(example["loss_mask"], example["attention_mask"])
        assert example["input_ids"].shape == (256,)


def test_dedup_drops_copies_and_train_files_that_duplicate_evaluation_files(
    tmp_path, codeclippy_corpus, tokenizer_dir, tokenizer
):
    builder = build(tmp_path, codeclippy_corpus, tokenizer_dir, "t_dedup", dedup=True)
    assert documents(builder, "train", tokenizer) == sorted(
        [fixtures.ADD, fixtures.STACK, *fixtures.SAMPLED, fixtures.MUL]
    )
    counts = builder.info.metadata["build_counts"]["train"]
    assert counts["duplicate"] == 1 and counts["duplicate_of_eval"] == 1


def test_skip_counts_are_logged_in_metadata_and_survive_a_reload(
    tmp_path, codeclippy_corpus, tokenizer_dir
):
    builder = build(tmp_path, codeclippy_corpus, tokenizer_dir, "t_counts")
    expected = {
        "records": 7,
        "documents": 7,
        "malformed_json": 1,
        "invalid_utf8": 1,
        "empty_text": 1,
        "missing_text": 1,
    }
    train_counts = builder.info.metadata["build_counts"]["train"]
    assert {key: train_counts[key] for key in expected} == expected
    reloaded = tfds.builder("codeclippy/t_counts", data_dir=str(tmp_path / "data"))
    assert reloaded.info.metadata["build_counts"]["train"] == train_counts
    assert reloaded.info.metadata["eot_id"] == 0 and reloaded.info.metadata["vocab_size"] == 400


@pytest.mark.parametrize(
    "config_values",
    [
        {"dedup": True, "train_fraction": 0.5},
        {"dedup": False},
    ],
    ids=["dedup_sampled", "full"],
)
def test_beam_builds_exactly_what_one_process_builds(
    tmp_path, codeclippy_corpus, tokenizer_dir, config_values, monkeypatch
):
    # Short blocks and tiny packing groups, so documents straddle blocks, and several groups
    # and blocks come from each shard.
    monkeypatch.setattr(code_corpus, "GROUP_BYTES", 64)
    local = build(
        tmp_path / "local",
        codeclippy_corpus,
        tokenizer_dir,
        "t_same",
        sequence_length=16,
        **config_values,
    )
    beam = build(
        tmp_path / "beam",
        codeclippy_corpus,
        tokenizer_dir,
        "t_same",
        beam=True,
        sequence_length=16,
        **config_values,
    )
    for split in ("train", "validation", "test"):

        def rows(builder, split=split):
            return Counter(
                tuple(
                    np.concatenate(
                        [example[name] for name in ("input_ids", "attention_mask", "loss_mask")]
                    )
                )
                for example in tfds.as_numpy(builder.as_dataset(split=split))
            )

        assert rows(local) == rows(beam)
        assert rows(local)
    assert local.info.metadata["build_counts"] == beam.info.metadata["build_counts"]


def test_missing_manual_dir_is_a_clear_error_and_leaves_no_dataset(tmp_path, tokenizer_dir):
    with pytest.raises(ManualDataError, match="make_corpus"):
        build(tmp_path, tmp_path / "nowhere", tokenizer_dir, "t_missing")
    assert_nothing_built(tmp_path)


def test_manual_dir_without_train_shards_names_the_folder(tmp_path, tokenizer_dir):
    (tmp_path / "corpus" / "validation").mkdir(parents=True)
    (tmp_path / "corpus" / "validation" / "notes.txt").write_text("no shards here")
    with pytest.raises(ManualDataError, match=r"corpus/train"):
        build(tmp_path, tmp_path / "corpus", tokenizer_dir, "t_notrain")


def test_a_split_with_nothing_usable_fails_without_a_half_written_dataset(
    tmp_path, codeclippy_corpus, tokenizer_dir
):
    corpus = tmp_path / "corpus"
    shutil.copytree(codeclippy_corpus, corpus)
    fixtures.write_zst(corpus / "test" / "data_00000.jsonl.zst", [b"{broken\n", b'{"x": 1}\n'])
    with pytest.raises(EmptySplitError, match="malformed_json"):
        build(tmp_path, corpus, tokenizer_dir, "t_empty")
    assert_nothing_built(tmp_path)


def test_configs_reject_nonsense_values():
    with pytest.raises(ValueError, match="train_fraction"):
        codeclippy.CodeClippyConfig(name="x", train_fraction=0.0)
    with pytest.raises(ValueError, match="sequence_length"):
        codeclippy.CodeClippyConfig(name="x", sequence_length=1)


def test_the_release_layout_builds_as_the_corpus_it_holds(
    tmp_path, codeclippy_corpus, tokenizer_dir, tokenizer
):
    """code_clippy_dedup_data/<split>/data_<n>_time<t>_default.jsonl.zst, given as the folder
    holding it: the same documents as the corpus in make_corpus's layout."""
    release = fixtures.write_codeclippy_corpus(tmp_path / "release", release_layout=True)
    from_release = build(tmp_path / "a", release, tokenizer_dir, "t_release")
    from_corpus = build(tmp_path / "b", codeclippy_corpus, tokenizer_dir, "t_release")
    for split in ("train", "validation", "test"):
        assert documents(from_release, split, tokenizer) == documents(from_corpus, split, tokenizer)


def test_a_manual_dir_of_several_corpora_is_refused_by_name(tmp_path, tokenizer_dir):
    for name in ("code_clippy_data", "code_clippy_dedup_data"):
        fixtures.write_zst(
            tmp_path / "both" / name / "train" / "data_0.jsonl.zst",
            [fixtures.record_line(fixtures.ADD)],
        )
    with pytest.raises(ManualDataError, match="code_clippy_data, code_clippy_dedup_data"):
        build(tmp_path, tmp_path / "both", tokenizer_dir, "t_both")
    assert_nothing_built(tmp_path)
