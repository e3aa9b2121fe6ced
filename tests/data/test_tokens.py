"""Tokenizer loading and training, token packing, and identifier digests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tokenizers

from neo_keras.data.dedup import digest_fraction, identifier_digest
from neo_keras.data.packing import BlockPacker, prompt_completion_example
from neo_keras.data.tokenizer import TokenizerError, load_tokenizer
from neo_keras.data.tokenizer_training import train_byte_level_bpe


def test_trained_tokenizer_round_trips_any_text_and_has_end_of_text(tokenizer_dir, tokenizer):
    assert {p.name for p in tokenizer_dir.iterdir()} >= {
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
    }
    assert tokenizer.vocab_size == 400
    assert tokenizer.decode([tokenizer.eot_id]) == "<|endoftext|>"
    text = "def f(x):\n\tif x:  # ünïcødé ✓\r\n        return 'a\\tb'\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode_batch([text, "x"]) == [tokenizer.encode(text), tokenizer.encode("x")]
    assert tokenizer.eot_id not in tokenizer.encode("plain text adds no special token")


def test_end_of_text_written_inside_a_document_is_text(tokenizer_dir, tokenizer):
    from neo_keras import GPTNeoTokenizer
    from neo_keras.models.gpt_neo.hf_convert import load_tokenizer as load_model_tokenizer

    # The source of a tokenizer or a test of one holds the marker as a string literal.
    text = 'END = "<|endoftext|>"\nparts = text.split("<|endoftext|>")\n'
    ids = tokenizer.encode(text)
    assert tokenizer.eot_id not in ids
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_batch([text]) == [ids]
    # Prompts at evaluation time are tokenized as the training data was.
    model_tokenizer = load_model_tokenizer(GPTNeoTokenizer, str(tokenizer_dir / "tokenizer.json"))
    assert np.asarray(model_tokenizer(text)).tolist() == ids


def test_tokenizer_json_file_and_directory_load_the_same(tokenizer_dir):
    from_dir = load_tokenizer(str(tokenizer_dir))
    from_file = load_tokenizer(str(tokenizer_dir / "tokenizer.json"))
    assert from_dir.encode("return value") == from_file.encode("return value")
    assert from_dir.eot_id == from_file.eot_id


def test_directory_of_vocab_and_merges_loads_through_transformers(tmp_path, tokenizer_dir):
    (tmp_path / "vocab.json").write_bytes((tokenizer_dir / "vocab.json").read_bytes())
    (tmp_path / "merges.txt").write_bytes((tokenizer_dir / "merges.txt").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>"})
    )
    loaded = load_tokenizer(str(tmp_path))
    reference = load_tokenizer(str(tokenizer_dir))
    assert loaded.encode("def add(a, b):") == reference.encode("def add(a, b):")
    assert loaded.eot_id == reference.eot_id


def test_missing_paths_and_tokenizers_without_end_of_text_are_clear_errors(tmp_path):
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nowhere" / "tokenizer.json"))
    bare = tokenizers.Tokenizer(tokenizers.models.BPE())
    bare.save(str(tmp_path / "bare.json"))
    with pytest.raises(TokenizerError, match="endoftext"):
        load_tokenizer(str(tmp_path / "bare.json"))


def test_training_is_deterministic(tmp_path):
    texts = ["def a():\n    return 1\n", "class B:\n    pass\n"] * 10
    first = train_byte_level_bpe(texts, tmp_path / "one", vocab_size=300)
    second = train_byte_level_bpe(texts, tmp_path / "two", vocab_size=300)
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()


def test_block_packer_separates_documents_and_pads_only_the_last_block():
    eot = 0
    packer = BlockPacker(sequence_length=4, eot_id=eot)
    blocks = [*packer.add([1, 2, 3]), *packer.add([4, 5, 6, 7, 8]), *packer.finish()]
    assert [b["input_ids"].tolist() for b in blocks] == [[1, 2, 3, 0], [4, 5, 6, 7], [8, 0, 0, 0]]
    assert [b["attention_mask"].tolist() for b in blocks] == [
        [1, 1, 1, 1],
        [1, 1, 1, 1],
        [1, 1, 0, 0],
    ]
    for block in blocks:
        np.testing.assert_array_equal(block["loss_mask"], block["attention_mask"])
        assert block["input_ids"].dtype == np.int32
    assert list(packer.finish()) == []


def test_prompt_completion_loss_covers_completion_and_end_of_text_only():
    example = prompt_completion_example([7, 8, 9], [4, 5], eot_id=0, sequence_length=8)
    assert example["input_ids"].tolist() == [7, 8, 9, 4, 5, 0, 0, 0]
    assert example["attention_mask"].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert example["loss_mask"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert prompt_completion_example([7, 8, 9], [4, 5], eot_id=0, sequence_length=5) is None


def test_identifier_digest_ignores_layout_but_not_names():
    original = "def add(a, b):\n    return a + b\n"
    assert identifier_digest(original) == identifier_digest("def  add(a,b):\n\treturn a-b")
    assert identifier_digest(original) != identifier_digest("def add(a, c):\n    return a + c")
    fractions = [digest_fraction(identifier_digest(f"x{i}")) for i in range(2000)]
    assert all(0 <= f < 1 for f in fractions)
    assert 0.45 < np.mean(fractions) < 0.55
