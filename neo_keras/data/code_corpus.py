"""Packed code corpora: shards of documents in, fixed-length token blocks out.

The unit of work is one source shard, and inside it a *group*: consecutive records up to
`GROUP_BYTES` of text. Each group is packed on its own (its last block padded), so the examples
depend only on the group's surviving documents and their order. That is what lets the single
process path here and the Apache Beam path in `beam_generation` produce the same examples with the
same keys, whichever worker handles which shard.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from etils import epath

from neo_keras.data.corpus_format import SourceRecord, iter_records
from neo_keras.data.dedup import digest_fraction, identifier_digest
from neo_keras.data.packing import BlockPacker, TokenExample
from neo_keras.data.tokenizer import cached_tokenizer

GROUP_BYTES = 32 << 20
# Documents encoded together, on the tokenizer's threads (TOKENIZERS_PARALLELISM=false: one).
_ENCODE_BATCH = 64

KeyedExample = tuple[str, TokenExample]


@dataclass(frozen=True)
class ShardSource:
    """A source shard: `key` is its stable name in example keys, `path` where it is read."""

    key: str
    path: str


@dataclass(frozen=True)
class PackingSpec:
    """How documents become blocks: tokenizer spec, block length, and the JSON text fields."""

    tokenizer: str
    sequence_length: int
    text_fields: tuple[str, ...] = ("text",)


@dataclass(frozen=True)
class GroupedRecord:
    """A record with its group index within the shard."""

    group: int
    record: SourceRecord

    @functools.cached_property
    def digest(self) -> bytes:
        """Identifier digest, computed only when sampling or de-duplication asks for it."""
        return identifier_digest(self.record.text)


def shard_sources(root: epath.PathLike, shards: Sequence[epath.Path]) -> list[ShardSource]:
    """Names each shard by its path relative to `root`, so keys never hold local paths."""
    root = epath.Path(root)
    return [ShardSource(shard.relative_to(root).as_posix(), os.fspath(shard)) for shard in shards]


def iter_grouped_records(
    shard: ShardSource, counts: Counter, text_fields: tuple[str, ...]
) -> Iterator[GroupedRecord]:
    """The usable records of a shard, each tagged with its group."""
    group, group_bytes = 0, 0
    for record in iter_records(shard.path, counts, text_fields):
        if group_bytes >= GROUP_BYTES:
            group, group_bytes = group + 1, 0
        group_bytes += len(record.text)
        yield GroupedRecord(group, record)


def sampled_in(item: GroupedRecord, fraction: float) -> bool:
    """Whether a document belongs to the `fraction` sample; chosen by content, so stable."""
    return fraction >= 1.0 or digest_fraction(item.digest) < fraction


class DocumentSelection:
    """Which documents a split keeps, in one process: a content sample and de-duplication.

    De-duplication keeps the first file (in shard and line order) of each identifier digest and
    drops any file whose digest is in `excluded` (the validation and test files, for train).
    It holds one 16-byte digest per kept file, not the files.
    """

    def __init__(
        self, fraction: float = 1.0, dedup: bool = False, excluded: frozenset[bytes] = frozenset()
    ):
        self._fraction = fraction
        self._dedup = dedup
        self._excluded = excluded
        self._seen: set[bytes] = set()

    def admits(self, item: GroupedRecord, counts: Counter) -> bool:
        """Decides on one document, counting the reason when it is dropped."""
        if not sampled_in(item, self._fraction):
            counts["sampled_out"] += 1
            return False
        if not self._dedup:
            return True
        if item.digest in self._excluded:
            counts["duplicate_of_eval"] += 1
            return False
        if item.digest in self._seen:
            counts["duplicate"] += 1
            return False
        self._seen.add(item.digest)
        return True


def collect_digests(
    shards: Iterable[ShardSource], text_fields: tuple[str, ...]
) -> frozenset[bytes]:
    """Identifier digests of every usable document in `shards`."""
    counts: Counter = Counter()
    return frozenset(
        item.digest for shard in shards for item in iter_grouped_records(shard, counts, text_fields)
    )


def pack_group(
    shard_key: str, group: int, texts: Iterable[str], spec: PackingSpec, counts: Counter
) -> Iterator[KeyedExample]:
    """Packs one group's texts, in order, into keyed blocks `<shard>/<group>/<block>`."""
    tokenizer = cached_tokenizer(spec.tokenizer)
    packer = BlockPacker(spec.sequence_length, tokenizer.eot_id)
    blocks = _packed_blocks(packer, tokenizer.encode_batch, texts, counts)
    for index, example in enumerate(blocks):
        yield f"{shard_key}/{group}/{index}", example


def iter_shard_examples(
    shard: ShardSource, spec: PackingSpec, counts: Counter, selection: DocumentSelection
) -> Iterator[KeyedExample]:
    """All examples of one shard, streaming: one group's texts in memory at most."""
    current_group, texts = 0, []
    for item in iter_grouped_records(shard, counts, spec.text_fields):
        if item.group != current_group:
            yield from pack_group(shard.key, current_group, texts, spec, counts)
            current_group, texts = item.group, []
        if selection.admits(item, counts):
            texts.append(item.record.text)
    yield from pack_group(shard.key, current_group, texts, spec, counts)


def iter_split_examples(
    shards: Sequence[ShardSource], spec: PackingSpec, counts: Counter, selection: DocumentSelection
) -> Iterator[KeyedExample]:
    """All examples of a split's shards, in shard order."""
    for shard in shards:
        yield from iter_shard_examples(shard, spec, counts, selection)


def _packed_blocks(
    packer: BlockPacker,
    encode_batch: Callable[[list[str]], list[list[int]]],
    texts: Iterable[str],
    counts: Counter,
) -> Iterator[TokenExample]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == _ENCODE_BATCH:
            yield from _add_encoded(packer, encode_batch(batch), counts)
            batch = []
    if batch:
        yield from _add_encoded(packer, encode_batch(batch), counts)
    yield from packer.finish()


def _add_encoded(
    packer: BlockPacker, encoded: list[list[int]], counts: Counter
) -> Iterator[TokenExample]:
    for ids in encoded:
        counts["documents"] += 1
        counts["tokens"] += len(ids) + 1
        yield from packer.add(ids)
