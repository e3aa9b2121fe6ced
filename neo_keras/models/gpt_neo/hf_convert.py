"""Reading and writing Hugging Face GPT-Neo checkpoints, with every tensor accounted for.

The loaders receive the class they build (`GPTNeoBackbone`, `GPTNeoTokenizer`,
`GPTNeoCausalLM`) and this module imports none of them, so the model modules can load
checkpoints through it without an import cycle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from neo_keras import file_io
from neo_keras.data.tokenizer import END_OF_TEXT
from neo_keras.models.gpt_neo import presets
from neo_keras.models.gpt_neo.attention import expand_attention_types

if TYPE_CHECKING:
    from neo_keras.models.gpt_neo import GPTNeoBackbone, GPTNeoCausalLM, GPTNeoTokenizer

CONFIG_FILE = presets.PRESET_CONFIG_FILE
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_JSON = "tokenizer.json"

# Causal-mask buffers that older checkpoints saved with the weights; they carry no parameters.
_BUFFER_SUFFIXES = (".attn.attention.bias", ".attn.attention.masked_bias")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as GPT-Neo, with the reason and what to do."""


def is_hf_checkpoint(path: str) -> bool:
    """True for a local directory whose config.json is a Hugging Face (not Keras) config."""
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        return False
    return "model_type" in _read_json(config_path)


# --------------------------------------------------------------------------- configs


def backbone_kwargs_from_hf_config(config: dict) -> dict:
    """`GPTNeoBackbone` arguments from a Hugging Face `GPTNeoConfig` dict."""
    model_type = config.get("model_type")
    if model_type != "gpt_neo":
        raise CheckpointError(
            f"config.json has model_type {model_type!r}, not 'gpt_neo': this loader reads "
            "GPT-Neo checkpoints only."
        )
    activation = config.get("activation_function", "gelu_new")
    if activation != "gelu_new":
        raise CheckpointError(
            f"config.json asks for activation {activation!r}; only GPT-Neo's 'gelu_new' "
            "is implemented."
        )
    num_layers = config["num_layers"]
    try:
        attention_types = expand_attention_types(config["attention_types"], num_layers)
    except ValueError as error:
        raise CheckpointError(f"config.json attention_types is inconsistent: {error}") from error
    return {
        "vocabulary_size": config["vocab_size"],
        "num_layers": num_layers,
        "num_heads": config["num_heads"],
        "hidden_dim": config["hidden_size"],
        "intermediate_dim": config.get("intermediate_size") or 4 * config["hidden_size"],
        "attention_types": attention_types,
        "window_size": config.get("window_size", 256),
        "max_sequence_length": config["max_position_embeddings"],
        "dropout": config.get("resid_dropout", 0.0),
        "attention_dropout": config.get("attention_dropout", 0.0),
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "initializer_range": config.get("initializer_range", 0.02),
    }


