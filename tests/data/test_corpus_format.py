"""Reading JSON-lines shards defensively, and writing Code Clippy format shards."""

from __future__ import annotations

import json
from collections import Counter

import zstandard

from neo_keras.data.corpus_format import ShardWriter, iter_records, list_shards
from tests.data.fixtures import record_line, write_gz, write_zst


def read_all(path, **kwargs):
    counts = Counter()
    return [record.text for record in iter_records(path, counts, **kwargs)], counts


def test_writer_round_trips_records_across_shards(tmp_path):
    with ShardWriter(tmp_path / "train", records_per_shard=2) as writer:
        for index in range(5):
            writer.write(f"text {index} é\n", {"file_name": f"f{index}.py"})
    shards = list_shards(tmp_path / "train")
    assert [shard.name for shard in shards] == [
        "data_00000.jsonl.zst",
        "data_00001.jsonl.zst",
        "data_00002.jsonl.zst",
    ]
    texts = [text for shard in shards for text in read_all(shard)[0]]
    assert texts == [f"text {index} é\n" for index in range(5)]
    with shards[0].open("rb") as handle:
        first = zstandard.ZstdDecompressor().stream_reader(handle).read().splitlines()[0]
    assert json.loads(first)["meta"] == {"file_name": "f0.py"}


def test_bad_lines_are_skipped_and_counted(tmp_path):
    shard = write_zst(
        tmp_path / "s.jsonl.zst",
        [
            record_line("good one"),
            b'{"text": "unterminated\n',
            b'{"text": "caf\xe9 latin-1"}\n',
            b'{"meta": {}}\n',
            b'{"text": 42}\n',
            b'{"text": "   "}\n',
            b'{"text": "\\ud800 lone surrogate"}\n',
            b'["not", "an", "object"]\n',
            b"\n",
            record_line("good two"),
        ],
    )
    texts, counts = read_all(shard)
    assert texts == ["good one", "good two"]
    assert counts == Counter(
        records=2, malformed_json=1, invalid_utf8=2, missing_text=3, empty_text=1
    )


def test_truncated_zstd_shard_keeps_whole_lines_before_the_cut(tmp_path):
    lines = [record_line(f"document number {index} " * 20) for index in range(2000)]
    data = zstandard.ZstdCompressor(write_checksum=True).compress(b"".join(lines))
    shard = tmp_path / "cut.jsonl.zst"
    shard.write_bytes(data[: len(data) * 2 // 3])
    texts, counts = read_all(shard)
    assert counts["corrupt_shards"] == 1
    assert 0 < len(texts) < 2000
    assert texts == [f"document number {index} " * 20 for index in range(len(texts))]


def test_garbage_and_empty_shards_are_counted_not_fatal(tmp_path):
    garbage = tmp_path / "garbage.jsonl.zst"
    garbage.write_bytes(b"this is not zstd at all")
    empty = tmp_path / "empty.jsonl.zst"
    empty.write_bytes(b"")
    assert read_all(garbage) == ([], Counter(corrupt_shards=1))
    assert read_all(empty) == ([], Counter(empty_shard=1))


def test_several_zstd_frames_in_one_shard_are_all_read(tmp_path):
    compressor = zstandard.ZstdCompressor()
    shard = tmp_path / "frames.jsonl.zst"
    shard.write_bytes(
        compressor.compress(record_line("first")) + compressor.compress(record_line("second"))
    )
    assert read_all(shard)[0] == ["first", "second"]


def test_gzip_shards_with_another_text_field_and_truncation(tmp_path):
    line = json.dumps({"whole_func_string": "def f():\n    pass\n"}).encode() + b"\n"
    good = write_gz(tmp_path / "good.jsonl.gz", [line, line])
    assert read_all(good, text_fields=("whole_func_string",))[0] == ["def f():\n    pass\n"] * 2
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(good.read_bytes()[:-12])
    texts, counts = read_all(cut, text_fields=("whole_func_string",))
    assert counts["corrupt_shards"] == 1


def test_list_shards_is_sorted_and_tolerates_a_missing_folder(tmp_path):
    for name in ("b.jsonl.zst", "a.jsonl.zst", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_shards(tmp_path)] == ["a.jsonl.zst", "b.jsonl.zst"]
    assert list_shards(tmp_path / "absent") == []
