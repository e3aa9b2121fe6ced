"""One `from_preset` for every GPT-Neo class: Hugging Face checkpoints and Keras presets,
local or on any `tf.io.gfile` file system.

A Keras preset is left to keras-hub. A Hugging Face checkpoint is converted by `hf_convert`,
which receives the class to build and never imports the model: so no model module imports a
module that imports it back.
"""

from __future__ import annotations

import keras_hub

from neo_keras.models.gpt_neo import hf_convert, presets


class PresetLoading:
    """Gives a keras-hub class (backbone, tokenizer, preprocessor, causal LM) a `from_preset`
    that also reads Hugging Face GPT-Neo checkpoints, hub ids and named sizes."""

    @classmethod
    def from_preset(cls, preset: str, **kwargs):
        """Loads from a Hugging Face directory or id, a named size or a Keras preset.

        Directories may be on any `tf.io.gfile` file system (`gs://bucket/run/checkpoints/best`);
        `kwargs` go to the constructor (`dtype`, `load_weights`, `sequence_length`, ...) as
        keras-hub's `from_preset` takes them.
        """
        with presets.opened(preset) as source:
            if hf_convert.is_hf_checkpoint(source):
                return load_hf_checkpoint(cls, source, **kwargs)
            return super().from_preset(source, **kwargs)


def load_hf_checkpoint(cls: type, directory: str, **kwargs):
    """An instance of `cls` from the Hugging Face checkpoint in local `directory`."""
    if issubclass(cls, keras_hub.models.CausalLM):
        return hf_convert.load_causal_lm(cls, directory, **kwargs)
    if issubclass(cls, keras_hub.models.Backbone):
        return hf_convert.load_backbone(cls, directory, **kwargs)
    if issubclass(cls, keras_hub.models.Preprocessor):
        return cls(hf_convert.load_tokenizer(cls.tokenizer_cls, directory), **kwargs)
    if issubclass(cls, keras_hub.tokenizers.Tokenizer):
        return hf_convert.load_tokenizer(cls, directory)
    raise TypeError(f"{cls.__name__} cannot be loaded from a Hugging Face checkpoint.")
