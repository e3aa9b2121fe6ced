"""Choosing the accelerator: a `tf.distribute` strategy to train under, a device to sample on."""

from __future__ import annotations

import glob
import json
import os
import socket
from collections.abc import Callable

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "cpu")
# Sampling needs no collectives: each host of a TF_CONFIG cluster samples its share on the
# replicas of its own devices.
SAMPLING_STRATEGIES = ("auto", "tpu", "mirrored", "cpu")


class AcceleratorError(RuntimeError):
    """The accelerator asked for cannot be used."""


def make_strategy(
    kind: str = "auto", tpu: str = "", multi_worker: bool = True
) -> tf.distribute.Strategy:
    """Returns the strategy for `kind`.

    `auto` picks, in order: a TPU that a `TPUClusterResolver` finds, MultiWorkerMirrored when
    `TF_CONFIG` names several workers (unless `multi_worker` is False), Mirrored over several
    GPUs, else the default strategy. A `tpu` that cannot be reached is an error, never a
    fallback to the CPU.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown strategy {kind!r}; use one of {STRATEGIES}.")
    if kind == "tpu" or (kind == "auto" and (tpu or _tpu_environment())):
        return _tpu_strategy(tpu, required=kind == "tpu")
    if kind == "multi_worker" or (kind == "auto" and multi_worker and worker_count() > 1):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" and not gpus:
        # The host CPU split into logical devices (`split_host_cpu`): one replica each.
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def sampling_strategy(kind: str = "auto", tpu: str = "") -> tf.distribute.Strategy:
    """The strategy evaluation samples under: every replica of `kind` on this host (a TPU's
    cores, the GPUs, the logical CPUs under `mirrored`), or the CPU alone for `cpu`.

    Never multi-worker: sampling needs no collectives, so the hosts of a `TF_CONFIG` cluster
    each sample their own share (`host_of_cluster`) on their own devices.
    """
    if kind not in SAMPLING_STRATEGIES:
        raise ValueError(
            f"Unknown strategy {kind!r} for sampling; use one of {SAMPLING_STRATEGIES}."
        )
    if kind == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    return make_strategy(kind, tpu, multi_worker=False)


def split_host_cpu(count: int) -> None:
    """Splits the host CPU into `count` logical devices, so that `mirrored` has `count`
    replicas on any machine (each a share of the same cores: for checking the multi-replica
    paths, not for speed). Must run before TensorFlow starts its devices.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise AcceleratorError(
            f"Cannot split the CPU into {count} devices: TensorFlow has already started its "
            "devices. Pass --cpu_devices on the command line, which applies it first."
        ) from error


def host_of_cluster() -> tuple[int, int]:
    """(this host's index, the number of hosts) of the `TF_CONFIG` cluster: the chief first,
    then the workers; (0, 1) without one."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    chiefs = len(config.get("cluster", {}).get("chief", []))
    hosts = max(worker_count(), 1)
    if task.get("type") == "worker":
        return chiefs + int(task.get("index", 0)), hosts
    return 0, hosts


def _tpu_attached() -> bool:
    """A TPU on this VM: `/dev/accel*` (v2-v4) or VFIO devices (v5e and later)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def _tpu_environment() -> bool:
    return bool(os.environ.get("TPU_NAME")) or _tpu_attached()


def worker_count() -> int:
    """Processes of the `TF_CONFIG` cluster that train: its chief and its workers."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def _tpu_strategy(tpu: str, required: bool):
    try:
        _check_reachable(tpu)
        # On a TPU VM with no TPU_NAME, the resolver needs "local" to use the VM's own TPU.
        local = "local" if not os.environ.get("TPU_NAME") and _tpu_attached() else None
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or local)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    # A TPU name is looked up on the GCE metadata server: off GCE that fails with an OSError.
    except (ValueError, OSError, tf.errors.OpError) as error:
        if required or tpu:
            raise AcceleratorError(
                f"Cannot reach TPU {tpu or '(local)'}: {str(error).rstrip('.')}. Check --tpu "
                "(a TPU name or grpc://host:port) and that this VM may use it; on a TPU VM, "
                "install TensorFlow with TPU support (`make install-tpu`)."
            ) from error
        logging.warning(
            "A TPU seems attached but TensorFlow cannot use it (%s); running without it. "
            "Install TensorFlow with TPU support (`make install-tpu`) or pass --strategy.",
            error,
        )
        return make_strategy(
            "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "cpu"
        )
    return tf.distribute.TPUStrategy(resolver)


def _check_reachable(tpu: str, timeout_s: float = 10.0) -> None:
    """Fails fast on a grpc:// address nothing listens at; TensorFlow would wait forever."""
    if not tpu.startswith("grpc://"):
        return
    host, _, port = tpu[len("grpc://") :].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except ValueError as error:
        raise ValueError(f"{tpu} is not a grpc://host:port address.") from error
    except OSError as error:
        raise OSError(f"nothing answers at {tpu} ({error})") from error


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True in the one process of a job that writes its outputs.

    A multi-worker job runs the same program in every worker; all of them compute, but
    only the chief (the `chief` task, else worker 0) writes logs, presets and checkpoints.
    A TPU job has a single client process, so it is its own chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def distribute(
    strategy: tf.distribute.Strategy, make_dataset: Callable[..., tf.data.Dataset]
) -> tf.data.Dataset | tf.distribute.DistributedDataset:
    """`make_dataset(input_context=...)` built by every input pipeline (one per host) for
    its own replicas; a single replica gets `make_dataset()` itself."""
    if strategy.num_replicas_in_sync == 1 and not is_tpu(strategy):
        return make_dataset()
    return strategy.distribute_datasets_from_function(
        lambda context: make_dataset(input_context=context)
    )


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)
