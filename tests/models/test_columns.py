"""Which decoding steps take the rows as columns (`columns.suits`)."""

from __future__ import annotations

import numpy as np
import pytest

from neo_keras import GPTNeoBackbone, GPTNeoCausalLM
from neo_keras.models.gpt_neo import columns, presets


def test_avx512_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    assert not columns._may_have_avx512.__wrapped__(str(cpuinfo))
    cpuinfo.write_text("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n")
    assert columns._may_have_avx512.__wrapped__(str(cpuinfo))
    # Flags that cannot be read: the row counts measured faster on either kind of CPU.
    assert columns._may_have_avx512.__wrapped__(str(tmp_path / "absent"))


@pytest.mark.parametrize(
    ("avx512", "expected"),
    [(False, {1: True, 16: True, 20: True, 32: True}), (True, {1: False, 16: True, 20: False})],
    ids=["avx2", "avx512"],
)
def test_rows_take_the_column_form_where_it_measured_faster(monkeypatch, avx512, expected):
    monkeypatch.setattr(columns, "_may_have_avx512", lambda: avx512)
    assert {rows: columns.suits(rows) for rows in expected} == expected
    assert not columns.suits(None)  # a row count known only at run time


def test_the_kernels_copies_need_half_the_memory_still_available(monkeypatch):
    monkeypatch.setattr(columns, "_may_have_avx512", lambda: False)
    monkeypatch.setattr(columns, "_available_memory", lambda: 10e9)
    assert columns.suits(32, kernel_bytes=int(4.8e9))
    assert not columns.suits(32, kernel_bytes=int(5.2e9))  # the row form holds no copies


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   18000000 kB\n")
    assert columns._available_memory(str(meminfo)) == 18000000 * 1024
    assert columns._available_memory(str(tmp_path / "absent")) == float("inf")


def test_kernels_size_counts_the_copies_decoding_holds():
    model = GPTNeoCausalLM(GPTNeoBackbone(**presets.backbone_config("gpt_neo_tiny")))
    layers = model.backbone.transformer_layers
    held = sum(
        int(np.prod(kernel.shape)) * 4 for layer in layers for kernel in columns.kernels(layer)
    )
    assert columns.kernels_size(layers) == held
