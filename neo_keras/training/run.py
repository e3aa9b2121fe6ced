"""One training run: configuration, output directory, model, data, `fit`, checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time

import keras
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from neo_keras import file_io
from neo_keras.accelerators import (
    STRATEGIES,
    distribute,
    is_chief,
    is_tpu,
    make_strategy,
    worker_count,
)
from neo_keras.checkpoints import RunDirectory
from neo_keras.data import pipeline
from neo_keras.models.gpt_neo import (
    GPTNeoBackbone,
    GPTNeoCausalLM,
    GPTNeoTokenizer,
    hf_convert,
    presets,
)
from neo_keras.training import callbacks as run_callbacks
from neo_keras.training import progress
from neo_keras.training.lm_trainer import CausalLMTrainer
from neo_keras.training.memory_plan import (
    GIB,
    SAFE_SHARE,
    Accelerator,
    MemoryPlan,
    accelerator,
    plan_memory,
)
from neo_keras.training.optimizers import make_optimizer
from neo_keras.training.schedules import WarmupCosine, WarmupLinear


class ConfigurationError(ValueError):
    """A setting that cannot work, found before any compute is spent."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run. The program's flags map one to one onto these fields."""

    output_dir: str
    dataset: str
    data_dir: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    init: str = "scratch"
    model_size: str = "gpt_neo_125m"
    tokenizer: str | None = None
    dropout: float | None = None
    batch_size: int = 8
    micro_batch_size: int | None = None
    train_steps: int | None = None
    epochs: float | None = None
    eval_every: int = 1000
    eval_steps: int | None = None
    save_every: int = 1000
    optimizer: str = "adamw"
    schedule: str = "cosine"
    learning_rate: float = 5e-5
    end_learning_rate: float = 0.0
    warmup_steps: int = 0
    decay_steps: int | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    mixed_precision: str = "float32"
    remat: bool = False
    loss_chunk_size: int = 0
    accelerator: str = ""
    strategy: str = "auto"
    tpu: str = ""
    cpu_devices: int = 0
    steps_per_execution: int = 1
    jit_compile: bool = True
    seed: int = 0
    shuffle_buffer: int = 10_000
    peak_tflops: float = 0.0
    log_every: int = 1
    verbose: int = 1


# The fields that take one of a few values: their flags are enums, so a typo is refused as
# the command line is parsed.
CHOICES = {
    "optimizer": ("adamw", "adafactor"),
    "schedule": ("cosine", "linear", "constant"),
    "mixed_precision": ("float32", "bfloat16"),
    "strategy": STRATEGIES,
}

# Settings that may change between a run and its resumption; every other one must match.
# Memory savers (remat, loss chunks, micro-batches) change how a step is computed, not its value.
OPERATIONAL_FIELDS = {
    "remat",
    "loss_chunk_size",
    "accelerator",
    "data_dir",
    "train_steps",
    "epochs",
    "eval_every",
    "eval_steps",
    "save_every",
    "strategy",
    "tpu",
    "cpu_devices",
    "steps_per_execution",
    "jit_compile",
    "peak_tflops",
    "log_every",
    "verbose",
    "micro_batch_size",
}
_MAX_LAYERS = 256


def check_output_dir(config: TrainConfig) -> bool:
    """Returns True when `output_dir` holds this run already (a resumption).

    Raises `ConfigurationError` when it holds a run of another configuration, or is a file.
    """
    if file_io.isfile(config.output_dir):
        raise ConfigurationError(
            f"--output_dir={config.output_dir} is a file, not a directory: give a directory "
            "for the run's checkpoints and logs (a new one, or the run's to resume it)."
        )
    previous = RunDirectory(config.output_dir).read_config()
    if previous is None:
        return False
    current = dataclasses.asdict(config)
    changed = {
        name: (previous.get(name), value)
        for name, value in current.items()
        if name not in OPERATIONAL_FIELDS and previous.get(name) != value
    }
    if changed:
        details = ", ".join(f"--{k} was {a!r}, now {b!r}" for k, (a, b) in sorted(changed.items()))
        raise ConfigurationError(
            f"{config.output_dir} holds a run of another configuration ({details}). "
            "Use a new --output_dir, or the original flags to resume that run."
        )
    return True


def _write_run_config(config: TrainConfig) -> None:
    path = RunDirectory(config.output_dir).run_config
    file_io.write_text(path, json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True))


