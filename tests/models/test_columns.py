"""Which decoding steps take the rows as columns (`columns.suits`)."""

from __future__ import annotations

import pytest

from neo_keras.models.gpt_neo import columns


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
