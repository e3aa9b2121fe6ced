"""Which accelerator a run gets, and the errors when the one asked for cannot be used."""

from __future__ import annotations

import json

import pytest

from neo_keras import accelerators

CLOSED_PORT = "grpc://127.0.0.1:1"


@pytest.mark.parametrize(
    "kind, tpu, reason",
    [
        ("auto", CLOSED_PORT, f"nothing answers at {CLOSED_PORT}"),
        ("tpu", CLOSED_PORT, f"nothing answers at {CLOSED_PORT}"),
        ("auto", "grpc://127.0.0.1:port", "not a grpc://host:port address"),
        # Off Google Cloud, a TPU name cannot be looked up.
        ("auto", "no-such-tpu", "Cannot reach TPU no-such-tpu"),
        ("tpu", "", r"Cannot reach TPU \(local\)"),
    ],
)
def test_a_tpu_that_cannot_be_used_is_an_error_not_a_fallback(kind, tpu, reason):
    with pytest.raises(accelerators.AcceleratorError, match=reason) as raised:
        accelerators.make_strategy(kind, tpu)
    assert "--tpu" in str(raised.value)
    with pytest.raises(accelerators.AcceleratorError, match=reason):
        accelerators.sampling_device(kind if kind != "auto" else "tpu", tpu)


def test_without_an_accelerator_placement_is_left_to_tensorflow():
    assert accelerators.make_strategy("cpu") is accelerators.tf.distribute.get_strategy()
    assert accelerators.sampling_device("auto") is None
    assert accelerators.sampling_device("cpu") == "/CPU:0"


def test_sampling_has_no_multi_worker_strategy():
    with pytest.raises(ValueError, match="for sampling; use one of"):
        accelerators.sampling_device("multi_worker")
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        accelerators.make_strategy("gpu")


def test_a_cluster_counts_its_chief_among_the_workers(monkeypatch):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {}}))
    assert accelerators.worker_count() == 2
    monkeypatch.setenv("TF_CONFIG", "")
    assert accelerators.worker_count() == 0
