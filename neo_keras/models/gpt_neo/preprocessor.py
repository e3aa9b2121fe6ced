"""String-to-tensor preprocessing for `GPTNeoCausalLM`."""

from __future__ import annotations

import keras
import keras_hub

from neo_keras.models.gpt_neo.backbone import GPTNeoBackbone
from neo_keras.models.gpt_neo.preset_loader import PresetLoading
from neo_keras.models.gpt_neo.tokenizer import GPTNeoTokenizer


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoCausalLMPreprocessor(PresetLoading, keras_hub.models.CausalLMPreprocessor):
    """Tokenizes and packs strings for `GPTNeoCausalLM`.

    Called on strings it returns `(x, y, sample_weight)` for next-token training; its
    `generate_preprocess` / `generate_postprocess` serve `GPTNeoCausalLM.generate()`.

    GPT-Neo was trained on documents separated by `<|endoftext|>` and its prompts are not
    prefixed with it, so unlike GPT-2 no start token is added by default.

    Args:
        tokenizer: a `GPTNeoTokenizer`.
        sequence_length: length of the packed sequences.
        add_start_token: prepend `<|endoftext|>`.
        add_end_token: append `<|endoftext|>` (training only; never to prompts).

    Example:

    ```python
    from neo_keras import GPTNeoCausalLMPreprocessor, GPTNeoTokenizer

    vocab = {"<|endoftext|>": 0, "d": 1, "e": 2, "f": 3, "de": 4, "def": 5}
    tokenizer = GPTNeoTokenizer(vocabulary=vocab, merges=["d e", "de f"])
    preprocessor = GPTNeoCausalLMPreprocessor(tokenizer, sequence_length=4)
    x, y, sample_weight = preprocessor(["def def"])
    ```
    """

    backbone_cls = GPTNeoBackbone
    tokenizer_cls = GPTNeoTokenizer

    def __init__(
        self,
        tokenizer: GPTNeoTokenizer,
        sequence_length: int = 2048,
        add_start_token: bool = False,
        add_end_token: bool = True,
        **kwargs,
    ):
        super().__init__(
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            add_start_token=add_start_token,
            add_end_token=add_end_token,
            **kwargs,
        )
