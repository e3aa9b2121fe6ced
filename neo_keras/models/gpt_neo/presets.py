"""Named GPT-Neo sizes and where their pretrained weights live."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from neo_keras import file_io

HF_PREFIX = "hf://"
# The file of a Keras preset (and of a Hugging Face directory) that loaders open first.
PRESET_CONFIG_FILE = "config.json"
GPT2_VOCABULARY_SIZE = 50257

# The published EleutherAI shapes. All use 2048 positions, a 256-token local window and
# alternating global/local layers.
BACKBONE_CONFIGS: dict[str, dict] = {
    "gpt_neo_125m": {"num_layers": 12, "num_heads": 12, "hidden_dim": 768},
    "gpt_neo_1.3b": {"num_layers": 24, "num_heads": 16, "hidden_dim": 2048},
    "gpt_neo_2.7b": {"num_layers": 32, "num_heads": 20, "hidden_dim": 2560},
    # Small enough to train from scratch in minutes on a laptop CPU.
    "gpt_neo_tiny": {
        "num_layers": 4,
        "num_heads": 4,
        "hidden_dim": 128,
        "window_size": 64,
        "max_sequence_length": 512,
    },
}
_DEFAULTS = {
    "vocabulary_size": GPT2_VOCABULARY_SIZE,
    "window_size": 256,
    "max_sequence_length": 2048,
}

HUB_IDS: dict[str, str] = {
    "gpt_neo_125m": "EleutherAI/gpt-neo-125M",
    "gpt_neo_1.3b": "EleutherAI/gpt-neo-1.3B",
    "gpt_neo_2.7b": "EleutherAI/gpt-neo-2.7B",
}

# What a Hugging Face GPT-Neo repository needs to be loaded here; nothing else is fetched.
HF_CHECKPOINT_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def backbone_config(name: str, **overrides) -> dict:
    """Constructor arguments of `GPTNeoBackbone` for a named size, with `overrides` applied."""
    if name not in BACKBONE_CONFIGS:
        raise ValueError(f"Unknown model size {name!r}; choose one of {sorted(BACKBONE_CONFIGS)}.")
    return {**_DEFAULTS, **BACKBONE_CONFIGS[name], **overrides}


def resolve(preset: str) -> str:
    """Turns a preset reference into something a loader can open.

    Named sizes map to their hub ids. `hf://` ids of Hugging Face-format repositories are
    downloaded (safetensors preferred, `pytorch_model.bin` only when there is none) and the
    local snapshot path returned; Keras presets on the hub are returned unchanged for
    keras-hub to load. Local paths are returned as they are.
    """
    if preset in HUB_IDS:
        preset = HF_PREFIX + HUB_IDS[preset]
    if not preset.startswith(HF_PREFIX):
        if not os.path.exists(preset):
            raise FileNotFoundError(_no_model_at(preset))
        return preset
    return _download_hf_repository(preset[len(HF_PREFIX) :])


def is_hub_reference(preset: str) -> bool:
    """True for an `hf://` id or a named size: models on the Hugging Face hub."""
    return preset.startswith(HF_PREFIX) or preset in HUB_IDS


def check_exists(preset: str) -> None:
    """Raises `FileNotFoundError` when `preset` is a path that holds no model.

    Hub ids and named sizes pass unchecked: looking them up would download them.
    """
    if is_hub_reference(preset):
        return
    if not file_io.exists(preset):
        raise FileNotFoundError(_no_model_at(preset))
    if not file_io.exists(os.path.join(preset, PRESET_CONFIG_FILE)):
        raise FileNotFoundError(
            f"{preset} holds no model (it has no {PRESET_CONFIG_FILE}): give a Hugging Face "
            "or Keras preset directory, such as a training run's checkpoints/best."
        )


def _no_model_at(preset: str) -> str:
    return (
        f"No model at {preset!r}: give a local or gs:// directory, an hf:// id or one of "
        f"{sorted(HUB_IDS)}."
    )


@contextlib.contextmanager
def opened(preset: str) -> Iterator[str]:
    """`resolve(preset)`; a preset on a remote file system (gs://) is read from a local copy.

    The copy is fresh on every call and removed afterwards: a checkpoint that a running
    training job rewrites is never read stale from a cache.
    """
    with file_io.local_copy(preset) as local:
        yield resolve(local)


def _download_hf_repository(repo_id: str) -> str:
    import json

    import huggingface_hub

    config_path = huggingface_hub.hf_hub_download(repo_id, "config.json")
    with open(config_path, encoding="utf-8") as f:
        if "model_type" not in json.load(f):
            return HF_PREFIX + repo_id  # A Keras preset: keras-hub downloads it itself.
    files = huggingface_hub.list_repo_files(repo_id)
    patterns = list(HF_CHECKPOINT_FILES)
    if not any(name.endswith(".safetensors") for name in files):
        patterns += ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
    return huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns)
