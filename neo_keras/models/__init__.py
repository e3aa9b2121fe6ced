"""Model definitions. Importing this package registers the GPT-Neo classes with Keras."""

from neo_keras.models.gpt_neo import (
    GPTNeoBackbone,
    GPTNeoCausalLM,
    GPTNeoCausalLMPreprocessor,
    GPTNeoTokenizer,
)

__all__ = [
    "GPTNeoBackbone",
    "GPTNeoCausalLM",
    "GPTNeoCausalLMPreprocessor",
    "GPTNeoTokenizer",
]
