"""Apache Beam versions of the packed-corpus splits, for corpora too large for one process.

They produce the same keyed examples as `code_corpus.iter_split_examples`: work is spread by
source shard, and de-duplication is a combine by identifier digest that keeps the first file in
(shard, line) order, as the single-process path does. Skip counts travel as Beam counters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam

from neo_keras.data.builder_support import report_beam_counts
from neo_keras.data.code_corpus import (
    DocumentSelection,
    KeyedExample,
    PackingSpec,
    ShardSource,
    iter_grouped_records,
    iter_shard_examples,
    pack_group,
    sampled_in,
)

# (shard index, group, line number, text): a document's position decides which copy is kept.
Document = tuple[int, int, int, str]


@beam.ptransform_fn
def PackedSplit(
    pbegin, shards: Sequence[ShardSource], spec: PackingSpec, split: str, fraction: float = 1.0
):
    """Every shard packed on some worker, without de-duplication."""
    return (
        pbegin
        | "Shards" >> beam.Create(list(shards))
        | "Spread" >> beam.Reshuffle()
        | "Pack" >> beam.FlatMap(_shard_examples, spec=spec, split=split, fraction=fraction)
    )


@beam.ptransform_fn
def DedupSplit(
    pbegin,
    shards: Sequence[ShardSource],
    excluded_shards: Sequence[ShardSource],
    spec: PackingSpec,
    split: str,
    fraction: float = 1.0,
):
    """De-duplicated by identifier digest, dropping anything that is in `excluded_shards`."""
    documents = (
        pbegin
        | "Shards" >> beam.Create(list(enumerate(shards)))
        | "Spread" >> beam.Reshuffle()
        | "Read" >> beam.FlatMap(_keyed_documents, spec=spec, split=split, fraction=fraction)
    )
    sources = [documents]
    if excluded_shards:
        sources.append(
            pbegin
            | "ExcludedShards" >> beam.Create(list(excluded_shards))
            | "SpreadExcluded" >> beam.Reshuffle()
            | "ExcludedDigests" >> beam.FlatMap(_excluded_marks, text_fields=spec.text_fields)
        )
    shard_keys = [shard.key for shard in shards]
    return (
        sources
        | "Merge" >> beam.Flatten()
        | "FirstCopy" >> beam.CombinePerKey(_FirstCopyUnlessExcluded())
        | "Survivors" >> beam.FlatMap(_survivor, split=split)
        | "ByGroup" >> beam.GroupByKey()
        | "Pack" >> beam.FlatMap(_pack_group, shard_keys=shard_keys, spec=spec, split=split)
    )


def _shard_examples(
    shard: ShardSource, spec: PackingSpec, split: str, fraction: float
) -> Iterator[KeyedExample]:
    counts: Counter = Counter()
    yield from iter_shard_examples(shard, spec, counts, DocumentSelection(fraction))
    report_beam_counts(counts, split)


def _keyed_documents(
    indexed_shard: tuple[int, ShardSource], spec: PackingSpec, split: str, fraction: float
) -> Iterator[tuple[bytes, Document]]:
    index, shard = indexed_shard
    counts: Counter = Counter()
    for item in iter_grouped_records(shard, counts, spec.text_fields):
        if sampled_in(item, fraction):
            yield item.digest, (index, item.group, item.record.line_number, item.record.text)
        else:
            counts["sampled_out"] += 1
    report_beam_counts(counts, split)


def _excluded_marks(
    shard: ShardSource, text_fields: tuple[str, ...]
) -> Iterator[tuple[bytes, None]]:
    for item in iter_grouped_records(shard, Counter(), text_fields):
        yield item.digest, None


class _FirstCopyUnlessExcluded(beam.CombineFn):
    """Per digest: (whether an excluded file has it, earliest document, number of documents)."""

    def create_accumulator(self):
        return False, None, 0

    def add_input(self, accumulator, document: Document | None):
        excluded, first, count = accumulator
        if document is None:
            return True, first, count
        return excluded, _earlier(first, document), count + 1

    def merge_accumulators(self, accumulators):
        excluded, first, count = False, None, 0
        for other_excluded, other_first, other_count in accumulators:
            excluded = excluded or other_excluded
            first = _earlier(first, other_first)
            count += other_count
        return excluded, first, count

    def extract_output(self, accumulator):
        return accumulator


def _earlier(first: Document | None, other: Document | None) -> Document | None:
    if first is None:
        return other
    if other is None:
        return first
    return min(first, other, key=lambda document: (document[0], document[2]))


def _survivor(element, split: str) -> Iterator[tuple[tuple[int, int], tuple[int, str]]]:
    _, (excluded, first, count) = element
    counts: Counter = Counter()
    if excluded:
        counts["duplicate_of_eval"] += count
    elif first is not None:
        counts["duplicate"] += count - 1
        shard_index, group, line_number, text = first
        yield (shard_index, group), (line_number, text)
    report_beam_counts(counts, split)


def _pack_group(
    element: tuple[tuple[int, int], Iterable[tuple[int, str]]],
    shard_keys: Sequence[str],
    spec: PackingSpec,
    split: str,
) -> Iterator[KeyedExample]:
    (shard_index, group), documents = element
    texts = [text for _, text in sorted(documents)]
    counts: Counter = Counter()
    yield from pack_group(shard_keys[shard_index], group, texts, spec, counts)
    report_beam_counts(counts, split)
