"""One training run, as a sequence of steps: check the configuration, load the data, build
the model, restore, `fit` with the run's callbacks."""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from neo_keras.accelerators import distribute, is_chief, make_strategy
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
from neo_keras.training.config import (
    ConfigurationError,
    TrainConfig,
    check_batch_sizes,
    check_intervals,
    check_loss_chunk,
    check_model_source,
    check_output_dir,
    total_steps,
    warn_about_local_output_dir,
    warn_about_run_length,
    write_run_config,
)
from neo_keras.training.lm_trainer import CausalLMTrainer
from neo_keras.training.memory_plan import accelerator_of, log_memory_plan
from neo_keras.training.optimizers import make_optimizer
from neo_keras.training.schedules import WarmupCosine, WarmupLinear

_MAX_LAYERS = 256


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
    steps = total_steps(config, data.steps_per_epoch)
    warn_about_run_length(config, steps, data.steps_per_epoch)
    check_loss_chunk(config, data.sequence_length)
    strategy = make_strategy(config.strategy, config.tpu)
    check_batch_sizes(config, strategy.num_replicas_in_sync)
    warn_about_local_output_dir(config)

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        trainer = build_trainer(config, steps)
    chief = is_chief(strategy)
    if chief:
        write_run_config(config)
    log_memory_plan(
        config,
        trainer.causal_lm.backbone,
        data.sequence_length,
        strategy.num_replicas_in_sync,
        hardware,
    )

    run = RunDirectory(config.output_dir)
    resume = run_callbacks.ResumeCheckpoint(
        run.resume, trainer.causal_lm, trainer.optimizer, config.save_every, writes=chief
    )
    start_step = resume.restore() if resuming else 0
    if start_step >= steps:
        logging.info("The run already reached step %d of %d.", start_step, steps)
        return {"step": start_step}
    logging.info("%s", start_line(config, data, steps, start_step, strategy))

    train_data, validation_data = distributed_datasets(config, data, strategy, start_step)
    stop_guard = run_callbacks.StopOnNonFiniteLoss()
    callbacks = [
        run_callbacks.ValidationEvaluator(validation_data, steps=config.eval_steps),
        stop_guard,
        *run_callbacks_of(config, trainer, data, steps, strategy, run),
        resume,
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
    final["step"] = int(trainer.optimizer.iterations.numpy())
    return final


def start_line(
    config: TrainConfig,
    data: TrainingData,
    steps: int,
    start_step: int,
    strategy: tf.distribute.Strategy,
) -> str:
    return progress.start_line(
        steps=steps,
        start_step=start_step,
        steps_per_epoch=data.steps_per_epoch,
        dataset=config.dataset,
        split=config.train_split,
        batch_size=config.batch_size,
        replicas=strategy.num_replicas_in_sync,
    )


def distributed_datasets(
    config: TrainConfig, data: TrainingData, strategy: tf.distribute.Strategy, start_step: int
) -> tuple[tf.distribute.DistributedDataset, tf.distribute.DistributedDataset]:
    """The training stream from `start_step` on, and the validation split; every host builds
    the input of its own replicas only."""
    train_data = distribute(
        strategy,
        functools.partial(
            pipeline.make_training_dataset,
            data.builder,
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
            data.builder,
            config.batch_size,
            split=config.validation_split,
        ),
    )
    return train_data, validation_data


def run_callbacks_of(
    config: TrainConfig,
    trainer: CausalLMTrainer,
    data: TrainingData,
    steps: int,
    strategy: tf.distribute.Strategy,
    run: RunDirectory,
) -> list[keras.callbacks.Callback]:
    """Throughput, the stop, progress, and on the chief the logs and presets."""
    callbacks = [
        run_callbacks.Throughput(
            config.batch_size * data.sequence_length,
            run_callbacks.flops_per_token(trainer.causal_lm.backbone, data.sequence_length),
            run_callbacks.peak_flops(config.peak_tflops, config.mixed_precision, strategy),
        ),
        run_callbacks.StopAtStep(steps),
        progress.StepProgress(steps, verbose=config.verbose),
    ]
    if is_chief(strategy):  # the other workers compute the same values; one writes them
        callbacks += [
            run_callbacks.StepLogger(run.logs, config.log_every),
            run_callbacks.PresetCheckpoints(run, trainer.causal_lm),
        ]
    return callbacks
