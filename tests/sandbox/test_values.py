"""Plain values from a program's process to its test's (no processes involved)."""

from __future__ import annotations

import json
import math

import pytest

from neo_keras.evaluation.sandbox import values

PLAIN = [
    None,
    True,
    False,
    0,
    -7,
    2**200,
    -(2**4000),
    0.1,
    -0.0,
    math.inf,
    1 + 2j,
    "text é",
    b"\x00\xff",
    [1, [2, (3,)]],
    (1, "a", None),
    {1, "b"},
    frozenset({2.5}),
    {"a": [1, 2], 3: (4,), (5, 6): {7}},
    [],
    (),
    {},
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_arrive_equal_and_of_the_same_type(value):
    decoded = values.decode(values.encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_nan_survives():
    assert math.isnan(values.decode(values.encode(math.nan)))


def test_subclasses_arrive_as_their_base_type():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    decoded = values.decode(values.encode([Liar(3)]))
    assert decoded == [3]
    assert type(decoded[0]) is int
    assert decoded != [4]


@pytest.mark.parametrize(
    "value", [object(), lambda: 1, iter([1]), [1, object()], {"k": print}], ids=repr
)
def test_anything_else_is_refused(value):
    with pytest.raises(values.UnsupportedValueError):
        values.encode(value)


def test_too_deep_is_refused():
    deep: list = []
    for _ in range(values.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(values.UnsupportedValueError):
        values.encode(deep)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'["x", 1]',
        b'["i", 5]',
        b'["d", [[1]]]',
        b'["S", [["l", []]]]',
        b"[" * 100000,
        json.dumps(["l", [["n", None]] * 2 + [["q", 1]]]).encode(),
    ],
)
def test_hostile_bytes_fail_to_decode_and_build_nothing(data):
    with pytest.raises(ValueError):
        values.decode(data)
