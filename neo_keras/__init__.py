"""neo-keras: GPT-Neo code models in Keras 3.

Importing the package registers the model classes with Keras, so `.keras` files and
presets written here load with `keras.saving.load_model` after `import neo_keras`.
"""

from neo_keras.models.gpt_neo import (
    GPTNeoBackbone,
    GPTNeoCausalLM,
    GPTNeoCausalLMPreprocessor,
    GPTNeoTokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "GPTNeoBackbone",
    "GPTNeoCausalLM",
    "GPTNeoCausalLMPreprocessor",
    "GPTNeoTokenizer",
]
