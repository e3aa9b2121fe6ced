"""Make a Code Clippy format corpus from local source trees.

    python -m neo_keras.make_corpus SRC... --output DIR

Each SRC is a git checkout or a folder of repositories. The corpus is DIR/{train,validation,test}
of *.jsonl.zst shards, split by repository; build it with
`tfds build data_builders/codeclippy --manual_dir=DIR`.
"""

from __future__ import annotations

import sys

from absl import app, flags

from neo_keras.data.corpus_maker import CorpusError, make_corpus

_OUTPUT = flags.DEFINE_string("output", None, "Directory to write the corpus to.", required=True)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.05, "Share of repositories held out for validation."
)
_TEST_FRACTION = flags.DEFINE_float("test_fraction", 0.05, "Share of repositories for test.")
_MAX_FILE_BYTES = flags.DEFINE_integer("max_file_bytes", 1 << 20, "Larger files are skipped.")
_RECORDS_PER_SHARD = flags.DEFINE_integer("records_per_shard", 10_000, "Files per shard.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")


def main(argv: list[str]) -> None:
    sources = argv[1:]
    if not sources:
        raise app.UsageError("Name at least one source directory: make_corpus SRC... --output DIR")
    try:
        summary = make_corpus(
            sources,
            _OUTPUT.value,
            _VALIDATION_FRACTION.value,
            _TEST_FRACTION.value,
            _MAX_FILE_BYTES.value,
            _RECORDS_PER_SHARD.value,
            _OVERWRITE.value,
            progress=True,
        )
    except CorpusError as error:
        sys.exit(f"error: {error}")
    print(summary.describe())
    print(f"Corpus written to {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
