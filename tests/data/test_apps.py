"""APPS: upstream's two formats, the release reader, and what the builder's views hold."""

from __future__ import annotations

import json
import tarfile
from collections import Counter

import pytest
import tensorflow_datasets as tfds

from neo_keras.data import pipeline
from neo_keras.data.apps import (
    AppsLayoutError,
    read_apps_problems,
    reindent_solution,
    validation_problem_keys,
)
from neo_keras.evaluation.apps import load_problems
from tests.data import fixtures
from tests.data.builders import builder_module

apps = builder_module("apps")


def build(tmp_path, release, tokenizer_dir, name, **config_values):
    config = apps.AppsConfig(name=name, tokenizer=str(tokenizer_dir), **config_values)
    builder = apps.Builder(config=config, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(release))
    )
    return builder


# One constructed problem of every kind, with the strings the APPS scripts make of it:
# "training" is upstream's training text before the solution (hendrycks/apps
# train/dataset_apps/APPSBaseDataset.py: `initialize` picks the format by starter_code.py,
# `sample_gpt_task` joins "\nQUESTION:\n" + q + "\n" + s + "\n" + format + "\nANSWER:\n"), and
# "evaluation" the prompt of eval/generate_gpt_codes.py `generate_prompt` (format by fn_name).
# None: upstream makes no such text (no solutions.json: no training example; no
# input_output.json: the problem is not evaluated).
UPSTREAM_CASES = {
    "standard_input": {
        "problem": {
            "question": "Read n and print n squared.\n",
            "input_output": {"inputs": ["3\n"], "outputs": ["9\n"]},
            "solutions": ["n = int(input())\nprint(n * n)\n"],
        },
        "training": "\nQUESTION:\nRead n and print n squared.\n\n\n\nUse Standard Input format\n"
        "\nANSWER:\n",
        "evaluation": "\nQUESTION:\nRead n and print n squared.\n\nUse Standard Input format"
        "\nANSWER:\n",
    },
    "call_based_with_starter": {
        "problem": {
            "question": "Return the sum of a list.\n",
            "starter_code": "def total(xs):\n",
            "input_output": {"fn_name": "total", "inputs": [[[1, 2]]], "outputs": [3]},
            "solutions": ["def total(xs):\n  s = 0\n  for x in xs:\n    s += x\n  return s\n"],
        },
        "training": "\nQUESTION:\nReturn the sum of a list.\n\ndef total(xs):\n\n\n"
        "Use Call-Based format\n\nANSWER:\n",
        "evaluation": "\nQUESTION:\nReturn the sum of a list.\n\ndef total(xs):\n\n"
        "Use Call-Based format\nANSWER:\n",
    },
    "leetcode_class_solution": {
        "problem": {
            "question": "Return x + 1.\n",
            "starter_code": "class Solution:\n    def inc(self, x: int) -> int:\n        ",
            "input_output": {"fn_name": "inc", "inputs": [[1]], "outputs": [2]},
            "solutions": [
                "class Solution:\n    def inc(self, x: int) -> int:\n        return x + 1"
            ],
        },
        "training": "\nQUESTION:\nReturn x + 1.\n\nclass Solution:\n    def inc(self, x: int) -> "
        "int:\n        \n\nUse Call-Based format\n\nANSWER:\n",
        "evaluation": "\nQUESTION:\nReturn x + 1.\n\nclass Solution:\n    def inc(self, x: int) -> "
        "int:\n        \nUse Call-Based format\nANSWER:\n",
    },
    "crlf_question": {
        "problem": {
            "question": "Print hello.\r\nThen stop.\r\n",
            "input_output": {"inputs": ["\n"], "outputs": ["hello\n"]},
            "solutions": ["if True:\r\n\tprint('hello')\r\n"],
        },
        "training": "\nQUESTION:\nPrint hello.\nThen stop.\n\n\n\nUse Standard Input format\n"
        "\nANSWER:\n",
        "evaluation": "\nQUESTION:\nPrint hello.\nThen stop.\n\nUse Standard Input format"
        "\nANSWER:\n",
    },
    "no_input_output": {
        "problem": {
            "question": "Name the answer.\n",
            "starter_code": "def answer():\n",
            "solutions": ["def answer():\n    return 42\n"],
        },
        "training": "\nQUESTION:\nName the answer.\n\ndef answer():\n\n\nUse Call-Based format\n"
        "\nANSWER:\n",
        "evaluation": None,
    },
    "no_solutions": {
        "problem": {
            "question": "Double a number.\n",
            "input_output": {"inputs": ["4\n"], "outputs": ["8\n"]},
        },
        "training": None,
        "evaluation": "\nQUESTION:\nDouble a number.\n\nUse Standard Input format\nANSWER:\n",
    },
    # The two scripts disagree: a function to call but no starter code.
    "fn_name_without_starter": {
        "problem": {
            "question": "Return 7.\n",
            "input_output": {"fn_name": "seven", "inputs": [[]], "outputs": [7]},
            "solutions": ["def seven():\n    return 7\n"],
        },
        "training": "\nQUESTION:\nReturn 7.\n\n\n\nUse Standard Input format\n\nANSWER:\n",
        "evaluation": "\nQUESTION:\nReturn 7.\n\nUse Call-Based format\nANSWER:\n",
    },
}
# The solutions as upstream trains on them: indentation one tab a level, LF line ends.
REINDENTED = {
    "standard_input": "n = int(input())\nprint(n * n)\n",
    "call_based_with_starter": "def total(xs):\n\ts = 0\n\tfor x in xs:\n\t\ts += x\n\treturn s\n",
    "leetcode_class_solution": "class Solution:\n\tdef inc(self, x: int) -> int:\n"
    "\t\treturn x + 1\n",
    "crlf_question": "if True:\n\tprint('hello')\n",
    "no_input_output": "def answer():\n\treturn 42\n",
    "fn_name_without_starter": "def seven():\n\treturn 7\n",
}


