"""A job as its sample reads it: a read-only file that only the sample's processes hold.

The worker writes the job to a memory file; the template that forks samples passes the
descriptor on without reading it, so no process that outlives a sample ever holds a
job's code in the memory that later samples inherit. The program and the test are
separate parts read at their offsets: the harness forks the program's process before it
reads the test, and the program's process closes the file once it has its program.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

from . import job as job_module

_LENGTH = struct.Struct("!I")


@dataclasses.dataclass(frozen=True)
class Part:
    """Where one text of the job lies in the file."""

    offset: int
    size: int


@dataclasses.dataclass(frozen=True)
class Header:
    """What a sample needs before it reads any code."""

    token: str
    module_name: str
    entry_point: str | None
    clean_exit_passes: bool
    program: Part
    test: Part | None


def read_only_memory_file(data: bytes) -> int:
    """A read-only descriptor of an anonymous file holding `data` (/dev/null if empty)."""
    if not data:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    memory = os.memfd_create("sandbox-data", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(memory, view) :]
        # Reopened read-only so that the sample cannot alter what it reads.
        return os.open(f"/proc/self/fd/{memory}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(memory)


def write(job: job_module.Job, token: str) -> int:
    """The job's file, as a read-only descriptor."""
    program = job.program.encode("utf-8", "surrogatepass")
    test = None if job.test is None else job.test.encode("utf-8", "surrogatepass")
    fields = {
        "token": token,
        "module_name": job.module_name,
        "entry_point": job.entry_point,
        "clean_exit_passes": job.clean_exit_passes,
        "program_size": len(program),
        "test_size": None if test is None else len(test),
    }
    header = json.dumps(fields).encode()
    return read_only_memory_file(_LENGTH.pack(len(header)) + header + program + (test or b""))


def read_header(fd: int) -> Header:
    """The header, read at the start of the file."""
    (size,) = _LENGTH.unpack(_read_at(fd, Part(0, _LENGTH.size)))
    fields = json.loads(_read_at(fd, Part(_LENGTH.size, size)))
    program = Part(_LENGTH.size + size, fields["program_size"])
    test_size = fields["test_size"]
    return Header(
        token=fields["token"],
        module_name=fields["module_name"],
        entry_point=fields["entry_point"],
        clean_exit_passes=fields["clean_exit_passes"],
        program=program,
        test=None if test_size is None else Part(program.offset + program.size, test_size),
    )


def read_text(fd: int, part: Part) -> str:
    """One of the job's texts."""
    return _read_at(fd, part).decode("utf-8", "surrogatepass")


def _read_at(fd: int, part: Part) -> bytes:
    chunks = bytearray()
    while len(chunks) < part.size:
        chunk = os.pread(fd, part.size - len(chunks), part.offset + len(chunks))
        if not chunk:
            raise EOFError(f"the job file ends before byte {part.offset + part.size}")
        chunks += chunk
    return bytes(chunks)
