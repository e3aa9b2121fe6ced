"""GPT-Neo with its language-model head, KV-cached generation and checkpoint I/O."""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from neo_keras import file_io
from neo_keras.generation import decode, token_choice
from neo_keras.models.gpt_neo import columns, hf_convert, kv_cache, presets
from neo_keras.models.gpt_neo.backbone import GPTNeoBackbone
from neo_keras.models.gpt_neo.preprocessor import GPTNeoCausalLMPreprocessor
from neo_keras.models.gpt_neo.preset_loader import PresetLoading


@keras.saving.register_keras_serializable(package="neo_keras")
class GPTNeoCausalLM(PresetLoading, keras_hub.models.CausalLM):
    """GPT-Neo for causal language modelling: train with `fit()`, sample with `generate()`.

    Calling the model on `{"token_ids", "padding_mask"}` returns float32 logits `[B, T, V]`
    from the LM head, which is tied to the token embedding. The sampler is chosen with
    `compile(sampler=...)` (any `keras_hub.samplers` sampler: greedy, top-k, top-p, ...).

    `from_preset` reads a Hugging Face GPT-Neo directory (`config.json` plus
    `model.safetensors` or `pytorch_model.bin`), a hub id (`hf://EleutherAI/gpt-neo-125M`),
    a named size (`gpt_neo_125m`, `gpt_neo_1.3b`, `gpt_neo_2.7b`) or a Keras preset written by
    `save_to_preset`. `export_to_transformers` writes a directory that
    `transformers.GPTNeoForCausalLM.from_pretrained` reads.

    Args:
        backbone: a `GPTNeoBackbone`.
        preprocessor: a `GPTNeoCausalLMPreprocessor`, or None to feed token ids directly.

    Example:

    ```python
    import numpy as np
    from neo_keras import GPTNeoBackbone, GPTNeoCausalLM

    backbone = GPTNeoBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
        window_size=4, max_sequence_length=32,
    )
    model = GPTNeoCausalLM(backbone)
    logits = model({
        "token_ids": np.ones((1, 8), "int32"),
        "padding_mask": np.ones((1, 8), "int32"),
    })  # [1, 8, 100]
    model.compile(sampler="greedy")
    out = model.generate(
        {"token_ids": np.array([[5, 6, 0, 0]]), "padding_mask": np.array([[1, 1, 0, 0]])},
        stop_token_ids=None,
    )
    ```
    """

    backbone_cls = GPTNeoBackbone
    preprocessor_cls = GPTNeoCausalLMPreprocessor

    def __init__(self, backbone: GPTNeoBackbone, preprocessor=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)
        # The head runs in the compute dtype; the logits leave in float32 for the loss.
        logits = ops.cast(backbone.token_embedding(hidden_states, reverse=True), "float32")
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

    def save_to_preset(self, preset_dir: str, max_shard_size: int = 10) -> None:
        """Writes a Keras preset that `from_preset` reads; `preset_dir` may be remote (gs://)."""
        if not file_io.is_remote(preset_dir):
            super().save_to_preset(preset_dir, max_shard_size=max_shard_size)
            return
        with file_io.staged_tree(preset_dir, last_file=presets.PRESET_CONFIG_FILE) as staged:
            super().save_to_preset(staged, max_shard_size=max_shard_size)

    def export_to_transformers(self, path: str) -> None:
        """Writes a Hugging Face GPT-Neo directory (config, safetensors, tokenizer) at `path`."""
        hf_convert.save_hf_checkpoint(self, path)

    def score(
        self,
        token_ids,
        padding_mask=None,
        scoring_mode: str = "logits",
        layer_intercept_fn=None,
        target_ids=None,
    ):
        """Per-token scores of `token_ids`: logits, or the cross-entropy against `target_ids`.

        The same contract as keras-hub's `GPT2CausalLM.score`.

        Args:
            token_ids: int `[B, T]`, typically a prompt with its generated continuation.
            padding_mask: `[B, T]`, true on real tokens; all true when None.
            scoring_mode: `"logits"` (`[B, T, V]`) or `"loss"` (`[B, T]`, the cross-entropy
                of position t's prediction against `target_ids[:, t]`).
            layer_intercept_fn: `fn(hidden_states, index)` returning hidden states of the same
                shape; called on the embeddings with index -1, then after each block with
                its 0-based index. For interpretability work (gradients to activations).
            target_ids: int `[B, T]`, required for `"loss"`; usually `token_ids` shifted
                left by one.

        Example:

        ```python
        import keras
        import numpy as np

        from neo_keras import GPTNeoBackbone, GPTNeoCausalLM

        causal_lm = GPTNeoCausalLM(GPTNeoBackbone(
            vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=16,
            window_size=4, max_sequence_length=32,
        ))
        token_ids = np.arange(1, 9, dtype="int32")[None]
        targets = keras.ops.roll(token_ids, shift=-1, axis=1)
        per_token_loss = causal_lm.score(token_ids, scoring_mode="loss", target_ids=targets)
        ```
        """
        if scoring_mode not in ("logits", "loss"):
            raise ValueError(f"scoring_mode must be 'logits' or 'loss', got {scoring_mode!r}.")
        if scoring_mode == "loss" and target_ids is None:
            raise ValueError(
                "scoring_mode='loss' needs target_ids: the token each position predicts."
            )
        if padding_mask is None:
            padding_mask = ops.ones(ops.shape(token_ids)[:2], dtype="int32")
        if layer_intercept_fn is None:

            def layer_intercept_fn(hidden_states, index):
                return hidden_states

        backbone = self.backbone
        tokens = backbone.token_embedding(token_ids)
        x = layer_intercept_fn(ops.add(tokens, backbone.position_embedding(tokens)), -1)
        x = backbone.embeddings_dropout(x)
        for index, layer in enumerate(backbone.transformer_layers):
            x = layer_intercept_fn(layer(x, padding_mask), index)
        hidden_states = backbone.layer_norm(x)
        logits = ops.cast(backbone.token_embedding(hidden_states, reverse=True), "float32")
        if scoring_mode == "logits":
            return logits
        return keras.losses.sparse_categorical_crossentropy(target_ids, logits, from_logits=True)

    def call_with_cache(self, token_ids, cache, cache_update_index, kernels=None):
        """Forward pass over `token_ids` that reads and extends the key/value cache.

        Args:
            token_ids: int `[B, T]`, the tokens at positions
                `cache_update_index .. cache_update_index + T - 1`.
            cache: the key/value cache (`empty_cache`; `cache_rows` or `share_prompts`, each
                row at a position of its own, for one position a step).
            cache_update_index: position of the first token of `token_ids`.
            kernels: what `decode_kernels()` made, once for many calls; when None, the
                weights as the layers hold them.

        Returns:
            `(logits, hidden_states, cache)`.
        """
        start = cache_update_index
        if isinstance(cache[0], dict):  # each row at its own position
            start = kv_cache.row_positions(cache[0], cache_update_index)
        x = self.backbone.embed(token_ids, start_index=start)
        if kernels is not None and "layers" in kernels and token_ids.shape[1] == 1:
            return self._step_in_columns(x, cache, cache_update_index, kernels["layers"])
        updated = []
        for layer, layer_cache in zip(self.backbone.transformer_layers, cache, strict=True):
            x, layer_cache = layer(x, cache=layer_cache, cache_update_index=cache_update_index)
            updated.append(layer_cache)
        hidden_states = self.backbone.layer_norm(x)
        if kernels is None:
            logits = self.backbone.token_embedding(hidden_states, reverse=True)
        else:
            logits = ops.matmul(hidden_states, kernels["head"])
        return ops.cast(logits, "float32"), hidden_states, tuple(updated)

    def _step_in_columns(self, x, cache, cache_update_index, layer_kernels):
        """`call_with_cache` of one position a row, with the rows as columns (`columns`)."""
        backbone, x_columns, updated = self.backbone, ops.transpose(x[:, 0, :]), []
        for layer, layer_cache, kernels in zip(
            backbone.transformer_layers, cache, layer_kernels, strict=True
        ):
            x_columns, layer_cache = columns.decoder_step(
                layer, x_columns, kernels, layer_cache, cache_update_index
            )
            updated.append(layer_cache)
        hidden_columns = columns.layer_norm(backbone.layer_norm, x_columns)
        logits = columns.logits(backbone.token_embedding, hidden_columns)
        hidden_states = ops.transpose(hidden_columns)[:, None, :]
        return ops.cast(logits, "float32")[:, None, :], hidden_states, tuple(updated)

    def decode_kernels(self, rows: int | None = None) -> dict:
        """The weights a decoding loop of `rows` rows multiplies by, laid out for its products
        and made once for all its steps (`call_with_cache`), held for as long as it runs.

        `"layers"`, where the rows suit it and the host has the memory (`columns.suits`: on a
        CPU): every decoder layer's kernels transposed, for a step with the rows as columns
        (`columns`), whose LM head reads the tied embedding as it is. Its products run 1.3-2x
        faster, depending on the CPU. Otherwise `"head"`: the LM head as a `[hidden_dim,
        vocabulary_size]` copy of the token embedding it is tied to, for the row form's
        product, which reads the embedding transposed: with the copy laid out as its kernel,
        12.7 against 15.1 ms at 20 rows and the 125M shape on an AVX-512 CPU.

        Held: 340 MB for the layers or 154 MB for the head at the 125M shape, 4.8 GB or 412
        MB at the 1.3B shape.
        """
        layers = self.backbone.transformer_layers
        if columns.suits(rows, columns.kernels_size(layers)):
            return {"layers": tuple(columns.kernels(layer) for layer in layers)}
        embedding = self.backbone.token_embedding
        return {"head": ops.cast(ops.transpose(embedding.embeddings), embedding.compute_dtype)}

    def empty_cache(self, batch_size, max_length: int) -> tuple:
        """A zero key/value cache: per layer, `(keys, values)`, in blocks of 64 positions
        covering `max_length` (`kv_cache.empty`: a decoding step reads only the blocks it
        sees, in the layout its attention reads without a copy).

        Kept per layer and apart, so that a decoding step writes its position in place. One
        stacked `[B, layers, 2, ...]` tensor is rebuilt whole at every step: on a CPU that
        doubled the step's time (248 against 123 ms at the 125M shape, 20 rows x 192 positions).
        """
        backbone = self.backbone
        dims = (backbone.num_heads, max_length, backbone.head_dim, self.compute_dtype)
        return tuple(kv_cache.empty(batch_size, *dims) for _ in range(backbone.num_layers))

    def cache_rows(self, cache, rows, starts) -> tuple:
        """A cache of rows `rows` (int `[n]`, repeats allowed) of `cache`, a prompt each: each
        sample of a prompt starts from its prompt's cache, row `i` at a position of its own,
        its prompt moved to start at step index `starts[i]`
        (`kv_cache.rows_at_own_positions`). With every prompt ending at the same index, rows
        of different prompt lengths all decode from the first step."""
        return tuple(
            kv_cache.rows_at_own_positions(layer_cache, rows, starts) for layer_cache in cache
        )

    def share_prompts(
        self, prompt_cache, sources, prompt_lengths, new_positions: int, prompt_ends=None
    ) -> tuple:
        """A cache for rows that continue shared prompts (`kv_cache.shared_prompts`): each
        prompt's keys and values once, from `prompt_cache` (one row a prompt, e.g.
        `prefill`), and `new_positions` of each row's own after its prompt.

        Rows `i` continue prompt `sources[i]`, of `prompt_lengths[i]` tokens. Decoding steps
        (`call_with_cache` one position at a time) then read each prompt once for all its
        rows: with many samples of each prompt, far less than a cache of its own per row.
        Row `i`'s first own position comes at step index `prompt_ends[i]` (its prompt length
        when None): with one index for all rows, every row decodes from the first step
        whatever its prompt's length.
        """
        return tuple(
            kv_cache.shared_prompts(
                layer_cache, sources, prompt_lengths, new_positions, prompt_ends
            )
            for layer_cache in prompt_cache
        )

    def prefill(self, token_ids) -> tuple:
        """The key/value cache of `token_ids` `[B, max_length]`, filled by one pass over them."""
        cache = self.empty_cache(ops.shape(token_ids)[0], ops.shape(token_ids)[1])
        return self.call_with_cache(token_ids, cache, 0)[2]

    def generate_step(self, inputs, stop_token_ids=None):
        """One compiled generation call for a batch of right-padded prompts.

        Each row keeps its prompt tokens and decodes from its first padded position on
        (`neo_keras.generation.decode`), choosing tokens as the compiled sampler says
        (`sampling_settings`); rows stop independently at any of `stop_token_ids`. Positions
        after a row's stop token are marked False in the returned `padding_mask`.
        """
        token_ids, prompt_mask = inputs["token_ids"], ops.cast(inputs["padding_mask"], "bool")
        stop_token_ids = tuple(stop_token_ids or ())
        settings = sampling_settings(self.sampler)
        prompt_lengths = decode.prompt_lengths_of(prompt_mask)
        rows, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        keys = token_choice.seeded_row_keys(settings.seed, rows)
        cache = self.prefill(token_ids)
        row_ends = ops.full([rows], length, "int32")
        token_ids, _, _, _ = decode.decode_steps(
            self,
            token_ids,
            cache,
            ops.min(prompt_lengths),
            prompt_mask,
            row_ends,
            ops.zeros([rows], "bool"),
            token_choice.row_chooser(settings, keys, prompt_lengths),
            stop_token_ids=stop_token_ids,
            pad_token_id=self.preprocessor.tokenizer.pad_token_id if self.preprocessor else 0,
        )
        kept = decode.kept_positions(token_ids, prompt_mask, row_ends, stop_token_ids)
        return {"token_ids": token_ids, "padding_mask": kept}


def sampling_settings(sampler: keras_hub.samplers.Sampler) -> token_choice.SamplingSettings:
    """The token choice of a keras-hub sampler (greedy, random, top-k or top-p), with its
    temperature, k, p and seed; the others (beam, contrastive) are refused."""
    name = type(sampler).__name__
    common = {"temperature": sampler.temperature, "seed": getattr(sampler, "seed", None) or 0}
    if isinstance(sampler, keras_hub.samplers.GreedySampler):
        return token_choice.SamplingSettings(greedy=True)
    if isinstance(sampler, keras_hub.samplers.TopPSampler):
        return token_choice.SamplingSettings(top_p=sampler.p, top_k=sampler.k or 0, **common)
    if isinstance(sampler, keras_hub.samplers.TopKSampler):
        return token_choice.SamplingSettings(top_k=sampler.k, **common)
    if isinstance(sampler, keras_hub.samplers.RandomSampler):
        return token_choice.SamplingSettings(**common)
    raise ValueError(
        f"GPTNeoCausalLM decodes with the greedy, random, top_k and top_p samplers, not "
        f"{name}; compile(sampler=...) with one of those."
    )
