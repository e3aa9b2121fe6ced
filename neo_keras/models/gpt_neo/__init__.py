"""GPT-Neo in Keras: backbone, causal LM, tokenizer, preprocessor, Hugging Face conversion.

The classes load on first use, so that `presets` (sizes and hub ids) is read without Keras.
"""

from __future__ import annotations

import importlib

# Public name -> the module that defines it.
_CLASSES = {
    "GPTNeoBackbone": "neo_keras.models.gpt_neo.backbone",
    "GPTNeoCausalLM": "neo_keras.models.gpt_neo.causal_lm",
    "GPTNeoCausalLMPreprocessor": "neo_keras.models.gpt_neo.preprocessor",
    "GPTNeoTokenizer": "neo_keras.models.gpt_neo.tokenizer",
}

__all__ = list(_CLASSES)


def __getattr__(name: str):
    if name not in _CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_CLASSES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_CLASSES])
