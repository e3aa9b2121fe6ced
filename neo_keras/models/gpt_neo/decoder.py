"""One GPT-Neo transformer block: pre-LayerNorm attention and MLP, each with a residual."""

from __future__ import annotations

import keras

from neo_keras.models.gpt_neo.attention import GPTNeoAttention


def gelu_new(x):
    """GELU with the tanh approximation, the activation GPT-Neo checkpoints were trained with."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoDecoder(keras.layers.Layer):
    """A pre-LayerNorm transformer block.

    `x + attention(ln_1(x))`, then `x + mlp(ln_2(x))` with a `4 * hidden_dim` (or
    `intermediate_dim`) GELU MLP.

    Args:
        num_heads: attention heads.
        intermediate_dim: width of the MLP's hidden layer.
        attention_type: `"global"` or `"local"`.
        window_size: positions a local layer sees, the current one included.
        dropout: residual dropout rate.
        attention_dropout: dropout rate on the attention probabilities.
        layer_norm_epsilon: LayerNorm epsilon (GPT-Neo uses 1e-5).
        kernel_initializer: initializer of every kernel.
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_dim: int,
        attention_type: str = "global",
        window_size: int = 256,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-5,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.attention_type = attention_type
        self.window_size = window_size
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        policy = self.dtype_policy

        def layer_norm(name):
            layer = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=policy, name=name
            )
            layer.build(input_shape)
            return layer

        def dense(units, name, activation=None):
            return keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=self.kernel_initializer,
                dtype=policy,
                name=name,
            )

        self.attention_layer_norm = layer_norm("attention_layer_norm")
        self.attention = GPTNeoAttention(
            num_heads=self.num_heads,
            attention_type=self.attention_type,
            window_size=self.window_size,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=policy,
            name="attention",
        )
        self.attention.build(input_shape)
        self.mlp_layer_norm = layer_norm("mlp_layer_norm")
        self.mlp_intermediate = dense(self.intermediate_dim, "mlp_intermediate", gelu_new)
        self.mlp_intermediate.build(input_shape)
        self.mlp_output = dense(hidden_dim, "mlp_output")
        self.mlp_output.build((*input_shape[:-1], self.intermediate_dim))
        self.residual_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.built = True

    def call(
        self,
        hidden_states,
        padding_mask=None,
        cache=None,
        cache_update_index=None,
    ):
        """Returns the new hidden states, and the updated cache when `cache` is given.

        Takes no `training` argument: the dropout sublayers read it from the call context,
        which keeps the call free of keyword arguments for rematerialization.
        """
        attended = self.attention(
            self.attention_layer_norm(hidden_states),
            padding_mask=padding_mask,
            cache=cache,
            cache_update_index=cache_update_index,
        )
        if cache is not None:
            attended, cache = attended
        hidden_states = hidden_states + self.residual_dropout(attended)
        mlp = self.mlp_output(self.mlp_intermediate(self.mlp_layer_norm(hidden_states)))
        hidden_states = hidden_states + self.residual_dropout(mlp)
        return hidden_states if cache is None else (hidden_states, cache)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "attention_type": self.attention_type,
                "window_size": self.window_size,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
