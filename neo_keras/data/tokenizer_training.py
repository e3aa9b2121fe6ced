"""Training a byte-level BPE tokenizer on a corpus, saved where `load_tokenizer` reads it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from neo_keras.data.corpus_format import iter_corpus_texts
from neo_keras.data.tokenizer import END_OF_TEXT


def train_byte_level_bpe(
    texts: Iterable[str], output_dir: str | os.PathLike, vocab_size: int = 8192
) -> Path:
    """Trains a GPT-2 style byte-level BPE on `texts` and writes it to `output_dir`.

    Writes `tokenizer.json` (what `load_tokenizer` reads) and the `vocab.json` / `merges.txt`
    pair that Keras BPE tokenizers read. `<|endoftext|>` is the first added token. Every string
    round-trips exactly through encode and decode, since all 256 bytes are in the alphabet.

    Returns:
        `output_dir`, which `load_tokenizer` accepts as the tokenizer spec.
    """
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    _write_atomically(output / "tokenizer.json", tokenizer.to_str())
    with tempfile.TemporaryDirectory(dir=output) as staging:
        for written in tokenizer.model.save(staging):
            os.replace(written, output / Path(written).name)
    return output


def train_tokenizer_on_corpus(
    corpus_dir: str | os.PathLike, output_dir: str | os.PathLike, vocab_size: int = 8192
) -> Path:
    """Trains a byte-level BPE on the train split of a Code Clippy format corpus directory."""
    return train_byte_level_bpe(
        iter_corpus_texts(Path(corpus_dir) / "train"), output_dir, vocab_size
    )


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
