"""GPT-Neo in Keras: backbone, causal LM, tokenizer, preprocessor, Hugging Face conversion.

The classes load on first use, so that `presets` (sizes and hub ids) is read without Keras.
"""

from neo_keras.lazy import lazy_names

__all__ = ["GPTNeoBackbone", "GPTNeoCausalLM", "GPTNeoCausalLMPreprocessor", "GPTNeoTokenizer"]
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        "GPTNeoBackbone": ".backbone",
        "GPTNeoCausalLM": ".causal_lm",
        "GPTNeoCausalLMPreprocessor": ".preprocessor",
        "GPTNeoTokenizer": ".tokenizer",
    },
)
