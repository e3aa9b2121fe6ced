"""Tiny random Hugging Face GPT-Neo checkpoints and byte-level BPE tokenizers, made on the spot."""

from __future__ import annotations

import os

CODE_SAMPLES = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "for i in range(10):\n    print(i * i)  # squares\n",
    "import os\nprint(os.path.join('a', 'b'))\n",
]


def train_tokenizer(directory: str, vocab_size: int = 300):
    """Trains a byte-level BPE on code samples; saves vocab.json and merges.txt in `directory`."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        CODE_SAMPLES * 20, vocab_size=vocab_size, special_tokens=["<|endoftext|>"]
    )
    os.makedirs(directory, exist_ok=True)
    tokenizer.save_model(directory)
    return tokenizer


def make_hf_checkpoint(directory: str, seed: int = 0, **config_overrides):
    """Saves a random `GPTNeoForCausalLM` to `directory` and returns it (in eval mode)."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    config = {
        "vocab_size": 300,
        "max_position_embeddings": 64,
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 4,
        "attention_types": [[["global", "local"], 1]],
        "window_size": 4,
        # Wide weights spread the logits, so greedy decoding has no near-ties.
        "initializer_range": 0.3,
        "bos_token_id": 0,
        "eos_token_id": 0,
        **config_overrides,
    }
    torch.manual_seed(seed)
    model = GPTNeoForCausalLM(GPTNeoConfig(**config)).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model
