"""Length-prefixed pickled messages between the evaluator and its sandbox workers.

Both ends are the sandbox's own code; samples never hold these pipes.
"""

from __future__ import annotations

import os
import pickle
import struct

_HEADER = struct.Struct("!Q")


def send(fd: int, message: object) -> None:
    """Writes one message, all of it."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def receive(fd: int) -> object | None:
    """Reads one message; None when the other end closed the pipe."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    payload = _read_exactly(fd, size)
    if payload is None:
        return None
    return pickle.loads(payload)
