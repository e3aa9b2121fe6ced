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
        accelerators.sampling_strategy(kind if kind != "auto" else "tpu", tpu)


def test_without_an_accelerator_placement_is_left_to_tensorflow():
    tf = accelerators.tf
    assert accelerators.make_strategy("cpu") is tf.distribute.get_strategy()
    assert accelerators.sampling_strategy("auto") is tf.distribute.get_strategy()
    assert accelerators.sampling_strategy("cpu").extended.worker_devices == (
        "/job:localhost/replica:0/task:0/device:CPU:0",
    )


def test_mirrored_without_gpus_has_a_replica_per_logical_cpu():
    # tests/conftest.py splits the CPU in two, as --cpu_devices=2 does.
    assert accelerators.sampling_strategy("mirrored").num_replicas_in_sync == 2
    accelerators.split_host_cpu(2)  # already so: nothing to do
    with pytest.raises(accelerators.AcceleratorError, match="--cpu_devices"):
        accelerators.split_host_cpu(3)


@pytest.mark.parametrize(
    "task, expected",
    [
        ({"type": "chief", "index": 0}, (0, 3)),
        ({"type": "worker", "index": 0}, (1, 3)),
        ({"type": "worker", "index": 1}, (2, 3)),
    ],
)
def test_hosts_of_a_cluster_are_numbered_chief_first(monkeypatch, task, expected):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert accelerators.host_of_cluster() == expected
    monkeypatch.delenv("TF_CONFIG")
    assert accelerators.host_of_cluster() == (0, 1)


def test_sampling_has_no_multi_worker_strategy():
    with pytest.raises(ValueError, match="for sampling; use one of"):
        accelerators.sampling_strategy("multi_worker")
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        accelerators.make_strategy("gpu")


def test_a_cluster_counts_its_chief_among_the_workers(monkeypatch):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {}}))
    assert accelerators.worker_count() == 2
    monkeypatch.setenv("TF_CONFIG", "")
    assert accelerators.worker_count() == 0