def hf_config_from_backbone(backbone: GPTNeoBackbone, end_token_id: int) -> dict:
    """A Hugging Face `GPTNeoConfig` dict describing `backbone`."""
    return {
        "architectures": ["GPTNeoForCausalLM"],
        "model_type": "gpt_neo",
        "vocab_size": backbone.vocabulary_size,
        "max_position_embeddings": backbone.max_sequence_length,
        "hidden_size": backbone.hidden_dim,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "intermediate_size": backbone.intermediate_dim,
        "attention_types": _run_length_attention_types(backbone.attention_types),
        "window_size": backbone.window_size,
        "activation_function": "gelu_new",
        "resid_dropout": backbone.dropout,
        "embed_dropout": backbone.dropout,
        "attention_dropout": backbone.attention_dropout,
        "layer_norm_epsilon": backbone.layer_norm_epsilon,
        "initializer_range": backbone.initializer_range,
        "bos_token_id": end_token_id,
        "eos_token_id": end_token_id,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def _run_length_attention_types(attention_types: list[str]) -> list:
    """The shortest `[[pattern, repeats]]` that expands to `attention_types`."""
    count = len(attention_types)
    for period in range(1, count + 1):
        pattern = attention_types[:period]
        if count % period == 0 and pattern * (count // period) == attention_types:
            return [[pattern, count // period]]
    raise AssertionError("unreachable: the whole list is its own period")


# --------------------------------------------------------------------------- weights


def _weight_map(backbone: GPTNeoBackbone) -> Iterator[tuple[str, object, bool]]:
    """Yields `(hf_name, keras_variable, transposed)` for every parameter of the backbone.

    Hugging Face `Linear` weights are `[out, in]`; Keras `Dense` kernels are `[in, out]`.
    """
    yield "transformer.wte.weight", backbone.token_embedding.embeddings, False
    yield "transformer.wpe.weight", backbone.position_embedding.position_embeddings, False
    for i, block in enumerate(backbone.transformer_layers):
        prefix = f"transformer.h.{i}"
        attention = block.attention
        layers = {
            "ln_1": block.attention_layer_norm,
            "ln_2": block.mlp_layer_norm,
        }
        for name, norm in layers.items():
            yield f"{prefix}.{name}.weight", norm.gamma, False
            yield f"{prefix}.{name}.bias", norm.beta, False
        for name, dense in {
            "q_proj": attention.query_dense,
            "k_proj": attention.key_dense,
            "v_proj": attention.value_dense,
        }.items():
            yield f"{prefix}.attn.attention.{name}.weight", dense.kernel, True
        yield f"{prefix}.attn.attention.out_proj.weight", attention.output_dense.kernel, True
        yield f"{prefix}.attn.attention.out_proj.bias", attention.output_dense.bias, False
        yield f"{prefix}.mlp.c_fc.weight", block.mlp_intermediate.kernel, True
        yield f"{prefix}.mlp.c_fc.bias", block.mlp_intermediate.bias, False
        yield f"{prefix}.mlp.c_proj.weight", block.mlp_output.kernel, True
        yield f"{prefix}.mlp.c_proj.bias", block.mlp_output.bias, False
    yield "transformer.ln_f.weight", backbone.layer_norm.gamma, False
    yield "transformer.ln_f.bias", backbone.layer_norm.beta, False


def _canonical_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Prefixes `transformer.` where a bare `GPTNeoModel` was saved; drops mask buffers."""
    canonical = {}
    for name, value in tensors.items():
        if name.endswith(_BUFFER_SUFFIXES):
            continue
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name
        canonical[name] = value
    return canonical


def load_hf_weights(backbone: GPTNeoBackbone, tensors: dict[str, np.ndarray]) -> None:
    """Assigns Hugging Face `tensors` to `backbone`; every tensor must find its variable.

    Raises `CheckpointError` naming the tensor on a missing, unexpected or mis-shaped
    tensor, and when an untied LM head differs from the token embedding.
    """
    tensors = _canonical_names(tensors)
    lm_head = tensors.pop("lm_head.weight", None)
    wte = tensors.get("transformer.wte.weight")
    if lm_head is not None and wte is not None and not np.array_equal(lm_head, wte):
        raise CheckpointError(
            "lm_head.weight differs from transformer.wte.weight: GPT-Neo ties its LM head to "
            "the token embedding, and an untied head cannot be represented here."
        )
    expected = list(_weight_map(backbone))
    missing = [name for name, _, _ in expected if name not in tensors]
    unexpected = sorted(set(tensors) - {name for name, _, _ in expected})
    if missing or unexpected:
        raise CheckpointError(
            "The checkpoint does not match the GPT-Neo configuration in config.json: "
            f"missing tensors {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected tensors {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}."
        )
    for name, variable, transposed in expected:
        value = tensors[name].T if transposed else tensors[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"Tensor {name} has shape {tuple(tensors[name].shape)} but the model built "
                f"from config.json needs {tuple(variable.shape)}"
                f"{' (transposed)' if transposed else ''}."
            )
        variable.assign(value.astype(variable.dtype))


def hf_state_dict(backbone: GPTNeoBackbone, dtype: str = "float32") -> dict[str, np.ndarray]:
    """The backbone's parameters under Hugging Face names, as contiguous numpy arrays."""
    np_dtype = _numpy_dtype(dtype)
    state = {}
    for name, variable, transposed in _weight_map(backbone):
        value = np.asarray(variable.numpy(), dtype=np.float32)
        state[name] = np.ascontiguousarray(value.T if transposed else value).astype(np_dtype)
    return state


def _numpy_dtype(dtype: str):
    if dtype == "float32":
        return np.float32
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    raise ValueError(f"Unsupported weight dtype {dtype!r}; use 'float32' or 'bfloat16'.")


# --------------------------------------------------------------------------- files


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"Cannot read {path}: {error}") from error


def read_hf_tensors(directory: str) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint in `directory`, safetensors preferred over torch files."""
    for index_name, reader in ((SAFETENSORS_INDEX, _read_safetensors), (TORCH_INDEX, _read_torch)):
        index_path = os.path.join(directory, index_name)
        if os.path.isfile(index_path):
            shards = sorted(set(_read_json(index_path)["weight_map"].values()))
            tensors = {}
            for shard in shards:
                tensors.update(reader(os.path.join(directory, shard)))
            return tensors
    for file_name, reader in ((SAFETENSORS_FILE, _read_safetensors), (TORCH_FILE, _read_torch)):
        path = os.path.join(directory, file_name)
        if os.path.isfile(path):
            return reader(path)
    raise CheckpointError(
        f"No weights in {directory}: expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX}, "
        f"{TORCH_FILE} or {TORCH_INDEX}."
    )


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"Cannot read {path}: {error}. The file is truncated or corrupt; download or "
            "export it again."
        ) from error


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise CheckpointError(
            f"{path} is a PyTorch pickle; install torch to read it, or convert the checkpoint "
            "to safetensors."
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for damaged files
        raise CheckpointError(
            f"Cannot read {path}: {error}. The file is truncated or corrupt."
        ) from error
    return {name: tensor.float().numpy() for name, tensor in state.items()}


def load_hf_tokenizer(
    tokenizer_cls: type[GPTNeoTokenizer], directory: str
) -> GPTNeoTokenizer | None:
    """The tokenizer saved beside a checkpoint (vocab.json + merges.txt or tokenizer.json)."""
    vocab_path = os.path.join(directory, VOCAB_FILE)
    merges_path = os.path.join(directory, MERGES_FILE)
    if os.path.isfile(vocab_path) and os.path.isfile(merges_path):
        vocabulary = _read_json(vocab_path)
        with open(merges_path, encoding="utf-8") as f:
            merges = [line for line in f.read().splitlines() if line and not line.startswith("#")]
        return tokenizer_cls(vocabulary=vocabulary, merges=merges)
    tokenizer_path = os.path.join(directory, TOKENIZER_JSON)
    if os.path.isfile(tokenizer_path):
        return tokenizer_from_tokenizer_json(tokenizer_cls, tokenizer_path)
    return None


def load_tokenizer(tokenizer_cls: type[GPTNeoTokenizer], path: str) -> GPTNeoTokenizer:
    """A tokenizer from a `tokenizer.json` file or a directory holding tokenizer files."""
    if os.path.isfile(path):
        return tokenizer_from_tokenizer_json(tokenizer_cls, path)
    tokenizer = load_hf_tokenizer(tokenizer_cls, path)
    if tokenizer is None:
        raise CheckpointError(
            f"No tokenizer at {path}: expected tokenizer.json, or vocab.json with merges.txt."
        )
    return tokenizer


def tokenizer_from_tokenizer_json(
    tokenizer_cls: type[GPTNeoTokenizer], path: str
) -> GPTNeoTokenizer:
    """A tokenizer from a `tokenizers` byte-level BPE `tokenizer.json`."""
    spec = _read_json(path)
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise CheckpointError(f"{path} is a {model.get('type')!r} tokenizer; GPT-Neo needs BPE.")
    vocabulary = dict(model["vocab"])
    for token in spec.get("added_tokens", []):
        vocabulary.setdefault(token["content"], token["id"])
    if END_OF_TEXT not in vocabulary:
        raise CheckpointError(f"{path} has no {END_OF_TEXT} token, which GPT-Neo needs.")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokenizer_cls(vocabulary=vocabulary, merges=merges)


def load_causal_lm(
    causal_lm_cls: type[GPTNeoCausalLM],
    directory: str,
    load_weights: bool = True,
    dtype=None,
    sequence_length: int | None = None,
    **kwargs,
) -> GPTNeoCausalLM:
    """A causal LM (with preprocessor when a tokenizer is present) from an HF directory."""
    backbone = load_backbone(
        causal_lm_cls.backbone_cls, directory, load_weights=load_weights, dtype=dtype
    )
    preprocessor_cls = causal_lm_cls.preprocessor_cls
    tokenizer = load_hf_tokenizer(preprocessor_cls.tokenizer_cls, directory)
    preprocessor = None
    if tokenizer is not None:
        preprocessor = preprocessor_cls(
            tokenizer, sequence_length=sequence_length or backbone.max_sequence_length
        )
    return causal_lm_cls(backbone, preprocessor=preprocessor, **kwargs)


def load_backbone(
    backbone_cls: type[GPTNeoBackbone], directory: str, load_weights: bool = True, dtype=None
) -> GPTNeoBackbone:
    """A backbone from a Hugging Face directory."""
    config = _read_json(os.path.join(directory, CONFIG_FILE))
    backbone = backbone_cls(**backbone_kwargs_from_hf_config(config), dtype=dtype)
    if load_weights:
        load_hf_weights(backbone, read_hf_tensors(directory))
    return backbone


def save_hf_checkpoint(model: GPTNeoCausalLM, path: str, dtype: str = "float32") -> None:
    """Writes `model` as a Hugging Face GPT-Neo directory at `path` (local or gs://).

    The directory appears complete or not at all (see `neo_keras.file_io.staged_tree`).
    An existing `path` is an error.
    """
    if file_io.exists(path):
        raise FileExistsError(f"{path} exists; choose a new path or remove it first.")
    tokenizer = model.preprocessor.tokenizer if model.preprocessor is not None else None
    end_token_id = (
        tokenizer.end_token_id if tokenizer is not None else model.backbone.vocabulary_size - 1
    )
    with file_io.staged_tree(path, last_file=CONFIG_FILE) as staging:
        os.makedirs(staging)
        _write_json(
            os.path.join(staging, CONFIG_FILE),
            {
                **hf_config_from_backbone(model.backbone, end_token_id),
                "torch_dtype": dtype,
            },
        )
        _write_safetensors(
            os.path.join(staging, SAFETENSORS_FILE), hf_state_dict(model.backbone, dtype)
        )
        if tokenizer is not None:
            _write_tokenizer(staging, tokenizer, model.backbone.max_sequence_length)


def _write_json(path: str, content: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _write_safetensors(path: str, state: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(state, path, metadata={"format": "pt"})


def _write_tokenizer(directory: str, tokenizer: GPTNeoTokenizer, max_length: int) -> None:
    _write_json(os.path.join(directory, VOCAB_FILE), dict(tokenizer.vocabulary))
    with open(os.path.join(directory, MERGES_FILE), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{merge}\n" for merge in tokenizer.merges)
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    _write_json(os.path.join(directory, "special_tokens_map.json"), special)
    # A literal "<|endoftext|>" in source text is text to this project's tokenizer; without
    # split_special_tokens, transformers would read it as the end-of-text token.
    _write_json(
        os.path.join(directory, "tokenizer_config.json"),
        {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": max_length,
            "split_special_tokens": True,
            **special,
        },
    )
