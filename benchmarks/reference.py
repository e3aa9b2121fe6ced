"""The peer every model benchmark measures against: `transformers` GPT-Neo with random weights."""

from __future__ import annotations

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from neo_keras.models.gpt_neo import presets


def random_reference_model(size: str, seed: int = 0) -> GPTNeoForCausalLM:
    """`GPTNeoForCausalLM` with the shape of the named size and seeded random weights."""
    config = presets.backbone_config(size)
    torch.manual_seed(seed)
    return GPTNeoForCausalLM(
        GPTNeoConfig(
            vocab_size=config["vocabulary_size"],
            max_position_embeddings=config["max_sequence_length"],
            hidden_size=config["hidden_dim"],
            num_layers=config["num_layers"],
            num_heads=config["num_heads"],
            attention_types=[[["global", "local"], config["num_layers"] // 2]],
            window_size=config["window_size"],
        )
    )
