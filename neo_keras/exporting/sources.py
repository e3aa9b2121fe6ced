"""Finding and loading the model to export: a preset reference or a training output dir."""

from __future__ import annotations

import os

from neo_keras import file_io
from neo_keras.checkpoints import Source, SourceError
from neo_keras.models.gpt_neo import GPTNeoCausalLM, presets
from neo_keras.models.gpt_neo.hf_convert import CheckpointError


def load_model(source: Source, dtype: str) -> GPTNeoCausalLM:
    """Loads the GPT-Neo causal LM at `source` with weights and compute in `dtype`."""
    path = source.model_path
    if file_io.isdir(path) and not file_io.isfile(os.path.join(path, "config.json")):
        raise SourceError(
            f"{path} is not a GPT-Neo model: it has no config.json. Give a Hugging Face "
            "GPT-Neo directory, a Keras preset (save_to_preset), a training output "
            "directory, an hf:// id or a named size."
        )
    try:
        model = GPTNeoCausalLM.from_preset(path, dtype=dtype)
    except FileNotFoundError as error:
        if file_io.exists(path) or not presets.is_hub_reference(path):
            raise SourceError(str(error)) from error
        raise SourceError(
            f"Cannot fetch {path} from the Hugging Face hub: {error} Download it while online "
            "(it is cached), or give a local directory."
        ) from error
    except (CheckpointError, ValueError, TypeError, KeyError, OSError) as error:
        raise SourceError(f"{path} is not a loadable GPT-Neo model: {error}") from error
    if not isinstance(model, GPTNeoCausalLM):
        raise SourceError(
            f"{path} holds a {type(model).__name__}, not a GPT-Neo causal LM; nothing exported."
        )
    return model