def check_batch_sizes(config: TrainConfig, replicas: int) -> None:
    """Raises `ConfigurationError` for batch sizes that do not split over `replicas`."""
    per_replica, remainder = divmod(config.batch_size, replicas)
    if remainder:
        raise ConfigurationError(
            f"--batch_size={config.batch_size} does not split evenly over {replicas} replicas."
        )
    if config.micro_batch_size and per_replica % config.micro_batch_size:
        raise ConfigurationError(
            f"--batch_size={config.batch_size} is {per_replica} per replica, not a multiple of "
            f"--micro_batch_size={config.micro_batch_size}; use a batch size divisible by "
            f"replicas x micro-batch ({replicas} x {config.micro_batch_size})."
        )
    for name in ("eval_every", "save_every"):
        if getattr(config, name) % config.steps_per_execution:
            raise ConfigurationError(
                f"--{name}={getattr(config, name)} must be a multiple of "
                f"--steps_per_execution={config.steps_per_execution}."
            )


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """`train_steps`, or `epochs` passes of `steps_per_epoch` global batches.

    A `train_steps` given with `epochs` (a flag over a flagfile) wins, and the log says so.
    """
    if config.train_steps:
        if config.epochs:
            logging.info(
                "--train_steps=%d given: --epochs=%s is not used.",
                config.train_steps,
                config.epochs,
            )
        return config.train_steps
    if config.epochs:
        return max(1, math.floor(config.epochs * steps_per_epoch))
    raise ConfigurationError("Give --train_steps or --epochs.")


# More passes than this over one dataset is rarely meant; say so before the compute is spent.
_MANY_EPOCHS = 20


def warn_about_run_length(config: TrainConfig, steps: int, steps_per_epoch: int) -> None:
    """Logs a warning for a run that repeats its data many times or ends inside its warmup."""
    epochs = steps / steps_per_epoch
    if epochs > _MANY_EPOCHS:
        logging.warning(
            "%d steps are %.0f passes over %s (%d steps each); for a small dataset give "
            "--epochs instead of --train_steps.",
            steps,
            epochs,
            config.dataset,
            steps_per_epoch,
        )
    if config.warmup_steps >= steps:
        logging.warning(
            "--warmup_steps=%d is not shorter than the run (%d steps): the learning rate never "
            "reaches --learning_rate.",
            config.warmup_steps,
            steps,
        )


def make_schedule(config: TrainConfig, steps: int):
    if config.schedule == "cosine":
        decay = config.decay_steps or max(steps - config.warmup_steps, 1)
        return WarmupCosine(
            config.learning_rate, config.warmup_steps, decay, end=config.end_learning_rate
        )
    if config.schedule == "linear":
        return WarmupLinear(config.learning_rate, config.warmup_steps, steps)
    if config.schedule == "constant":
        return config.learning_rate
    raise ConfigurationError(f"Unknown --schedule={config.schedule!r}; use cosine|linear|constant.")


def load_tokenizer_of(reference: str):
    """The `--tokenizer` of a from-scratch run: tokenizer.json or a directory, maybe remote."""
    with presets.opened(reference) as tokenizer_path:  # may be on gs://
        return hf_convert.load_tokenizer(GPTNeoTokenizer, tokenizer_path)


def build_causal_lm(config: TrainConfig) -> GPTNeoCausalLM:
    """The model to train: pretrained weights from `init`, or a fresh `model_size`."""
    dtype = "mixed_bfloat16" if config.mixed_precision == "bfloat16" else "float32"
    if config.init != "scratch":
        model = GPTNeoCausalLM.from_preset(config.init, dtype=dtype)
        if config.dropout is not None:
            logging.warning("--dropout applies to models trained from scratch only.")
        return model
    overrides = {"dropout": config.dropout} if config.dropout is not None else {}
    preprocessor = None
    if config.tokenizer:
        tokenizer = load_tokenizer_of(config.tokenizer)
        overrides["vocabulary_size"] = tokenizer.vocabulary_size()
        preprocessor = GPTNeoCausalLM.preprocessor_cls(tokenizer)
    backbone = GPTNeoBackbone(
        **presets.backbone_config(config.model_size, **overrides), dtype=dtype
    )
    return GPTNeoCausalLM(backbone, preprocessor=preprocessor)


