"""neo-keras: GPT-Neo code models in Keras 3.

`import neo_keras` loads neither TensorFlow nor Keras, so the corpus maker, the data formats,
pass@k and the sandbox start in a moment. The model classes load on first use
(`from neo_keras import GPTNeoCausalLM`), which also registers all four with Keras, so that
`.keras` files written here load with `keras.saving.load_model`.
"""

from neo_keras.lazy import lazy_names

__version__ = "0.1.0"

_CLASSES = ("GPTNeoBackbone", "GPTNeoCausalLM", "GPTNeoCausalLMPreprocessor", "GPTNeoTokenizer")
__all__ = list(_CLASSES)
__getattr__, __dir__ = lazy_names(__name__, dict.fromkeys(_CLASSES, "neo_keras.models.gpt_neo"))
