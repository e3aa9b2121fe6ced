"""How much accelerator memory one train step takes, worked out before anything is built.

A step's memory is what stays between steps (the weights and the optimizer's state) plus,
for the step itself, the gradient accumulator, the compute-dtype copies of the weights under
mixed precision, and the largest of three moments:

- the end of the forward pass: the activations the backward pass needs, and the LM head's
  logits with the loss over them;
- the backward pass of a block's attention: the activations of the blocks before it (with
  `--remat`, their inputs and this block recomputed), its softmax's gradient beside its
  scores, and the gradients of the blocks after it;
- the end of the backward pass: every gradient at once.

The terms follow XLA's buffer assignment of this project's step (read from
`XLA_FLAGS=--xla_dump_to`), and the float32 plan is checked against the peak that
TensorFlow's allocator measures on the CPU (`tests/training/test_memory_plan.py`). Bfloat16
plans size each tensor by its dtype; XLA on the CPU computes bfloat16 in float32, so those
cannot be checked there. Dropout masks are not counted (the fine-tuning recipes use none).
"""

from __future__ import annotations

import dataclasses

from absl import logging

from neo_keras.models.gpt_neo.attention import alternating_attention_types, expand_attention_types
from neo_keras.training.config import ConfigurationError, TrainConfig

GIB = 2**30
_FLOAT32 = 4
_COMPUTE_BYTES = {"float32": 4, "bfloat16": 2}
# Above this share of an accelerator's memory a plan may not fit: the plan is an estimate
# (within 15% on the CPU) and the runtime keeps some memory for itself.
SAFE_SHARE = 0.9


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One kind of accelerator: how many replicas it runs and the memory of each."""

    name: str
    replicas: int
    replica_bytes: int

    def describe(self) -> str:
        return f"{self.name} ({self.replicas} x {self.replica_bytes / GIB:.0f} GiB)"


# Memory per replica as TensorFlow places them: a TPU v2/v3 core is one replica; v4 and v5p
# chips join their two cores into one device; v5e and v6e chips have one core.
_TPU_GENERATIONS = {  # name: (replicas per unit of the type's count, GiB per replica)
    "v2": (1, 8),
    "v3": (1, 16),
    "v4": (0.5, 32),
    "v5p": (0.5, 95),
    "v5litepod": (1, 16),
    "v6e": (1, 32),
}
_GPUS = {"v100-16gb": 16, "a100-40gb": 40, "a100-80gb": 80, "h100-80gb": 80, "h200-141gb": 141}


def accelerator(name: str) -> Accelerator:
    """An accelerator by its Cloud TPU type (`v3-8`, `v4-32`, `v5litepod-16`) or as GPUs
    (`8xa100-80gb`, `h100-80gb`)."""
    name = name.strip().lower()
    generation, _, count = name.rpartition("-")
    if generation in _TPU_GENERATIONS and count.isdigit():
        per_unit, gib = _TPU_GENERATIONS[generation]
        replicas = int(count) * per_unit
        if replicas >= 1 and replicas == int(replicas):
            return Accelerator(name, int(replicas), gib * GIB)
    gpus, _, gpu = name.partition("x") if "x" in name.split("-")[0] else ("1", "", name)
    if gpu in _GPUS and gpus.isdigit() and int(gpus) > 0:
        return Accelerator(name, int(gpus), _GPUS[gpu] * GIB)
    tpus = ", ".join(f"{g}-N" for g in _TPU_GENERATIONS)
    known_gpus = ", ".join(f"[Nx]{g}" for g in _GPUS)
    raise ValueError(
        f"Unknown accelerator {name!r}; use a TPU type ({tpus}, N its cores or chips as "
        f"Cloud TPU names it) or GPUs ({known_gpus})."
    )


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes of one replica's train step, by what holds them, and what is live at the three
    moments that may be the step's peak. The step needs the largest moment on top of the
    weights, the optimizer's state, the gradient accumulator and the weights' compute-dtype
    copies."""

    weights: int
    optimizer: int
    accumulators: int
    weight_copies: int  # the weights in the compute dtype, under mixed precision
    gradients: int
    activations: int
    logits: int
    attention_backward: int  # live while a block's attention is differentiated

    @property
    def resident(self) -> int:
        """Bytes held between steps."""
        return self.weights + self.optimizer

    def moments(self) -> dict[str, int]:
        """Bytes live at each moment that may be the peak, beside those every moment holds."""
        return {
            "end of the forward pass": self.activations + self.logits,
            "backward pass of attention": self.attention_backward,
            "end of the backward pass": self.gradients,
        }

    @property
    def peak_moment(self) -> str:
        moments = self.moments()
        return max(moments, key=moments.get)

    @property
    def peak(self) -> int:
        """Bytes at the step's peak."""
        held = self.resident + self.accumulators + self.weight_copies
        return held + max(self.moments().values())

    def table(self, capacity: int | None = None) -> str:
        rows = [
            ("weights", self.weights),
            ("optimizer state", self.optimizer),
            ("gradient accumulator", self.accumulators),
            ("bfloat16 weight copies", self.weight_copies),
            ("gradients", self.gradients),
            ("activations", self.activations),
            ("logits and loss", self.logits),
        ]
        rows += [(f"live: {moment}", size) for moment, size in self.moments().items()]
        lines = [f"  {name:38}{size / GIB:8.2f} GiB" for name, size in rows]
        lines.append(f"  {'step peak':38}{self.peak / GIB:8.2f} GiB  ({self.peak_moment})")
        if capacity:
            lines.append(f"  {'share of the replica':38}{self.peak / capacity:8.0%}")
        return "\n".join(lines)

    def fits(self, capacity: int) -> bool:
        """Whether the step plans to fit `capacity` bytes, with the margin `SAFE_SHARE` keeps."""
        return self.peak <= SAFE_SHARE * capacity


