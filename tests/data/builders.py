"""Importing the TFDS builders under data_builders/ the way `tfds build` and pytest name them."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from tests.data.fixtures import BUILDERS


def builder_module(name: str) -> ModuleType:
    """`<name>.<name>_dataset_builder`, with data_builders/ on the import path."""
    if str(BUILDERS) not in sys.path:
        sys.path.insert(0, str(BUILDERS))
    return importlib.import_module(f"{name}.{name}_dataset_builder")
