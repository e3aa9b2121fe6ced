"""Test-wide settings: the TensorFlow backend, quiet logs, two logical CPU devices."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import tensorflow as tf  # noqa: E402

# Two logical CPUs let MirroredStrategy tests run replicas on a machine without GPUs. This must
# happen before TensorFlow initializes its devices, so it is done here, at collection.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
