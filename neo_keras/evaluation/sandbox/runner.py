"""Runs the program inside the confined sample process and reports how it ended.

The report is the sandbox's record that the program reached its end (or which
exception stopped it). It is written by the process that started the program, after
the program returns, to a pipe the sandbox reads, tagged with a per-job token; a
program that exits on its own (`sys.exit`, `os._exit`, a signal) never gets one
written, and neither do processes it forked.
"""

from __future__ import annotations

import builtins
import linecache
import os
import sys
import traceback
import types
from contextlib import suppress
from typing import NoReturn

from . import job as job_module

FILENAME = "<sample>"
SETUP_FAILED = "setup_failed"  # reported when confinement failed before the program ran
_MAX_REPORT_BYTES = 3000  # below PIPE_BUF, so the write is atomic
_MAX_DETAIL_CHARS = 300


def encode_report(token: str, status: str, detail: str) -> bytes:
    """The report line: token, status and a one-line detail, tab separated."""
    detail = " ".join(detail.split())[:_MAX_DETAIL_CHARS]
    return f"{token}\t{status}\t{detail}".encode("utf-8", "replace")[:_MAX_REPORT_BYTES]


def decode_report(data: bytes, token: str) -> tuple[str, str] | None:
    """(status, detail) from a report carrying `token`, or None for anything else."""
    parts = data.decode("utf-8", "replace").split("\t", 2)
    known = (*job_module.STATUSES, SETUP_FAILED)
    if len(parts) != 3 or parts[0] != token or parts[1] not in known:
        return None
    return parts[1], parts[2]


def _describe(error: BaseException) -> str:
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def _fresh_standard_streams() -> None:
    # What a fresh interpreter with pipes for streams would have.
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
    )


def _fresh_main_module(program: str) -> dict:
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["sample.py"]
    linecache.cache[FILENAME] = (len(program), None, program.splitlines(True), FILENAME)
    return main.__dict__


def _verdict_of_exit(error: SystemExit, clean_exit_passes: bool) -> tuple[str, str]:
    if clean_exit_passes and error.code in (None, 0):
        return job_module.PASSED, ""
    code = 0 if error.code is None else error.code
    return job_module.CRASHED, f"exited early with status {code!r}"


def _execute(program: str, clean_exit_passes: bool) -> tuple[str, str]:
    try:
        code = compile(program, FILENAME, "exec")
    except (SyntaxError, ValueError) as error:
        return job_module.SYNTAX_ERROR, _describe(error)
    except MemoryError:
        return job_module.MEMORY_LIMIT, "MemoryError while compiling"
    try:
        exec(code, _fresh_main_module(program))
    except SystemExit as error:
        return _verdict_of_exit(error, clean_exit_passes)
    except MemoryError:
        return job_module.MEMORY_LIMIT, "MemoryError"
    except BaseException as error:
        _print_traceback(error)
        return job_module.FAILED, _describe(error)
    return job_module.PASSED, ""


def _print_traceback(error: BaseException) -> None:
    # The program may have broken stderr; the verdict matters more than the traceback.
    with suppress(BaseException):
        traceback.print_exception(error)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        # A program may have closed or replaced its streams.
        with suppress(BaseException):
            stream.flush()


def run_program(program: str, report_fd: int, token: str, clean_exit_passes: bool) -> NoReturn:
    """Executes `program` as `__main__`, reports how it ended, and exits the process."""
    # The program may monkeypatch os; these references are taken before it runs.
    write, exit_now, getpid = os.write, os._exit, os.getpid
    started_by = getpid()
    _fresh_standard_streams()
    status, detail = _execute(program, clean_exit_passes)
    _flush_standard_streams()
    if getpid() == started_by:
        # If the program closed the report pipe there is no report: a crash.
        with suppress(OSError):
            write(report_fd, encode_report(token, status, detail))
    exit_now(0)
