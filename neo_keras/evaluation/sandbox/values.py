"""Plain values across the boundary between a program's process and its test's process.

What a program returns reaches its test as data, never as an object of the program's
making: None, bools, ints, floats, complex numbers, strings, bytes, and lists, tuples,
sets, frozensets and dicts of them. Subclasses arrive as their base type (an int
subclass with a forged `__eq__` compares as the int it holds). Anything else cannot
leave the program's process, so an object that claims to equal everything is refused
rather than trusted. Decoding builds only those types, so hostile bytes can at worst
fail to decode.
"""

from __future__ import annotations

import json

MAX_DEPTH = 100


class UnsupportedValueError(TypeError):
    """The value holds something other than the plain types above."""


_ATOMS = (
    # (type, tag, encode); bool before int, since bools are ints.
    (bool, "b", bool),
    (int, "i", lambda v: format(int(v), "x")),  # hex: no digit limit on the way back
    (float, "f", lambda v: float(v).hex()),
    (complex, "c", lambda v: [float(v.real).hex(), float(v.imag).hex()]),
    (str, "s", str),
    (bytes, "y", lambda v: bytes(v).hex()),
)
_SEQUENCES = ((list, "l"), (tuple, "t"), (frozenset, "F"), (set, "S"))


def _tagged(value: object, depth: int) -> list:
    if depth > MAX_DEPTH:
        raise UnsupportedValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        return ["n", None]
    for kind, tag, encode in _ATOMS:
        if isinstance(value, kind):
            return [tag, encode(value)]
    for kind, tag in _SEQUENCES:
        if isinstance(value, kind):
            return [tag, [_tagged(item, depth + 1) for item in value]]
    if isinstance(value, dict):
        pairs = [[_tagged(k, depth + 1), _tagged(v, depth + 1)] for k, v in value.items()]
        return ["d", pairs]
    raise UnsupportedValueError(f"a {type(value).__qualname__}")


def encode(value: object) -> bytes:
    """The value as bytes; raises UnsupportedValueError for anything but plain data."""
    return json.dumps(_tagged(value, 0), separators=(",", ":")).encode()


def _atom(tag: str, payload: object) -> object:
    if tag == "n" and payload is None:
        return None
    if tag == "b" and isinstance(payload, bool):
        return payload
    if tag == "i" and isinstance(payload, str):
        return int(payload, 16)
    if tag == "f" and isinstance(payload, str):
        return float.fromhex(payload)
    if tag == "c" and isinstance(payload, list) and len(payload) == 2:
        return complex(float.fromhex(payload[0]), float.fromhex(payload[1]))
    if tag == "s" and isinstance(payload, str):
        return payload
    if tag == "y" and isinstance(payload, str):
        return bytes.fromhex(payload)
    raise ValueError(f"not a value: {tag!r}")


_BUILDERS = {"l": list, "t": tuple, "F": frozenset, "S": set}


def _value(node: object, depth: int) -> object:
    if depth > MAX_DEPTH or not (isinstance(node, list) and len(node) == 2):
        raise ValueError("malformed value")
    tag, payload = node
    if tag in _BUILDERS and isinstance(payload, list):
        return _BUILDERS[tag](_value(item, depth + 1) for item in payload)
    if tag == "d" and isinstance(payload, list):
        return dict(_pair(pair, depth + 1) for pair in payload)
    return _atom(tag, payload)


def _pair(node: object, depth: int) -> tuple[object, object]:
    if not (isinstance(node, list) and len(node) == 2):
        raise ValueError("malformed dict item")
    return _value(node[0], depth), _value(node[1], depth)


def decode(data: bytes) -> object:
    """The value `encode` wrote; raises ValueError for anything else."""
    try:
        return _value(json.loads(data), 0)
    except (ValueError, TypeError, RecursionError, AttributeError) as error:
        raise ValueError(f"the program sent an undecodable value ({error})") from None
