"""GPT-Neo in Keras: backbone, causal LM, tokenizer, preprocessor, Hugging Face conversion."""

from neo_keras.models.gpt_neo.backbone import GPTNeoBackbone
from neo_keras.models.gpt_neo.causal_lm import GPTNeoCausalLM
from neo_keras.models.gpt_neo.preprocessor import GPTNeoCausalLMPreprocessor
from neo_keras.models.gpt_neo.tokenizer import GPTNeoTokenizer

__all__ = [
    "GPTNeoBackbone",
    "GPTNeoCausalLM",
    "GPTNeoCausalLMPreprocessor",
    "GPTNeoTokenizer",
]