@pytest.fixture(scope="module")
def upstream_release(tmp_path_factory):
    """Every case as a train problem and as a test problem, folders 0000, 0001, ..."""
    problems = {
        f"{split}/{index:04d}": case["problem"]
        for split in ("train", "test")
        for index, case in enumerate(UPSTREAM_CASES.values())
    }
    return fixtures.write_apps_tree(tmp_path_factory.mktemp("upstream"), problems)


def test_training_examples_are_upstreams_training_text_byte_for_byte(
    tmp_path, upstream_release, tokenizer_dir, tokenizer
):
    builder = build(
        tmp_path,
        upstream_release,
        tokenizer_dir,
        "t_upstream_train",
        sequence_length=256,
        validation_fraction=0.0,
    )
    texts = sorted(
        tokenizer.decode(row["input_ids"][row["attention_mask"] == 1].tolist())
        for row in tfds.as_numpy(builder.as_dataset(split="train"))
    )
    expected = sorted(
        case["training"] + REINDENTED[name] + "<|endoftext|>"
        for name, case in UPSTREAM_CASES.items()
        if case["training"] is not None
    )
    assert texts == expected


def test_evaluation_prompts_are_upstreams_byte_for_byte(tmp_path, upstream_release):
    expected = {
        f"{index:04d}": case["evaluation"]
        for index, case in enumerate(UPSTREAM_CASES.values())
        if case["evaluation"] is not None
    }
    builder = apps.Builder(config="eval", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(upstream_release))
    )
    rows = tfds.as_numpy(builder.as_dataset(split="test"))
    assert {row["problem_id"].decode(): row["prompt"].decode() for row in rows} == expected
    # The evaluator asks the same, read from the release or from the built dataset.
    for source in (upstream_release, tmp_path / "data"):
        assert {p.problem_id: p.prompt for p in load_problems(str(source))} == expected


def test_reindent_follows_the_first_indented_line():
    # Two-space unit: three spaces are one level and a space.
    assert reindent_solution("x = 1\nif x:\n  y = 2\n   z = 3\n    w = 4") == (
        "x = 1\nif x:\n\ty = 2\n\t z = 3\n\t\tw = 4\n"
    )
    # A blank line sets no unit; a tab unit leaves spaces alone; only a line-ending CR goes.
    assert reindent_solution("if a:\n    \n\tb()\r\n    c()\r\rd\r\n") == (
        "if a:\n    \n\tb()\n    c()\r\rd\n"
    )
    assert reindent_solution("") == ""


def test_reader_returns_problems_verbatim_in_folder_order(apps_release):
    problems = list(read_apps_problems(apps_release, "train"))
    assert [p.key for p in problems] == ["train/0000", "train/0001", "train/0002"]
    first = problems[0]
    source = fixtures.APPS_PROBLEMS["train/0000"]
    assert first.solutions == tuple(source["solutions"])
    assert (first.fn_name, first.starter_code, first.difficulty) == (
        "total",
        source["starter_code"],
        "introductory",
    )
    assert first.inputs == [[[1, 2]]] and first.outputs == [3]
    assert problems[1].fn_name == "" and problems[1].starter_code is None


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
    assert counts == Counter(
        problems=2, problems_without_question=2, invalid_utf8=1, malformed_json=1
    )


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
    tmp_path, apps_release, tokenizer_dir, tokenizer
):
    builder = build(tmp_path, apps_release, tokenizer_dir, "t_train", sequence_length=192)
    solutions = {
        reindent_solution(s)
        for key in ("train/0000", "train/0002")
        for s in fixtures.APPS_PROBLEMS[key]["solutions"]
    }
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


def test_evaluation_view_carries_prompt_tests_and_difficulty(tmp_path, apps_release, tokenizer_dir):
    builder = build(
        tmp_path, apps_release, tokenizer_dir, "t_eval", problems=("test",), view="evaluation"
    )
    rows = {
        row["problem_id"].decode(): row for row in tfds.as_numpy(builder.as_dataset(split="test"))
    }
    assert sorted(rows) == ["0000", "0001"]
    call_based = rows["0001"]
    source = fixtures.APPS_PROBLEMS["test/0001"]
    assert call_based["prompt"].decode() == (
        "\nQUESTION:\nReturn x + 1.\n\nclass Solution:\n    def inc(self, x):\n"
        "\nUse Call-Based format\nANSWER:\n"
    )
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
    builder = build(
        tmp_path, manual, tokenizer_dir, "t_tarball", problems=("test",), view="evaluation"
    )
    assert builder.info.splits["test"].num_examples == 2


def test_configs_reject_unknown_views_and_splits():
    with pytest.raises(ValueError, match="view"):
        apps.AppsConfig(name="x", view="inference")
    with pytest.raises(ValueError, match="problems"):
        apps.AppsConfig(name="x", problems=["validation"])
