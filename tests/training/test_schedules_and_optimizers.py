"""Learning-rate schedules against their formulas, where weight decay applies, and Adafactor
against Keras' own."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
from neo_keras.training.optimizers import FactoredAdafactor, make_optimizer
from neo_keras.training.schedules import WarmupCosine, WarmupLinear


def rate(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize("step", [0, 1, 2000, 3999, 4000, 4001, 20000, 54000, 60000])
def test_warmup_cosine_follows_its_formula(step):
    peak, end, warmup, decay = 5e-5, 5e-6, 4000, 50000
    schedule = WarmupCosine(peak, warmup_steps=warmup, decay_steps=decay, end=end)
    if step < warmup:
        expected = peak * step / warmup
    else:
        progress = min((step - warmup) / decay, 1.0)
        expected = end + 0.5 * (peak - end) * (1 + math.cos(math.pi * progress))
    assert rate(schedule, step) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_warmup_cosine_key_points():
    schedule = WarmupCosine(5e-5, warmup_steps=4000, decay_steps=50000, end=5e-6)
    assert rate(schedule, 0) == 0.0
    assert rate(schedule, 4000) == pytest.approx(5e-5)
    assert rate(schedule, 29000) == pytest.approx((5e-5 + 5e-6) / 2)
    assert rate(schedule, 54000) == pytest.approx(5e-6)
    assert rate(schedule, 100000) == pytest.approx(5e-6)


@pytest.mark.parametrize("step", [0, 400, 800, 801, 5000, 9999, 10000, 12000])
def test_warmup_linear_follows_its_formula(step):
    peak, warmup, total = 5e-5, 800, 10000
    schedule = WarmupLinear(peak, warmup_steps=warmup, total_steps=total)
    if step < warmup:
        expected = peak * step / warmup
    else:
        expected = peak * max(total - step, 0) / (total - warmup)
    assert rate(schedule, step) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_schedules_round_trip_through_their_config():
    for schedule in (WarmupCosine(1e-3, 10, 100, 1e-4), WarmupLinear(1e-3, 10, 100)):
        restored = type(schedule).from_config(schedule.get_config())
        assert [rate(restored, s) for s in (0, 5, 50, 200)] == [
            rate(schedule, s) for s in (0, 5, 50, 200)
        ]


def test_linear_schedule_refuses_warmup_past_the_end():
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        WarmupLinear(1e-3, warmup_steps=100, total_steps=100)


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_weight_decay_spares_biases_layer_norms_and_embeddings(name):
    backbone = GPTNeoBackbone(
        vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8, max_sequence_length=8
    )
    model = GPTNeoCausalLM(backbone)
    for variable in model.trainable_variables:  # non-zero everywhere, so decay would show
        variable.assign(np.ones(variable.shape, "float32"))
    optimizer = make_optimizer(name, learning_rate=0.1, weight_decay=0.5)
    zeros = [keras.ops.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    for variable in model.trainable_variables:
        decayed = not np.allclose(variable.numpy(), 1.0)
        spared = any(part in variable.path for part in ("bias", "gamma", "beta", "embeddings"))
        assert decayed != spared, variable.path


def adafactor_run(optimizer, steps: int = 4) -> tuple[list[np.ndarray], int]:
    """Weights after `steps` updates of a matrix, a rank-3 tensor and a vector; slot values."""
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
    optimizer.build(variables)
    for step in range(steps):
        gradients = [
            np.random.default_rng(step).normal(size=v.shape).astype("float32") for v in variables
        ]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
    own = ("iteration", "learning_rate")
    slots = sum(int(np.size(v.numpy())) for v in optimizer.variables if v.name not in own)
    return [v.numpy() for v in variables], slots


SHAPES = [(6, 5), (3, 4, 2), (5,)]


@pytest.mark.parametrize(
    "settings",
    [
        {"learning_rate": 0.01},
        {"learning_rate": 0.01, "weight_decay": 0.1, "clip_threshold": 0.5},
        {"learning_rate": keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)},
        {"learning_rate": 0.5, "relative_step": False, "epsilon_2": 0.1},
    ],
    ids=["constant", "decay_and_clipping", "schedule", "absolute_step"],
)
def test_factored_adafactor_updates_as_keras_does_without_full_size_moments(settings):
    expected, keras_slots = adafactor_run(keras.optimizers.Adafactor(**settings))
    updated, factored_slots = adafactor_run(FactoredAdafactor(**settings))
    for a, b in zip(expected, updated, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    factors, vector = (6 + 5) + (3 * 4 + 3 * 2), 5
    assert factored_slots == factors + vector
    # Keras keeps a full-size velocity beside every matrix's factors (and two placeholder
    # scalars beside the vector's velocity).
    assert keras_slots == factored_slots + 6 * 5 + 3 * 4 * 2 + 2