def block_parameter_count(backbone_config: dict) -> int:
    """Weights of one transformer block."""
    hidden = backbone_config["hidden_dim"]
    intermediate = backbone_config.get("intermediate_dim") or 4 * hidden
    attention = 4 * hidden * hidden + hidden  # q, k, v without bias; the output with one
    mlp = 2 * hidden * intermediate + intermediate + hidden
    layer_norms = 2 * 2 * hidden
    return attention + mlp + layer_norms


def parameter_count(backbone_config: dict) -> int:
    """Weights of a GPT-Neo backbone of this configuration (the LM head is tied)."""
    hidden = backbone_config["hidden_dim"]
    embedding_rows = backbone_config["vocabulary_size"] + backbone_config["max_sequence_length"]
    blocks = backbone_config["num_layers"] * block_parameter_count(backbone_config)
    return embedding_rows * hidden + blocks + 2 * hidden  # embeddings, blocks, final LayerNorm


def optimizer_state_count(backbone_config: dict, optimizer: str) -> int:
    """Optimizer slots, in values: AdamW's two moments, or Adafactor's factored second moment
    (a row and a column per matrix, a full copy of each vector)."""
    parameters = parameter_count(backbone_config)
    if optimizer == "adamw":
        return 2 * parameters
    if optimizer != "adafactor":
        raise ValueError(f"Unknown optimizer {optimizer!r}; use 'adamw' or 'adafactor'.")
    vocabulary, hidden = backbone_config["vocabulary_size"], backbone_config["hidden_dim"]
    intermediate = backbone_config.get("intermediate_dim") or 4 * hidden
    matrices = [(vocabulary, hidden), (backbone_config["max_sequence_length"], hidden)]
    matrices += backbone_config["num_layers"] * (
        4 * [(hidden, hidden)] + [(hidden, intermediate), (intermediate, hidden)]
    )
    factored = sum(rows + columns for rows, columns in matrices)
    vectors = parameters - sum(rows * columns for rows, columns in matrices)
    return factored + vectors


@dataclasses.dataclass(frozen=True)
class _BlockActivations:
    """Bytes one block keeps for its backward pass."""

    attention: int  # residual, LayerNorm output, q, k, v and the context
    mlp: int  # the second residual and LayerNorm output, the MLP's matmul, tanh and gelu product
    scores: int  # the softmax's probabilities

    @property
    def total(self) -> int:
        return self.attention + self.mlp + self.scores