def build_trainer(config: TrainConfig, steps: int) -> CausalLMTrainer:
    """The model, its optimizer and the train step of a `steps`-step run, compiled (in the
    caller's strategy scope)."""
    if config.remat:
        # Recompute each transformer block in the backward pass; keep its output only.
        blocks = [f"transformer_layer_{i}" for i in range(_MAX_LAYERS)]
        with keras.RematScope(mode="list_of_layers", layer_names=blocks):
            causal_lm = build_causal_lm(config)
    else:
        causal_lm = build_causal_lm(config)
    optimizer = make_optimizer(
        config.optimizer,
        make_schedule(config, steps),
        weight_decay=config.weight_decay,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        epsilon=config.epsilon,
    )
    optimizer.build(causal_lm.trainable_variables)
    trainer = CausalLMTrainer(
        causal_lm,
        micro_batch_size=config.micro_batch_size,
        clip_norm=config.clip_norm or None,
        xla=config.jit_compile,
        loss_chunk_size=config.loss_chunk_size or None,
    )
    trainer.compile(optimizer=optimizer, steps_per_execution=config.steps_per_execution)
    return trainer


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


def flops_per_token(backbone: GPTNeoBackbone, sequence_length: int) -> float:
    """Training FLOPs per token: 6 per parameter used in a matmul plus attention scores."""
    positions = backbone.max_sequence_length * backbone.hidden_dim
    parameters = backbone.count_params() - positions
    attention = 12 * backbone.num_layers * backbone.hidden_dim * sequence_length
    return 6 * parameters + attention


def measured_peak_flops(dtype: str) -> float:
    """FLOP/s of a large matmul on this host: the CPU's practical peak, for MFU on CPUs."""
    size = 2048
    a = tf.random.normal((size, size), dtype=dtype)
    matmul = tf.function(lambda x: tf.matmul(x, x), jit_compile=True)
    matmul(a).numpy()
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        matmul(a).numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def peak_flops(config: TrainConfig, strategy: tf.distribute.Strategy) -> float | None:
    if config.peak_tflops:
        return config.peak_tflops * 1e12
    if is_tpu(strategy) or tf.config.list_logical_devices("GPU"):
        return None  # unknown chip: give --peak_tflops to report MFU
    return measured_peak_flops("bfloat16" if config.mixed_precision == "bfloat16" else "float32")


def check_model_source(config: TrainConfig) -> None:
    """Raises `ConfigurationError` for an `--init`, `--model_size` or `--tokenizer` that
    names nothing: found before a model is built."""
    if config.init != "scratch":
        try:
            presets.check_exists(config.init)
        except FileNotFoundError as error:
            raise ConfigurationError(f"--init: {error}") from None
        return
    try:
        presets.backbone_config(config.model_size)
    except ValueError as error:
        raise ConfigurationError(f"--model_size: {error}") from None
    if config.tokenizer and not file_io.exists(config.tokenizer):
        raise ConfigurationError(
            f"--tokenizer={config.tokenizer} does not exist: give a tokenizer.json, or a "
            "directory holding one (a Hugging Face checkpoint's, say)."
        )


