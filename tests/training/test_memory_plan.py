"""The memory plan: its counts against the model and optimizers, its peaks against the CPU's
allocator, the accelerators it knows, and its command line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neo_keras.models.gpt_neo import presets
from neo_keras.training.config import TrainConfig
from neo_keras.training.memory_plan import (
    GIB,
    accelerator,
    memory_plan_of,
    optimizer_state_count,
    parameter_count,
)

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 0.15

# Sizes for the measured steps: the tiny model with a small vocabulary, whose peak is its
# activations or logits (or, on longer sequences, a recomputed block's attention scores),
# and a wider one whose weights outweigh its activations.
SIZES = {
    "plan_tiny": {**presets.backbone_config("gpt_neo_tiny"), "vocabulary_size": 8000},
    "plan_long": {
        **presets.backbone_config("gpt_neo_tiny"),
        "vocabulary_size": 8000,
        "max_sequence_length": 1024,
    },
    "plan_wide": {
        **presets.backbone_config("gpt_neo_tiny"),
        "num_heads": 8,
        "hidden_dim": 512,
        "vocabulary_size": 32000,
        "max_sequence_length": 256,
    },
}
TINY = {"model_size": "plan_tiny", "batch_size": 4}
WIDE = {"model_size": "plan_wide", "batch_size": 1, "remat": True, "loss_chunk_size": 128}
# name: (TrainConfig fields, sequence length)
VARIANTS = {
    "whole logits": (TINY, 512),
    "loss chunks": ({**TINY, "loss_chunk_size": 128}, 512),
    "remat": ({**TINY, "remat": True}, 512),
    "remat and chunks": ({**TINY, "remat": True, "loss_chunk_size": 128}, 512),
    "remat, long sequences": (
        {"model_size": "plan_long", "batch_size": 2, "remat": True, "loss_chunk_size": 128},
        1024,
    ),
    "micro-batches": (
        {**TINY, "batch_size": 8, "micro_batch_size": 2, "loss_chunk_size": 128},
        512,
    ),
    "adafactor": ({**TINY, "optimizer": "adafactor", "loss_chunk_size": 128}, 512),
    "weights outweigh activations": (WIDE, 256),
    "adafactor, weights outweigh activations": ({**WIDE, "optimizer": "adafactor"}, 256),
}


def variant_config(fields: dict) -> TrainConfig:
    return TrainConfig(output_dir="unused", dataset="unused", clip_norm=1.0, **fields)


def measure_variants() -> None:
    """In a child process: measures every variant's step, prints {name: StepMemory}."""
    from neo_keras.training import step_memory
    from neo_keras.training.run import build_trainer

    presets.BACKBONE_CONFIGS.update(SIZES)
    step_memory.reserve_arena(2)
    results = {}
    for name, (fields, length) in VARIANTS.items():
        config = variant_config(fields)
        measured = step_memory.measure_train_step(
            lambda config=config: build_trainer(config, steps=1), config.batch_size, length
        )
        results[name] = dataclasses.asdict(measured)
    print(json.dumps(results))


@pytest.fixture(scope="module")
def measured() -> dict:
    environment = {
        **os.environ,
        "TF_CPU_ALLOCATOR_USE_BFC": "true",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO),
    }
    child = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, env=environment, timeout=900
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def plan_of(name: str):
    fields, length = VARIANTS[name]
    config = variant_config(fields)
    return memory_plan_of(config, SIZES[config.model_size], length, replicas=1)


@pytest.mark.parametrize("name", VARIANTS)
def test_the_plan_is_within_15_percent_of_the_measured_peak(measured, name):
    plan, peak = plan_of(name), measured[name]["peak"]
    print(
        f"{name}: plan {plan.peak / 2**20:.1f} MiB at the {plan.peak_moment}, "
        f"measured {peak / 2**20:.1f} MiB"
    )
    assert abs(plan.peak / peak - 1) < TOLERANCE, (name, plan.peak / 2**20, peak / 2**20)
    assert abs(plan.resident / measured[name]["resident"] - 1) < TOLERANCE


def test_the_variants_peak_at_every_moment_of_the_step():
    # Else the check above would not reach every term of the plan.
    moments = {plan_of(name).peak_moment for name in VARIANTS}
    assert moments == {
        "end of the forward pass",
        "end of the backward pass",
        "backward pass of attention",
    }


def test_savers_lower_the_plan_as_they_lower_the_measured_peak(measured):
    for saver in ("loss chunks", "remat", "micro-batches"):
        assert plan_of(saver).peak < plan_of("whole logits").peak
        assert measured[saver]["peak"] < measured["whole logits"]["peak"]


