"""neo-keras: GPT-Neo code models in Keras 3.

`import neo_keras` loads neither TensorFlow nor Keras, so the corpus maker, the data formats,
pass@k and the sandbox start in a moment. The model classes load on first use
(`from neo_keras import GPTNeoCausalLM`), which also registers all four with Keras, so that
`.keras` files written here load with `keras.saving.load_model`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "GPTNeoBackbone": "neo_keras.models.gpt_neo",
    "GPTNeoCausalLM": "neo_keras.models.gpt_neo",
    "GPTNeoCausalLMPreprocessor": "neo_keras.models.gpt_neo",
    "GPTNeoTokenizer": "neo_keras.models.gpt_neo",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neo_keras' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
