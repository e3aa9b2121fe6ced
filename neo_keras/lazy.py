"""Packages whose public names are imported when first read, so that importing the package
costs nothing: `import neo_keras` loads neither TensorFlow nor Keras."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_names(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """The `__getattr__` and `__dir__` of `package` (its `__name__`).

    `names` maps each public name to the module defining it, absolute or relative to
    `package`; that module is imported when the name is first read.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        namespace[name] = value  # later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *names])

    return __getattr__, __dir__