def check_intervals(config: TrainConfig) -> None:
    if config.eval_every < 1 or config.save_every < 1:
        raise ConfigurationError("--eval_every and --save_every must be positive.")


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The built dataset a run reads, and its shape in steps."""

    builder: tfds.core.DatasetBuilder
    sequence_length: int
    steps_per_epoch: int


def training_data_of(config: TrainConfig) -> TrainingData:
    """The run's dataset with both of its splits checked; `ConfigurationError` when a split is
    missing, is not token ids, or has fewer examples than one batch."""
    builder = pipeline.load_prepared_builder(config.dataset, data_dir=config.data_dir)
    for flag in ("train_split", "validation_split"):
        try:
            examples = pipeline.token_split(builder, getattr(config, flag)).num_examples
        except pipeline.DatasetError as error:
            raise ConfigurationError(f"--{flag}: {error}") from None
        if flag == "train_split" and examples < config.batch_size:
            raise ConfigurationError(
                f"--train_split={config.train_split} of {config.dataset} has {examples} "
                f"examples, fewer than one batch: lower --batch_size={config.batch_size}."
            )
    return TrainingData(
        builder=builder,
        sequence_length=builder.info.features["input_ids"].shape[0],
        steps_per_epoch=pipeline.steps_per_epoch(
            builder, config.batch_size, split=config.train_split
        ),
    )


def check_loss_chunk(config: TrainConfig, sequence_length: int) -> None:
    chunk = config.loss_chunk_size
    if chunk < 0 or (chunk and sequence_length % min(chunk, sequence_length)):
        raise ConfigurationError(
            f"--loss_chunk_size={chunk} does not divide the sequence length "
            f"{sequence_length} of {config.dataset}; use a divisor of it (0 turns chunking off)."
        )
    if chunk >= sequence_length:
        logging.warning(
            "--loss_chunk_size=%d is not shorter than the sequences (%d): one chunk saves no "
            "memory and its gradient's buffers add some; use a smaller divisor or 0.",
            chunk,
            sequence_length,
        )


def warn_about_local_output_dir(config: TrainConfig) -> None:
    if worker_count() > 1 and not file_io.is_remote(config.output_dir):
        # Only the chief writes; the others read checkpoints back when the run resumes.
        logging.warning(
            "--output_dir=%s is a local path and this job has %d workers: it must be one "
            "file system they all see (NFS), or a bucket (gs://...), or resuming fails.",
            config.output_dir,
            worker_count(),
        )


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) training; returns the final logs.

    Every setting is checked before a model is built or a file written, so a refused start
    leaves `output_dir` as it was and the corrected command starts cleanly.
    """
    resuming = check_output_dir(config)
    hardware = accelerator_of(config)
    check_intervals(config)
    check_model_source(config)
    data = training_data_of(config)
    builder, sequence_length = data.builder, data.sequence_length
    steps = total_steps(config, data.steps_per_epoch)
    warn_about_run_length(config, steps, data.steps_per_epoch)
    check_loss_chunk(config, sequence_length)
    strategy = make_strategy(config.strategy, config.tpu)
    check_batch_sizes(config, strategy.num_replicas_in_sync)
    warn_about_local_output_dir(config)
    keras.utils.set_random_seed(config.seed)

    with strategy.scope():
        trainer = build_trainer(config, steps)
    chief = is_chief(strategy)
    if chief:
        _write_run_config(config)
    causal_lm, optimizer = trainer.causal_lm, trainer.optimizer
    replicas = strategy.num_replicas_in_sync
    plan = memory_plan_of(config, causal_lm.backbone.get_config(), sequence_length, replicas)
    plan_text, plan_warnings = describe_memory_plan(plan, hardware, replicas)
    logging.info("%s", plan_text)
    for warning in plan_warnings:
        logging.warning("%s", warning)

    run = RunDirectory(config.output_dir)
    resume = run_callbacks.ResumeCheckpoint(
        run.resume,
        causal_lm,
        optimizer,
        config.save_every,
        writes=chief,
    )
    start_step = resume.restore() if resuming else 0
    if start_step >= steps:
        logging.info("The run already reached step %d of %d.", start_step, steps)
        return {"step": start_step}
    logging.info(
        "%s",
        progress.start_line(
            steps=steps,
            start_step=start_step,
            steps_per_epoch=data.steps_per_epoch,
            dataset=config.dataset,
            split=config.train_split,
            batch_size=config.batch_size,
            replicas=replicas,
        ),
    )

    # Every host builds the input of its own replicas only.
    train_data = distribute(
        strategy,
        functools.partial(
            pipeline.make_training_dataset,
            builder,
            config.batch_size,
            split=config.train_split,
            seed=config.seed,
            start_step=start_step,
            shuffle_buffer=config.shuffle_buffer,
        ),
    )
    validation_data = distribute(
        strategy,
        functools.partial(
            pipeline.make_validation_dataset,
            builder,
            config.batch_size,
            split=config.validation_split,
        ),
    )
    stop_guard = run_callbacks.StopOnNonFiniteLoss()
    callbacks = [
        run_callbacks.ValidationEvaluator(validation_data, steps=config.eval_steps),
        stop_guard,
        run_callbacks.Throughput(
            config.batch_size * sequence_length,
            flops_per_token(causal_lm.backbone, sequence_length),
            peak_flops(config, strategy),
        ),
        run_callbacks.StopAtStep(steps),
        resume,
        progress.StepProgress(steps, verbose=config.verbose),
    ]
    if chief:  # the other workers compute the same values; one writes them
        callbacks += [
            run_callbacks.StepLogger(run.logs, config.log_every),
            run_callbacks.PresetCheckpoints(run, causal_lm),
        ]
    history = trainer.fit(
        train_data,
        steps_per_epoch=config.eval_every,
        epochs=math.ceil(steps / config.eval_every),
        initial_epoch=start_step // config.eval_every,
        callbacks=callbacks,
        verbose=0,  # StepProgress shows the run in steps, not in Keras' eval_every "epochs"
        shuffle=False,  # the pipeline shuffles, reproducibly per epoch
    )
    if stop_guard.failed_step is not None:
        raise run_callbacks.NonFiniteLossError(
            f"The loss became NaN or infinite at step {stop_guard.failed_step}; training "
            f"stopped. The last good checkpoint is in {run.resume} (rerun the same "
            "command to resume from it, e.g. with a lower --learning_rate)."
        )
    final = {name: values[-1] for name, values in history.history.items() if values}
    final["step"] = int(optimizer.iterations.numpy())
    return final
