"""GPT-Neo's byte-level BPE tokenizer (the GPT-2 vocabulary, `<|endoftext|>` as end and pad)."""

from __future__ import annotations

import keras
import keras_hub
from tokenizers import pre_tokenizers

from neo_keras.data.tokenizer import END_OF_TEXT
from neo_keras.models.gpt_neo.backbone import GPTNeoBackbone
from neo_keras.models.gpt_neo.preset_loader import PresetLoading


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoTokenizer(PresetLoading, keras_hub.tokenizers.BytePairTokenizer):
    """Byte-level BPE tokenizer for GPT-Neo.

    `<|endoftext|>` is the start, end and padding token, as in the released checkpoints.

    Args:
        vocabulary: dict of token to id, or the path of a `vocab.json`.
        merges: list of merge rules, or the path of a `merges.txt`.

    Example:

    ```python
    from neo_keras import GPTNeoTokenizer

    vocab = {"<|endoftext|>": 0, "d": 1, "e": 2, "f": 3, "de": 4, "def": 5}
    tokenizer = GPTNeoTokenizer(vocabulary=vocab, merges=["d e", "de f"])
    tokenizer("def")  # [5]
    ```
    """

    backbone_cls = GPTNeoBackbone

    def __init__(self, vocabulary=None, merges=None, **kwargs):
        self._add_special_token(END_OF_TEXT, "end_token")
        self._add_special_token(END_OF_TEXT, "start_token")
        self._add_special_token(END_OF_TEXT, "pad_token")
        super().__init__(vocabulary=vocabulary, merges=merges, **kwargs)

    def _set_vocabulary_and_merges_tokenizers(self, vocabulary, merges):
        super()._set_vocabulary_and_merges_tokenizers(vocabulary, merges)
        # The base class splits words with Llama 3's pattern, which groups runs of spaces
        # differently from GPT-2 and so changes how code indentation is tokenized. GPT-Neo
        # was trained with GPT-2's own byte-level pre-tokenizer.
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=self.add_prefix_space, use_regex=True
        )
        # A literal "<|endoftext|>" in a prompt is text, as in the training data; the
        # preprocessor places the real end-of-text by id.
        self._tokenizer.encode_special_tokens = True
