"""A tiny random GPT-Neo with a byte-level BPE tokenizer, shared by the evaluation tests."""

from __future__ import annotations

from tests.models.hf_fixtures import make_hf_checkpoint, train_tokenizer

MAX_POSITIONS = 64


def make_tiny_model_dir(directory: str) -> str:
    """Writes a Hugging Face GPT-Neo directory (random weights, tokenizer) and returns it."""
    make_hf_checkpoint(directory, max_position_embeddings=MAX_POSITIONS)
    train_tokenizer(directory)
    return directory
