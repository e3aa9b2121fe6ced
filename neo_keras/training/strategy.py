"""Choosing and starting a `tf.distribute` strategy."""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "cpu")


def make_strategy(kind: str = "auto", tpu: str = "") -> tf.distribute.Strategy:
    """Returns the strategy for `kind`.

    `auto` picks, in order: a TPU that a `TPUClusterResolver` finds, MultiWorkerMirrored when
    `TF_CONFIG` names several workers, Mirrored over several GPUs, else the default strategy.
    """
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown strategy {kind!r}; use one of {STRATEGIES}.")
    if kind == "tpu" or (kind == "auto" and (tpu or _tpu_environment())):
        return _tpu_strategy(tpu, required=kind == "tpu")
    if kind == "multi_worker" or (kind == "auto" and _worker_count() > 1):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tpu_environment() -> bool:
    return bool(os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0"))


def _worker_count() -> int:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return len(config.get("cluster", {}).get("worker", []))


def _tpu_strategy(tpu: str, required: bool):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        if required or tpu:
            raise RuntimeError(
                f"Cannot reach TPU {tpu or '(local)'}: {error}. Check --tpu (a TPU name or "
                "grpc://host:port) and that this VM may use it."
            ) from error
        logging.info("No TPU found (%s); falling back.", error)
        return make_strategy(
            "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "cpu"
        )
    return tf.distribute.TPUStrategy(resolver)


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.TPUStrategy)
