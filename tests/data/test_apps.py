"""APPS: the paper's prompt, the release reader, and what the builder's views hold."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import pytest
import tensorflow_datasets as tfds

from neo_keras.data import pipeline
from neo_keras.data.apps import (
    AppsLayoutError,
    build_prompt,
    read_apps_problems,
    validation_problem_keys,
)
from tests.data import fixtures
from tests.data.builders import builder_module

apps = builder_module("apps")


def build(tmp_path, release, tokenizer_dir, name, **config_values):
    config = apps.AppsConfig(name=name, tokenizer=str(tokenizer_dir), **config_values)
    builder = apps.Builder(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(release)))
    return builder


def test_prompt_is_the_papers_in_both_formats():
    assert build_prompt("Add two numbers.", "def add(a, b):\n", "add") == (
        "\nQUESTION:\nAdd two numbers.\ndef add(a, b):\n\n\nUse Call-Based format\n\nANSWER:\n")
    assert build_prompt("Read n.") == (
        "\nQUESTION:\nRead n.\n\n\nUse Standard Input format\n\nANSWER:\n")
    # Starter code alone makes a problem call-based.
    assert "Call-Based" in build_prompt("Q", "class Solution:\n", "")


def test_reader_returns_problems_verbatim_in_folder_order(apps_release):
    problems = list(read_apps_problems(apps_release, "train"))
    assert [p.key for p in problems] == ["train/0000", "train/0001", "train/0002"]
    first = problems[0]
    source = fixtures.APPS_PROBLEMS["train/0000"]
    assert first.solutions == tuple(source["solutions"])
    assert (first.fn_name, first.starter_code, first.difficulty) == (
        "total", source["starter_code"], "introductory")
    assert first.inputs == [[[1, 2]]] and first.outputs == [3]
    assert problems[1].fn_name == "" and problems[1].starter_code == ""


def test_reader_skips_and_counts_broken_problems(tmp_path):
    fixtures.write_apps_tree(tmp_path, {"train/0000": fixtures.APPS_PROBLEMS["train/0001"]})
    broken = tmp_path / "APPS" / "train"
    (broken / "0001").mkdir()
    (broken / "0001" / "solutions.json").write_text("[]")
    (broken / "0002").mkdir()
    (broken / "0002" / "question.txt").write_bytes(b"caf\xe9")
    (broken / "0003").mkdir()
    (broken / "0003" / "question.txt").write_text("Fine question.")
    (broken / "0003" / "solutions.json").write_text("[not json")
    (broken / "0003" / "input_output.json").write_text('{"inputs": ["1"], "outputs": ["1"]}')
    counts = Counter()
    problems = list(read_apps_problems(tmp_path, "train", counts))
    assert [p.problem_id for p in problems] == ["0000", "0003"]
    assert problems[1].solutions == () and problems[1].inputs == ["1"]
    assert counts == Counter(problems=2, problems_without_question=2, invalid_utf8=1,
                             malformed_json=1)


def test_reader_rejects_a_folder_that_is_not_a_release(tmp_path):
    with pytest.raises(AppsLayoutError, match="train/ and test/"):
        list(read_apps_problems(tmp_path, "test"))


def test_validation_is_held_out_by_problem_and_is_stable():
    keys = [f"train/{index:04d}" for index in range(200)]
    held_out = validation_problem_keys(keys, 0.05)
    assert len(held_out) == 10 and held_out <= set(keys)
    assert validation_problem_keys(list(reversed(keys)), 0.05) == held_out
    assert validation_problem_keys(keys[:1], 0.05) == frozenset()


def test_loss_masked_tokens_decode_to_exactly_the_solution_and_end_of_text(
        tmp_path, apps_release, tokenizer_dir, tokenizer):
    builder = build(tmp_path, apps_release, tokenizer_dir, "t_train", sequence_length=192)
    solutions = {s for key in ("train/0000", "train/0002")
                 for s in fixtures.APPS_PROBLEMS[key]["solutions"]}
    prompts = {fixtures.APPS_PROBLEMS[key]["question"] for key in ("train/0000", "train/0002")}
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert len(examples) == 3
    for example in examples:
        ids, loss = example["input_ids"], example["loss_mask"]
        target = tokenizer.decode(ids[loss == 1].tolist())
        assert target.endswith("<|endoftext|>")
        assert target.removesuffix("<|endoftext|>") in solutions
        prompt = tokenizer.decode(ids[(example["attention_mask"] == 1) & (loss == 0)].tolist())
        assert prompt.startswith("\nQUESTION:\n") and prompt.endswith("\nANSWER:\n")
        assert any(question in prompt for question in prompts)
        # Loss sits on one contiguous stretch that ends with the last real token.
        positions = (loss == 1).nonzero()[0]
        assert positions[-1] == example["attention_mask"].sum() - 1
        assert (positions == range(positions[0], positions[-1] + 1)).all()
    counts = builder.info.metadata["build_counts"]
    assert counts["train"]["too_long"] == 1
    assert counts["validation"]["examples"] == 1


def test_evaluation_view_carries_prompt_tests_and_difficulty(
        tmp_path, apps_release, tokenizer_dir):
    builder = build(tmp_path, apps_release, tokenizer_dir, "t_eval", problems=("test",),
                    view="evaluation")
    rows = {row["problem_id"].decode(): row
            for row in tfds.as_numpy(builder.as_dataset(split="test"))}
    assert sorted(rows) == ["0000", "0001"]
    call_based = rows["0001"]
    source = fixtures.APPS_PROBLEMS["test/0001"]
    assert call_based["prompt"].decode() == build_prompt(
        source["question"], source["starter_code"], "inc")
    assert call_based["fn_name"].decode() == "inc"
    assert json.loads(call_based["inputs"]) == [[1]]
    assert json.loads(call_based["outputs"]) == [2]
    assert call_based["difficulty"].decode() == "interview"
    assert json.loads(call_based["solutions"]) == source["solutions"]
    assert rows["0000"]["fn_name"].decode() == ""
    assert "Standard Input" in rows["0000"]["prompt"].decode()
    with pytest.raises(ValueError, match="not a token dataset"):
        pipeline.make_training_dataset(builder, 1, split="test")


def test_the_release_tarball_in_the_manual_dir_is_extracted(tmp_path, apps_release, tokenizer_dir):
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "APPS.tar.gz", "w:gz") as tarball:
        tarball.add(apps_release / "APPS", arcname="APPS")
    builder = build(tmp_path, manual, tokenizer_dir, "t_tarball", problems=("test",),
                    view="evaluation")
    assert builder.info.splits["test"].num_examples == 2


def test_configs_reject_unknown_views_and_splits():
    with pytest.raises(ValueError, match="view"):
        apps.AppsConfig(name="x", view="inference")
    with pytest.raises(ValueError, match="problems"):
        apps.AppsConfig(name="x", problems=["validation"])
