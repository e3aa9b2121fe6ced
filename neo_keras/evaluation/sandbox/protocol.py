"""Length-prefixed messages: pickled between the evaluator and its workers, raw bytes
between a program and its test.

Pickles pass only between the sandbox's own processes (samples never hold those pipes)
or towards a program, never from one.
"""

from __future__ import annotations

import os
import pickle
import struct

_HEADER = struct.Struct("!Q")


class OversizedMessageError(ValueError):
    """A message longer than the reader accepts."""


def send_bytes(fd: int, payload: bytes) -> None:
    """Writes one message, all of it."""
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def receive_bytes(fd: int, max_bytes: int | None = None) -> bytes | None:
    """Reads one message; None when the other end closed the pipe."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if max_bytes is not None and size > max_bytes:
        raise OversizedMessageError(f"a message of {size} bytes (at most {max_bytes} accepted)")
    return _read_exactly(fd, size)


def send(fd: int, message: object) -> None:
    """Pickles and writes one message."""
    send_bytes(fd, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def receive(fd: int) -> object | None:
    """Reads and unpickles one message from the sandbox's own code; None at end of file."""
    payload = receive_bytes(fd)
    return None if payload is None else pickle.loads(payload)
