"""`import neo_keras` and the parts that need no model load neither TensorFlow nor Keras."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "neo_keras",
    "neo_keras.make_corpus",
    "neo_keras.data.corpus_maker",
    "neo_keras.data.corpus_format",
    "neo_keras.data.apps",
    "neo_keras.data.code_search_net",
    "neo_keras.evaluation.pass_at_k",
    "neo_keras.evaluation.scoring",
    "neo_keras.evaluation.humaneval",
    "neo_keras.evaluation.apps",
    "neo_keras.evaluation.sandbox",
]


def heavy_modules_after(code: str) -> list[str]:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport json, sys\n"
            "print(json.dumps(sorted({'tensorflow', 'keras', 'torch'} & set(sys.modules))))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(shown.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_importing_loads_no_framework(module):
    assert heavy_modules_after(f"import {module}") == []


def test_the_model_classes_load_on_first_use():
    assert heavy_modules_after(
        "import neo_keras\nassert neo_keras.GPTNeoCausalLM.__name__ == 'GPTNeoCausalLM'"
    ) == ["keras", "tensorflow"]
