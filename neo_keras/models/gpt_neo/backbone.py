"""The GPT-Neo backbone: embeddings, transformer blocks, final LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import keras_hub
from keras import ops

from neo_keras.models.gpt_neo.attention import alternating_attention_types, expand_attention_types
from neo_keras.models.gpt_neo.decoder import GPTNeoDecoder
from neo_keras.models.gpt_neo.preset_loader import PresetLoading


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoBackbone(PresetLoading, keras_hub.models.Backbone):
    """GPT-Neo (EleutherAI): learned positions, pre-LN blocks, global and local attention.

    Maps `{"token_ids": int[B, T], "padding_mask": bool[B, T]}` to the final hidden states
    `[B, T, hidden_dim]`. Numerically equivalent to Hugging Face `GPTNeoModel`.

    Args:
        vocabulary_size: tokens in the vocabulary.
        num_layers: transformer blocks.
        num_heads: attention heads per block.
        hidden_dim: model width.
        intermediate_dim: MLP width; `4 * hidden_dim` when None.
        attention_types: one of "global"/"local" per layer, or the Hugging Face
            `[[["global", "local"], repeats]]` form; alternating when None.
        window_size: positions a local layer sees, the current one included.
        max_sequence_length: number of learned position embeddings.
        dropout: embedding and residual dropout rate.
        attention_dropout: attention-probability dropout rate.
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: stddev of the normal weight initializer.
        dtype: dtype or `keras.DTypePolicy` (e.g. "mixed_bfloat16").

    Example:

    ```python
    import numpy as np
    from neo_keras import GPTNeoBackbone

    backbone = GPTNeoBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        window_size=4, max_sequence_length=32,
    )
    hidden = backbone({
        "token_ids": np.ones((1, 8), "int32"),
        "padding_mask": np.ones((1, 8), "int32"),
    })  # [1, 8, 16]
    ```
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int | None = None,
        attention_types: Sequence | None = None,
        window_size: int = 256,
        max_sequence_length: int = 2048,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        dtype=None,
        **kwargs,
    ):
        intermediate_dim = intermediate_dim or 4 * hidden_dim
        if attention_types is None:
            attention_types = alternating_attention_types(num_layers)
        attention_types = expand_attention_types(attention_types, num_layers)
        initializer = keras.initializers.RandomNormal(stddev=initializer_range)

        # === Layers ===
        self.token_embedding = keras.layers.ReversibleEmbedding(
            input_dim=vocabulary_size,
            output_dim=hidden_dim,
            embeddings_initializer=initializer,
            dtype=dtype,
            name="token_embedding",
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            sequence_length=max_sequence_length,
            initializer=initializer,
            dtype=dtype,
            name="position_embedding",
        )
        self.embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embeddings_dropout"
        )
        self.transformer_layers = [
            GPTNeoDecoder(
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                attention_type=attention_type,
                window_size=window_size,
                dropout=dropout,
                attention_dropout=attention_dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=initializer,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i, attention_type in enumerate(attention_types)
        ]
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="layer_norm"
        )

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        x = self.embed(token_ids)
        for layer in self.transformer_layers:
            # Positional, so that rematerialized calls (keras.RematScope) get no keywords.
            x = layer(x, padding_mask)
        sequence_output = self.layer_norm(x)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask},
            outputs=sequence_output,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.attention_types = attention_types
        self.window_size = window_size
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def embed(self, token_ids, start_index=0):
        """Token plus position embeddings of `token_ids` `[B, T]`, positions counted from
        `start_index`: one for all rows, or `[B]`, one a row."""
        tokens = self.token_embedding(token_ids)
        if len(ops.shape(start_index)) == 1:
            rows = start_index[:, None] + ops.arange(ops.shape(token_ids)[1])[None, :]
            positions = self.position_embedding(tokens, positions=rows)
        else:
            positions = self.position_embedding(tokens, start_index=start_index)
        return self.embeddings_dropout(ops.add(tokens, positions))

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "attention_types": self.attention_types,
                "window_size": self.window_size,
                "max_sequence_length": self.max_sequence_length,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "initializer_range": self.initializer_range,
            }
        )
        return config
