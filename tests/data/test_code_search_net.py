"""CodeSearchNet from its release: the release's fields and zips, and the Hugging Face export."""

from __future__ import annotations

from unittest import mock

import pytest
import tensorflow_datasets as tfds

from tests.data import fixtures
from tests.data.builders import builder_module

code_search_net = builder_module("code_search_net")


def build(tmp_path, manual_dir, tokenizer_dir, languages=("python", "go")):
    config = code_search_net.CodeSearchNetConfig(
        name="t_" + "_".join(languages),
        languages=languages,
        tokenizer=str(tokenizer_dir),
        sequence_length=256,
    )
    builder = code_search_net.Builder(config=config, data_dir=str(tmp_path / "data"))
    # Everything is in the manual dir: a download would be a bug (and there is no network).
    with mock.patch.object(
        tfds.download.DownloadManager,
        "download_and_extract",
        side_effect=AssertionError("the build tried to download"),
    ):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )
    return builder


def functions(builder, split, tokenizer):
    """The functions of a split, decoded, in order."""
    texts = []
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        real = example["input_ids"][example["attention_mask"] == 1]
        texts += tokenizer.decode(real.tolist()).split("<|endoftext|>")[:-1]
    return sorted(texts)


EXPECTED = {
    split: sorted(
        code for language in ("python", "go") for code in fixtures.CSN_FILES[(language, folder)]
    )
    for folder, split in (("train", "train"), ("valid", "validation"), ("test", "test"))
}


@pytest.mark.parametrize("layout", ["extracted", "zips", "hugging_face_names"])
def test_every_function_of_the_release_is_trained_on(tmp_path, tokenizer_dir, tokenizer, layout):
    manual = tmp_path / "manual"
    if layout == "zips":
        fixtures.write_code_search_net_zips(manual, ("python", "go", "ruby"))
    else:
        fixtures.write_code_search_net_tree(
            manual, hugging_face_names=layout == "hugging_face_names"
        )
    builder = build(tmp_path, manual, tokenizer_dir)
    for split, codes in EXPECTED.items():
        assert functions(builder, split, tokenizer) == codes
    assert "missing_text" not in builder.info.metadata["build_counts"]["train"]


def test_a_line_with_neither_name_is_counted_as_missing_text(tmp_path, tokenizer_dir):
    manual = fixtures.write_code_search_net_tree(tmp_path / "manual")
    fixtures.write_gz(
        manual / "python" / "final" / "jsonl" / "train" / "python_train_1.jsonl.gz",
        [b'{"code": "def e():\\n    return 5\\n"}\n'],
    )
    builder = build(tmp_path, manual, tokenizer_dir, languages=("python",))
    assert builder.info.metadata["build_counts"]["train"]["missing_text"] == 1
