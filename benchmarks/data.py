"""Data throughput: the codeclippy TFDS builder and tf.data input beside the `datasets` recipe.

One run, one corpus: a Code Clippy format corpus made from the local Python standard library
(or --source), and one byte-level BPE trained on it. Measured:

* build: source text MB/s of `codeclippy` (TFDS, one process) beside the original recipe,
  Hugging Face `datasets` `load_dataset("json")` + `map(tokenize)` + `map(group_texts)`;
* read: tokens/s of `make_training_dataset` (shuffled, batched, `(x, y, sample_weight)`) beside
  the recipe's loader (a random permutation, then `dataset[indices]` into numpy), once running,
  and the time to the first batch (tf.data fills its shuffle buffer first).

    python benchmarks/data.py
    python benchmarks/data.py --source ~/src --sequence_length 2048

Needs the `bench` extra (`pip install -e ".[bench]"`) for `datasets`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
import transformers  # noqa: E402

from neo_keras.data import pipeline  # noqa: E402
from neo_keras.data.corpus_format import list_shards  # noqa: E402
from neo_keras.data.corpus_maker import make_corpus  # noqa: E402
from neo_keras.data.tokenizer_training import train_tokenizer_on_corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        default=sysconfig.get_paths()["stdlib"],
        help="source tree(s) to make the corpus from (default: the stdlib)",
    )
    parser.add_argument("--sequence_length", type=int, default=1024)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--read_batches", type=int, default=300, help="batches timed per reader")
    return parser.parse_args()


def codeclippy_builder_class():
    sys.path.insert(0, str(REPO_ROOT / "data_builders"))
    from codeclippy.codeclippy_dataset_builder import Builder, CodeClippyConfig

    return Builder, CodeClippyConfig


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def build_with_tfds(corpus: Path, tokenizer: Path, sequence_length: int, data_dir: Path):
    builder_cls, config_cls = codeclippy_builder_class()
    config = config_cls(name="bench", tokenizer=str(tokenizer), sequence_length=sequence_length)
    builder = builder_cls(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(corpus))
    )
    return builder


def build_with_datasets_recipe(
    corpus: Path, tokenizer: Path, sequence_length: int, cache_dir: Path
):
    """The original recipe: tokenize every file, concatenate, cut into blocks, drop the rest."""
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer / "tokenizer.json")
    )
    files = {split: [str(p) for p in list_shards(corpus / split)] for split in SPLITS}
    raw = datasets.load_dataset(
        "json", data_files={k: v for k, v in files.items() if v}, cache_dir=str(cache_dir)
    )

    def tokenize(examples):
        return hf_tokenizer(examples["text"])

    def group_texts(examples):
        concatenated = {k: list(itertools.chain(*examples[k])) for k in examples}
        length = len(concatenated["input_ids"]) // sequence_length * sequence_length
        blocks = {
            k: [t[i : i + sequence_length] for i in range(0, length, sequence_length)]
            for k, t in concatenated.items()
        }
        blocks["labels"] = blocks["input_ids"].copy()
        return blocks

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names)
    return tokenized.map(group_texts, batched=True)


def pipeline_batches(builder, batch_size: int):
    for x, _, _ in pipeline.make_training_dataset(builder, batch_size):
        yield x["token_ids"].numpy()


def recipe_loader_batches(dataset, batch_size: int):
    """The recipe's loader: shuffle indices each epoch, then gather rows into numpy arrays."""
    rng = np.random.default_rng(0)
    dataset = dataset.with_format("numpy")
    while True:
        order = rng.permutation(len(dataset))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield np.asarray(dataset[order[start : start + batch_size]]["input_ids"])


def read_rate(batches, count: int) -> tuple[float, float]:
    """(seconds to the first batch, tokens/s over the next `count` batches)."""
    _, first_seconds = timed(lambda: next(batches))
    tokens, seconds = timed(lambda: sum(batch.size for batch in itertools.islice(batches, count)))
    return first_seconds, tokens / seconds


def source_megabytes(corpus: Path) -> float:
    from collections import Counter

    from neo_keras.data.corpus_format import iter_records

    return (
        sum(
            len(record.text.encode("utf-8"))
            for split in SPLITS
            for shard in list_shards(corpus / split)
            for record in iter_records(shard, Counter())
        )
        / 1e6
    )


def main() -> None:
    args = parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        corpus = scratch / "corpus"
        make_corpus([args.source], corpus)
        megabytes = source_megabytes(corpus)
        tokenizer = train_tokenizer_on_corpus(corpus, scratch / "tokenizer", args.vocab_size)
        builder, tfds_seconds = timed(
            lambda: build_with_tfds(corpus, tokenizer, args.sequence_length, scratch / "tfds")
        )
        grouped, recipe_seconds = timed(
            lambda: build_with_datasets_recipe(
                corpus, tokenizer, args.sequence_length, scratch / "hf_cache"
            )
        )
        ours = read_rate(pipeline_batches(builder, args.batch_size), args.read_batches)
        recipe = read_rate(
            recipe_loader_batches(grouped["train"], args.batch_size), args.read_batches
        )
    build_rates = (megabytes / tfds_seconds, megabytes / recipe_seconds)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"corpus {megabytes:.1f} MB of source from {args.source}; "
        f"sequence_length {args.sequence_length}, vocab {args.vocab_size}"
    )
    print(f"{'':28}{'neo-keras':>14}{'datasets recipe':>18}{'ratio':>9}")
    print(
        f"{'build (source MB/s)':28}{build_rates[0]:>14.2f}{build_rates[1]:>18.2f}"
        f"{build_rates[0] / build_rates[1]:>8.2f}x"
    )
    print(f"{'read (tokens/s)':28}{ours[1]:>14,.0f}{recipe[1]:>18,.0f}{ours[1] / recipe[1]:>8.2f}x")
    print(f"{'first batch (s)':28}{ours[0]:>14.2f}{recipe[0]:>18.2f}{ours[0] / recipe[0]:>8.2f}x")


if __name__ == "__main__":
    main()