@pytest.mark.parametrize(
    "config",
    [
        presets.backbone_config("gpt_neo_tiny"),
        presets.backbone_config(
            "gpt_neo_tiny", intermediate_dim=200, attention_types=["global"] * 4
        ),
    ],
    ids=["tiny", "narrow_mlp_all_global"],
)
def test_counts_are_those_of_the_model_and_its_optimizers(config):
    from neo_keras import GPTNeoBackbone
    from neo_keras.training.optimizers import make_optimizer

    backbone = GPTNeoBackbone(**config)
    assert parameter_count(config) == backbone.count_params()
    for name in ("adamw", "adafactor"):
        optimizer = make_optimizer(name, 1e-3)
        optimizer.build(backbone.trainable_variables)
        # Beside the slots each optimizer keeps a step count (and AdamW its learning rate).
        slots = [v for v in optimizer.variables if v.name not in ("iteration", "learning_rate")]
        assert optimizer_state_count(config, name) == sum(int(v.numpy().size) for v in slots), name


@pytest.mark.parametrize(
    "name, replicas, gib",
    [
        ("v2-8", 8, 8),
        ("v3-32", 32, 16),
        ("v4-8", 4, 32),
        ("v5p-16", 8, 95),
        ("v5litepod-4", 4, 16),
        ("v6e-8", 8, 32),
        ("8xa100-80gb", 8, 80),
        ("h100-80gb", 1, 80),
        (" V3-8 ", 8, 16),
    ],
)
def test_accelerators_name_their_replicas_and_memory(name, replicas, gib):
    hardware = accelerator(name)
    assert (hardware.replicas, hardware.replica_bytes) == (replicas, gib * GIB)


@pytest.mark.parametrize("name", ["v9-8", "v3", "v3-0", "v4-1", "0xa100-80gb", "a100"])
def test_an_unknown_accelerator_names_the_known_ones(name):
    with pytest.raises(ValueError, match="v3-N.*a100-80gb"):
        accelerator(name)


def test_the_plan_reads_the_shape_of_a_checkpoint_it_starts_from(tmp_path):
    from neo_keras import GPTNeoCausalLM
    from neo_keras.memory_plan import backbone_config_of
    from neo_keras.training.run import build_causal_lm
    from tests.models.hf_fixtures import make_hf_checkpoint, train_tokenizer

    hf_model = make_hf_checkpoint(str(tmp_path / "hf"), intermediate_size=48)
    keras_preset = str(tmp_path / "keras")
    GPTNeoCausalLM.from_preset(str(tmp_path / "hf")).save_to_preset(keras_preset)
    tokenizer_dir = str(tmp_path / "tokenizer")
    train_tokenizer(tokenizer_dir, vocab_size=280)
    scratch = TrainConfig(
        output_dir="unused", dataset="unused", model_size="gpt_neo_tiny", tokenizer=tokenizer_dir
    )
    built = build_causal_lm(scratch).backbone.vocabulary_size
    assert backbone_config_of(scratch)["vocabulary_size"] == built < 50257
    for init in (str(tmp_path / "hf"), keras_preset):
        read = backbone_config_of(TrainConfig(output_dir="unused", dataset="unused", init=init))
        assert parameter_count(read) == hf_model.num_parameters(), init
    with pytest.raises(ValueError, match="named size"):
        backbone_config_of(
            TrainConfig(output_dir="unused", dataset="unused", init="hf://someone/model")
        )


def run_memory_plan(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neo_keras.memory_plan", *flags],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_the_command_line_prints_the_plan_and_fails_when_it_may_not_fit():
    fitting = run_memory_plan("--flagfile=configs/apps_1.3b.flags")
    assert fitting.returncode == 0, fitting.stderr[-2000:]
    assert "gpt_neo_1.3b: 1 x 1024 tokens per replica" in fitting.stdout
    for row in ("weights", "optimizer state", "gradients", "activations", "logits", "step peak"):
        assert row in fitting.stdout
    assert "v3-8 (8 x 16 GiB)" in fitting.stdout

    too_big = run_memory_plan(
        "--flagfile=configs/codeclippy.flags",
        "--noremat",
        "--loss_chunk_size=0",
        "--micro_batch_size=8",
    )
    assert too_big.returncode == 1
    assert "may not fit" in too_big.stdout

    unplannable = run_memory_plan("--flagfile=configs/demo.flags", "--accelerator=v3-32")
    assert unplannable.returncode == 2
    assert "does not split evenly over 32 replicas" in unplannable.stderr


if __name__ == "__main__":
    measure_variants()
