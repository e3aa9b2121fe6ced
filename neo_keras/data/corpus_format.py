"""Line-delimited JSON shards: reading them defensively, and writing Code Clippy format shards.

The Code Clippy corpus is in lm_dataformat's layout: zstd-compressed JSON lines, one object a
line, `{"text": ..., "meta": {...}}`. CodeSearchNet ships gzip-compressed JSON lines. Reading
skips what cannot be used (malformed JSON, non-UTF-8 bytes, missing or empty text, the tail of a
truncated or corrupt shard) and counts each reason in a `collections.Counter`, so a build can
report what it dropped instead of failing on one bad line of a hundred-gigabyte corpus.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from etils import epath

ZSTD_SUFFIX = ".jsonl.zst"
GZIP_SUFFIX = ".jsonl.gz"
_CHUNK_BYTES = 1 << 20

logger = logging.getLogger(__name__)


class CorruptShardError(Exception):
    """The compressed stream of a shard cannot be decoded from some point on."""


@dataclass(frozen=True)
class SourceRecord:
    """One usable line of a shard.

    Attributes:
        line_number: 0-based line index in the shard, a stable position for keys and ties.
        text: the document text.
        meta: the object's `meta` field, or an empty dict.
    """

    line_number: int
    text: str
    meta: dict = field(default_factory=dict)


def list_shards(directory: epath.PathLike, pattern: str = f"*{ZSTD_SUFFIX}") -> list[epath.Path]:
    """Shard files in `directory` matching `pattern`, in a stable order; empty if it is absent.

    Paths may be local or on any filesystem `etils.epath` reaches (gs://, s3://), so Beam
    workers in the cloud read the corpus where it is stored.
    """
    directory = epath.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob(pattern) if not path.is_dir())


def iter_records(
    path: epath.PathLike, counts: Counter, text_fields: tuple[str, ...] = ("text",)
) -> Iterator[SourceRecord]:
    """Yields the usable records of one shard, counting every skipped line or shard by reason.

    Args:
        path: a `.jsonl.zst` or `.jsonl.gz` shard.
        counts: incremented with `records` and each skip reason.
        text_fields: the JSON keys that may hold the document text; the first one a line
            has is used (one corpus may come in two exports that name it differently).
    """
    path = epath.Path(path)
    if path.stat().length == 0:
        counts["empty_shard"] += 1
        logger.warning("Skipping empty shard %s.", path)
        return
    lines = _iter_lines(_decompressed_chunks(path))
    line_number = -1
    try:
        for line_number, line in enumerate(lines):
            record = _parse_line(line, line_number, counts, text_fields)
            if record is not None:
                counts["records"] += 1
                yield record
    except CorruptShardError as err:
        counts["corrupt_shards"] += 1
        logger.warning(
            "Shard %s is damaged after line %d (%s); its remaining lines are skipped. "
            "Download or copy it again to use them.",
            path,
            line_number,
            err,
        )


def iter_corpus_texts(directory: epath.PathLike) -> Iterator[str]:
    """Texts of every record in the `.jsonl.zst` shards under `directory`, skipping bad lines."""
    counts: Counter = Counter()
    for shard in list_shards(directory):
        for record in iter_records(shard, counts):
            yield record.text


def _parse_line(
    line: bytes, line_number: int, counts: Counter, text_fields: tuple[str, ...]
) -> SourceRecord | None:
    if not line.strip():
        return None  # blank separator lines are not records
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        counts["invalid_utf8"] += 1
        return None
    except json.JSONDecodeError:
        counts["malformed_json"] += 1
        return None
    text = _first_field(obj, text_fields)
    if not isinstance(text, str):
        counts["missing_text"] += 1
        return None
    if not text.strip():
        counts["empty_text"] += 1
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates written as \ud8xx escapes
        counts["invalid_utf8"] += 1
        return None
    meta = obj.get("meta")
    return SourceRecord(line_number, text, meta if isinstance(meta, dict) else {})


def _first_field(obj, names: tuple[str, ...]):
    """The value of the first of `names` that `obj` has, when it is a JSON object; else None."""
    if isinstance(obj, dict):
        for name in names:
            if name in obj:
                return obj[name]
    return None


def _iter_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    for chunk in chunks:
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            pending.append(chunk)
            continue
        pending.append(pieces[0])
        yield b"".join(pending)
        yield from pieces[1:-1]
        pending = [pieces[-1]]
    tail = b"".join(pending)
    if tail:
        yield tail


def _decompressed_chunks(path: epath.Path) -> Iterator[bytes]:
    if path.name.endswith(".gz"):
        yield from _gzip_chunks(path)
    else:
        yield from _zstd_chunks(path)


def _zstd_chunks(path: epath.Path) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor()
    with path.open("rb") as handle:
        frame = decompressor.decompressobj()
        in_frame = False
        while data := handle.read(_CHUNK_BYTES):
            while data:
                try:
                    out = frame.decompress(data)
                except zstandard.ZstdError as err:
                    raise CorruptShardError(str(err)) from err
                in_frame = True
                if out:
                    yield out
                if not frame.eof:
                    break
                # lm_dataformat shards may hold several frames back to back.
                data = frame.unused_data
                frame = decompressor.decompressobj()
                in_frame = False
        if in_frame:
            raise CorruptShardError("the file ends in the middle of a zstd frame (truncated)")


def _gzip_chunks(path: epath.Path) -> Iterator[bytes]:
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as handle:
        while True:
            try:
                data = handle.read(_CHUNK_BYTES)
            except EOFError as err:
                raise CorruptShardError(f"truncated gzip stream: {err}") from err
            except (OSError, zlib.error) as err:
                raise CorruptShardError(str(err)) from err
            if not data:
                return
            yield data


class ShardWriter:
    """Writes `{"text", "meta"}` records into numbered `.jsonl.zst` shards in one directory.

    A new shard starts every `records_per_shard` records. Frames carry zstd checksums, so a
    damaged shard is detected when read back.
    """

    def __init__(self, directory: Path, records_per_shard: int = 10_000):
        if records_per_shard < 1:
            raise ValueError(f"records_per_shard must be positive, got {records_per_shard}.")
        self._directory = directory
        self._records_per_shard = records_per_shard
        self._compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        self._stream = None
        self._in_shard = 0
        self.num_shards = 0
        self.num_records = 0

    def write(self, text: str, meta: dict) -> None:
        """Appends one record, opening a new shard when the current one is full."""
        if self._stream is None or self._in_shard >= self._records_per_shard:
            self._open_next_shard()
        line = json.dumps({"text": text, "meta": meta}, ensure_ascii=False) + "\n"
        self._stream.write(line.encode("utf-8"))
        self._in_shard += 1
        self.num_records += 1

    def close(self) -> None:
        """Finishes the current shard."""
        if self._stream is not None:
            self._stream.close()  # also closes the file
            self._stream = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _open_next_shard(self) -> None:
        self.close()
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._directory / f"data_{self.num_shards:05d}{ZSTD_SUFFIX}"
        self._stream = self._compressor.stream_writer(path.open("wb"))
        self._in_shard = 0
        self.num_shards += 1
