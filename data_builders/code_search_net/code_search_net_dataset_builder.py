"""CodeSearchNet Challenge functions packed into fixed-length blocks of token ids."""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from neo_keras.data.builder_support import (
    ManualDataError,
    ReportingBuilder,
    TokenConfig,
    manual_dir_or_none,
    token_features,
)
from neo_keras.data.code_corpus import (
    DocumentSelection,
    PackingSpec,
    ShardSource,
    iter_split_examples,
    shard_sources,
)
from neo_keras.data.code_search_net import (
    LANGUAGES,
    SPLIT_FOLDERS,
    TEXT_FIELDS,
    language_shards,
    release_url,
)


@dataclasses.dataclass(eq=False)
class CodeSearchNetConfig(TokenConfig):
    """Which languages, and how they are tokenized.

    Attributes:
        languages: any of go, java, javascript, php, python, ruby.
    """

    languages: tuple[str, ...] = ("python",)

    def __post_init__(self):
        super().__post_init__()
        self.languages = tuple(self.languages)  # a JSON config gives a list
        unknown = set(self.languages) - set(LANGUAGES)
        if not self.languages or unknown:
            raise ValueError(
                f"languages must be a non-empty subset of {LANGUAGES}, got {self.languages}."
            )


class Builder(ReportingBuilder):
    """CodeSearchNet functions as `sequence_length` blocks of token ids, as codeclippy packs."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Token blocks with attention and loss masks.",
        "1.1.0": "Reads the release's own `original_string` field (and the Hugging Face "
        "export's `whole_func_string`); release zips in --manual_dir.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Optional: without network access, put the release zips (<language>.zip) in --manual_dir, as
they are or extracted there (<language>/final/jsonl/{train,valid,test}/*.jsonl.gz). Languages
found in neither form are downloaded."""
    BUILDER_CONFIGS = [
        CodeSearchNetConfig(name="python", languages=("python",), description="Python functions."),
        CodeSearchNetConfig(
            name="all", languages=LANGUAGES, description="Functions in all six languages."
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.reporting_info(
            features=token_features(self.builder_config.sequence_length),
            homepage="https://github.com/github/CodeSearchNet",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        self.record_tokenizer(config.tokenizer, config.sequence_length)
        shards = {split: [] for split in SPLIT_FOLDERS.values()}
        for root, found in self._language_sources(dl_manager):
            for split, paths in found.items():
                shards[split].extend(shard_sources(root, paths))
        if not shards["train"]:
            raise ManualDataError(
                f"No CodeSearchNet training shards for {config.languages}: expected "
                "<language>/final/jsonl/train/*.jsonl.gz in --manual_dir or in the downloads."
            )
        return {
            split: self._generate_examples(split=split, shards=split_shards)
            for split, split_shards in shards.items()
            if split_shards
        }

    def _generate_examples(self, split: str, shards: list[ShardSource]):
        spec = PackingSpec(
            self.builder_config.tokenizer, self.builder_config.sequence_length, TEXT_FIELDS
        )
        if self.uses_beam:
            from neo_keras.data import beam_generation

            return beam_generation.PackedSplit(shards, spec, split)
        examples = iter_split_examples(shards, spec, self.split_counts(split), DocumentSelection())
        return self.require_examples(split, examples, f"the {split} shards")

    def _language_sources(self, dl_manager: tfds.download.DownloadManager):
        """(root, shards per split) for each language: from the manual dir, else downloaded."""
        missing = []
        for language in self.builder_config.languages:
            root = _manual_root(dl_manager, language)
            if root is None:
                missing.append(language)
            else:
                yield root, language_shards(root, language)
        if missing:
            roots = dl_manager.download_and_extract(
                {language: release_url(language) for language in missing}
            )
            for language in missing:
                yield roots[language], language_shards(roots[language], language)


def _manual_root(dl_manager: tfds.download.DownloadManager, language: str) -> epath.Path | None:
    """Where `language` is in the manual dir: extracted there, or its release zip extracted."""
    manual = manual_dir_or_none(dl_manager)
    if manual is None:
        return None
    if any(language_shards(manual, language).values()):
        return manual
    release_zip = manual / f"{language}.zip"
    return epath.Path(dl_manager.extract(release_zip)) if release_zip.exists() else None
