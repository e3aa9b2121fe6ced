"""Code Clippy: GitHub source files packed into fixed-length blocks of token ids."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from neo_keras.data.builder_support import (
    ManualDataError,
    ReportingBuilder,
    TokenConfig,
    require_manual_dir,
    token_features,
)
from neo_keras.data.code_corpus import (
    DocumentSelection,
    PackingSpec,
    ShardSource,
    collect_digests,
    iter_split_examples,
    shard_sources,
)
from neo_keras.data.corpus_format import list_shards

SPLITS = ("train", "validation", "test")

_WHAT_TO_DO = """\
Pass --manual_dir=DIR where DIR holds the corpus in lm_dataformat layout: train/, validation/ and
test/ folders of *.jsonl.zst shards (train/ is required), there or in one folder inside it (the
release's code_clippy_dedup_data/). Download the Code Clippy corpus as the dataset description
says, or make a corpus from local source trees with
`python -m neo_keras.make_corpus SRC... --output DIR`."""


@dataclasses.dataclass(eq=False)
class CodeClippyConfig(TokenConfig):
    """Which files of the corpus train on, and how they are tokenized.

    Attributes:
        dedup: drop exact duplicates by normalized identifier sequence; train files that
            duplicate a validation or test file are dropped too.
        train_fraction: keep this fraction of training files, chosen by content so the choice
            is stable across builds. Validation and test are kept whole.
    """

    dedup: bool = False
    train_fraction: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}.")


class Builder(ReportingBuilder):
    """Code Clippy files as `sequence_length` blocks of token ids with attention and loss masks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Token blocks with attention and loss masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
The Code Clippy corpus is several hundred GB of zstd-compressed JSON lines. Download the
`code_clippy_dedup_data` folder of the CodedotAI Code Clippy release, with its train/,
validation/ and test/ folders of data_<n>_time<t>_default.jsonl.zst shards, and pass that
folder or the folder holding it as --manual_dir. A corpus in the same layout can be made from
local source trees with `python -m neo_keras.make_corpus SRC... --output DIR`."""
    BUILDER_CONFIGS = [
        CodeClippyConfig(name="full", description="Every file of the corpus."),
        CodeClippyConfig(
            name="dedup",
            dedup=True,
            description="Exact duplicates (by identifier sequence) removed.",
        ),
        CodeClippyConfig(
            name="dedup_1pct",
            dedup=True,
            train_fraction=0.01,
            description="De-duplicated, about 1% of the training files.",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.reporting_info(
            features=token_features(self.builder_config.sequence_length),
            homepage="https://github.com/CodedotAl/gpt-code-clippy",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = _corpus_root(require_manual_dir(dl_manager, _WHAT_TO_DO))
        shards = {split: shard_sources(root, list_shards(root / split)) for split in SPLITS}
        if not shards["train"]:
            raise ManualDataError(f"No *.jsonl.zst shards in {root / 'train'}.\n\n{_WHAT_TO_DO}")
        config = self.builder_config
        self.record_tokenizer(config.tokenizer, config.sequence_length)
        excluded = shards["validation"] + shards["test"] if config.dedup else []
        return {
            split: self._generate_examples(
                split=split, shards=shards[split], excluded=excluded if split == "train" else []
            )
            for split in SPLITS
            if shards[split]
        }

    def _generate_examples(
        self, split: str, shards: list[ShardSource], excluded: list[ShardSource]
    ):
        config = self.builder_config
        spec = PackingSpec(config.tokenizer, config.sequence_length)
        fraction = config.train_fraction if split == "train" else 1.0
        if self.uses_beam:
            from neo_keras.data import beam_generation

            if config.dedup:
                return beam_generation.DedupSplit(shards, excluded, spec, split, fraction)
            return beam_generation.PackedSplit(shards, spec, split, fraction)
        return self.require_examples(
            split,
            self._local_examples(split, shards, excluded, spec, fraction),
            f"the shards of {split}/",
        )

    def _local_examples(self, split, shards, excluded, spec, fraction):
        counts = self.split_counts(split)
        selection = DocumentSelection(
            fraction,
            self.builder_config.dedup,
            collect_digests(excluded, spec.text_fields) if excluded else frozenset(),
        )
        yield from iter_split_examples(shards, spec, counts, selection)


def _corpus_root(manual: epath.Path) -> epath.Path:
    """The folder holding the splits: the manual dir, or the one folder in it that has train/.

    The release unpacks to code_clippy_dedup_data/{train,validation,test}/, so either that
    folder or its parent may be given.
    """
    if (manual / "train").is_dir():
        return manual
    inner = [child for child in manual.iterdir() if (child / "train").is_dir()]
    if len(inner) > 1:
        raise ManualDataError(
            f"{manual} holds several corpora ({', '.join(sorted(c.name for c in inner))}): "
            "pass the one to build as --manual_dir."
        )
    return inner[0] if inner else manual