def _block_activations(
    attention_type: str, batch: int, length: int, config: dict, compute: int
) -> _BlockActivations:
    hidden, heads = config["hidden_dim"], config["num_heads"]
    intermediate = config.get("intermediate_dim") or 4 * hidden
    window = config["window_size"]
    positions = batch * length
    if attention_type == "local" and length > window:
        # Each block of W queries scores its own and the previous block of keys, so k and v
        # are kept in 2W-wide blocks: twice their size.
        blocks = -(-length // window)
        score_elements = batch * heads * blocks * window * 2 * window
        attention_tensors = 8
    else:
        score_elements = batch * heads * length * length
        attention_tensors = 6
    # Softmax runs in float32; under bfloat16 its probabilities are also cast for the matmul.
    score_bytes = _FLOAT32 + (compute if compute != _FLOAT32 else 0)
    return _BlockActivations(
        attention=compute * positions * attention_tensors * hidden,
        mlp=compute * positions * (2 * hidden + 3 * intermediate),
        scores=score_elements * score_bytes,
    )


@dataclasses.dataclass(frozen=True)
class _Step:
    """The shapes one micro-batch's step works on."""

    config: dict
    batch: int
    length: int
    compute: int  # bytes per value of the compute dtype
    remat: bool

    @property
    def hidden_state(self) -> int:
        return self.batch * self.length * self.config["hidden_dim"] * self.compute

    @property
    def embedding_gradient(self) -> int:
        """One float32 copy of the token embedding's gradient. It arrives in two parts, from
        the head and from the lookup."""
        return self.config["vocabulary_size"] * self.config["hidden_dim"] * _FLOAT32

    def blocks(self) -> list[_BlockActivations]:
        layers = self.config["num_layers"]
        types = expand_attention_types(
            self.config.get("attention_types") or alternating_attention_types(layers), layers
        )
        return [
            _block_activations(kind, self.batch, self.length, self.config, self.compute)
            for kind in types
        ]


def _activation_bytes(step: _Step) -> int:
    """Saved for the backward pass at the end of the forward pass: every block's activations
    (with remat, every block's input only), the embeddings' sum and the final LayerNorm's
    output."""
    blocks = step.blocks()
    saved = len(blocks) * step.hidden_state if step.remat else sum(b.total for b in blocks)
    return saved + 2 * step.hidden_state


def _attention_backward_bytes(step: _Step) -> int:
    """Live while a block's attention is differentiated, at the block where most is."""
    blocks = step.blocks()
    block_gradient = block_parameter_count(step.config) * _FLOAT32

    def live_at(index: int) -> int:
        # The blocks before it keep their activations (with remat, their inputs; this block
        # is recomputed). Its MLP's tensors are gone by then, its softmax's gradient takes
        # two more tensors of its scores' size, and the later blocks' gradients exist.
        block = blocks[index]
        if step.remat:
            earlier = (index + 1) * step.hidden_state
        else:
            earlier = sum(b.total for b in blocks[:index])
        gradients = (len(blocks) - index) * block_gradient
        return earlier + block.attention + 3 * block.scores + gradients

    # Beside them, the head's part of the embedding gradient and its copy in the layout the
    # lookup's part is added to.
    return max(map(live_at, range(len(blocks)))) + 2 * step.embedding_gradient


def _logits_bytes(step: _Step, loss_chunk_size: int) -> int:
    vocabulary = step.config["vocabulary_size"]
    if loss_chunk_size:
        # One chunk's float32 logits, their softmax and their gradient; the embedding's
        # gradient summed over chunks beside one chunk's part; the hidden states' gradient.
        # A chunk as long as the sequence is still one chunk: more than no chunking.
        chunk_logits = step.batch * min(loss_chunk_size, step.length) * vocabulary * _FLOAT32
        return 3 * chunk_logits + 2 * step.embedding_gradient + step.hidden_state
    # The loss's float32 softmax beside the head's float32 logits (under bfloat16, beside its
    # bfloat16 output too), and the head's part of the embedding gradient.
    positions = step.batch * step.length * vocabulary
    logits = 2 * positions * _FLOAT32 + step.embedding_gradient
    if step.compute != _FLOAT32:
        logits += positions * step.compute
    return logits


def plan_memory(
    backbone_config: dict,
    *,
    micro_batch_size: int,
    sequence_length: int,
    accumulate: bool,
    optimizer: str = "adamw",
    mixed_precision: str = "float32",
    remat: bool = False,
    loss_chunk_size: int = 0,
) -> MemoryPlan:
    """The memory plan of one replica's train step.

    Args:
        backbone_config: `GPTNeoBackbone` arguments (`presets.backbone_config(...)`).
        micro_batch_size: sequences in one forward/backward pass on the replica.
        sequence_length: tokens per sequence.
        accumulate: whether several micro-batches make the replica's batch (an accumulator
            then holds their summed gradient).
        optimizer: `"adamw"` or `"adafactor"`.
        mixed_precision: `"float32"` or `"bfloat16"` (float32 weights, bfloat16 compute).
        remat: whether blocks are recomputed in the backward pass.
        loss_chunk_size: positions per chunk of the LM head and loss; 0 for all at once.
    """
    if mixed_precision not in _COMPUTE_BYTES:
        raise ValueError(f"Unknown mixed precision {mixed_precision!r}; use float32|bfloat16.")
    compute = _COMPUTE_BYTES[mixed_precision]
    step = _Step(backbone_config, micro_batch_size, sequence_length, compute, remat)
    parameters = parameter_count(backbone_config)
    gradients = parameters * _FLOAT32 + step.embedding_gradient
    if optimizer == "adafactor":
        # Its update builds a matrix's full second moment from the factors: at most the
        # embedding's.
        gradients += step.embedding_gradient
    return MemoryPlan(
        weights=parameters * _FLOAT32,
        optimizer=optimizer_state_count(backbone_config, optimizer) * _FLOAT32,
        accumulators=parameters * _FLOAT32 if accumulate else 0,
        # Mixed precision casts each float32 weight to the compute dtype where it is used;
        # counted as if every cast copy stayed for the backward pass.
        weight_copies=parameters * compute if compute != _FLOAT32 else 0,
        gradients=gradients,
        activations=_activation_bytes(step),
        logits=_logits_bytes(step, loss_chunk_size),
        attention_backward=_attention_backward_bytes(step),
    )


# --------------------------------------------------------------------------- a run's plan


def memory_plan_of(
    config: TrainConfig, backbone_config: dict, sequence_length: int, replicas: int
) -> MemoryPlan:
    """The memory plan of one replica's step of this run."""
    per_replica = config.batch_size // replicas
    micro_batch = min(config.micro_batch_size or per_replica, per_replica)
    return plan_memory(
        backbone_config,
        micro_batch_size=micro_batch,
        sequence_length=sequence_length,
        accumulate=micro_batch < per_replica,
        optimizer=config.optimizer,
        mixed_precision=config.mixed_precision,
        remat=config.remat,
        loss_chunk_size=config.loss_chunk_size,
    )


def describe_memory_plan(
    plan: MemoryPlan, hardware: Accelerator | None, replicas: int
) -> tuple[str, list[str]]:
    """The plan as a table, against a replica of `hardware` when one is named, and the
    warnings it calls for: the step may not fit, or the run has another replica count."""
    if hardware is None:
        return f"Memory plan of one replica's step:\n{plan.table()}", []
    text = (
        f"Memory plan of one replica's step on {hardware.describe()}:\n"
        f"{plan.table(hardware.replica_bytes)}"
    )
    warnings = []
    if replicas != hardware.replicas:
        warnings.append(
            f"--accelerator={hardware.name} has {hardware.replicas} replicas but this run "
            f"has {replicas}: the plan is for {replicas}."
        )
    if not plan.fits(hardware.replica_bytes):
        warnings.append(
            f"The step may not fit: its plan ({plan.peak / GIB:.1f} GiB) is over "
            f"{SAFE_SHARE:.0%} of a {hardware.name} replica's "
            f"{hardware.replica_bytes / GIB:.0f} GiB. Lower --micro_batch_size, or turn on "
            "--remat or --loss_chunk_size."
        )
    return text, warnings


def accelerator_of(config: TrainConfig) -> Accelerator | None:
    """The hardware `--accelerator` names, or None; `ConfigurationError` for an unknown one."""
    if not config.accelerator:
        return None
    try:
        return accelerator(config.accelerator)
    except ValueError as error:
        raise ConfigurationError(f"--accelerator: {error}") from None


def log_memory_plan(
    config: TrainConfig,
    backbone,
    sequence_length: int,
    replicas: int,
    hardware: Accelerator | None,
) -> None:
    """Logs the plan of one replica's step of the run, and warns when it may not fit."""
    plan = memory_plan_of(config, backbone.get_config(), sequence_length, replicas)
    text, warnings = describe_memory_plan(plan, hardware, replicas)
    logging.info("%s", text)
    for warning in warnings:
        logging.warning("%s", warning)
