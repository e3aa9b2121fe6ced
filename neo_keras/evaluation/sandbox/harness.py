"""A program and its test in two processes, so that the program cannot write its own verdict.

The confined sample process becomes the test harness. Before any untrusted code runs it
makes itself undumpable (no ptrace, no /proc/<pid>/mem or /proc/<pid>/fd for anyone
without privileges) and forks the program's process, which closes the report pipe and
then runs the program. The test runs in the harness with `candidate` bound to a proxy:
each call is sent to the program's process, and what comes back is plain data decoded
by values.py, never an object of the program's making. Only the harness writes the
report, after the test has run to its end, so nothing reachable from the program's
memory can forge a pass. What the program sends about itself (that it failed to load)
can only make its own verdict worse.
"""

from __future__ import annotations

import builtins
import os
import pickle
from typing import NoReturn

from . import job as job_module
from . import job_file, kernel, protocol, runner, values

TEST_FILENAME = "<test>"
MAX_REPLY_BYTES = 16 * 1024 * 1024
# Reply kinds, the first byte of each message from the program's process.
_READY, _ENDED, _RETURNED, _RAISED, _UNSUPPORTED, _OUT_OF_MEMORY = (
    b"K",
    b"X",
    b"R",
    b"E",
    b"U",
    b"M",
)
# What a program may say about how it ended before serving: failures only.
_PROGRAM_FAILURES = (
    job_module.FAILED,
    job_module.SYNTAX_ERROR,
    job_module.MEMORY_LIMIT,
    job_module.CRASHED,
)


class ProgramError(Exception):
    """The program raised, returned something that is not plain data, or went away."""


class _ProgramEnded(BaseException):
    """The job's verdict is the program's own failure (a test's `except Exception` must
    not swallow it)."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _ended_reply(status: str, detail: str) -> bytes:
    return _ENDED + f"{status}\t{detail}".encode("utf-8", "replace")


def _serve_program(
    program: str, module_name: str, entry_point: str, requests: int, replies: int
) -> NoReturn:
    """The program's process: load the program, then answer calls until the pipe closes."""
    runner.fresh_standard_streams()
    status, detail, namespace = runner.execute(program, module_name)
    if status == job_module.PASSED:
        try:
            target = eval(entry_point, namespace)  # the benchmark's expression, not the program's
        except BaseException as error:
            status, detail = runner.verdict_of_exception(error)
    if status != job_module.PASSED:
        runner.flush_standard_streams()
        protocol.send_bytes(replies, _ended_reply(status, detail))
        os._exit(0)
    protocol.send_bytes(replies, _READY)
    while (request := protocol.receive_bytes(requests)) is not None:
        args, kwargs = pickle.loads(request)  # written by the harness
        try:
            reply = _RETURNED + values.encode(target(*args, **kwargs))
        except values.UnsupportedValueError as error:
            reply = _UNSUPPORTED + str(error).encode("utf-8", "replace")
        except MemoryError:
            reply = _OUT_OF_MEMORY
        except BaseException as error:
            reply = _RAISED + runner.describe(error).encode("utf-8", "replace")
        runner.flush_standard_streams()
        protocol.send_bytes(replies, reply)
    os._exit(0)


class _Candidate:
    """Stands for the program's entry point inside the test."""

    def __init__(self, requests: int, replies: int) -> None:
        self._requests, self._replies = requests, replies

    def _receive(self) -> bytes:
        try:
            reply = protocol.receive_bytes(self._replies, MAX_REPLY_BYTES)
        except protocol.OversizedMessageError as error:
            raise ProgramError(f"the program's reply is too large: {error}") from None
        if not reply:
            raise ProgramError("the program's process ended while it was being tested")
        return reply

    def wait_until_ready(self) -> None:
        """Returns once the program is loaded; raises _ProgramEnded if it failed to load."""
        reply = self._receive()
        if reply == _READY:
            return
        status, _, detail = reply[1:].decode("utf-8", "replace").partition("\t")
        if reply[:1] != _ENDED or status not in _PROGRAM_FAILURES:
            raise _ProgramEnded(job_module.CRASHED, "the program sent a verdict of its own")
        raise _ProgramEnded(status, detail)

    def __call__(self, *args, **kwargs):
        try:
            request = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
            protocol.send_bytes(self._requests, request)
        except BrokenPipeError:
            raise ProgramError("the program's process ended while it was being tested") from None
        reply = self._receive()
        kind, payload = reply[:1], reply[1:]
        if kind == _RETURNED:
            return values.decode(payload)
        message = payload.decode("utf-8", "replace")
        if kind == _RAISED:
            raise ProgramError(message)
        if kind == _UNSUPPORTED:
            raise ProgramError(f"the program returned {message}, which is not plain data")
        if kind == _OUT_OF_MEMORY:
            raise _ProgramEnded(job_module.MEMORY_LIMIT, "MemoryError")
        raise ProgramError("the program sent a malformed reply")


def _describe(error: BaseException) -> str:
    # A ProgramError's message already names what the program raised.
    return str(error) if isinstance(error, ProgramError) else runner.describe(error)


def _run_test(test: str, candidate: _Candidate) -> tuple[str, str]:
    try:
        candidate.wait_until_ready()
        namespace = {"__name__": "__main__", "__builtins__": builtins, "candidate": candidate}
        exec(compile(test, TEST_FILENAME, "exec"), namespace)
    except _ProgramEnded as ended:
        return ended.status, ended.detail
    except BaseException as error:
        return runner.verdict_of_exception(error, _describe)
    return job_module.PASSED, ""


def run_with_test(job_fd: int, header: job_file.Header, report_fd: int) -> NoReturn:
    """Forks the program's process, runs the job's test against it here, reports, and exits.

    The fork comes before this process reads the test, so the program's memory never
    holds it; the program's process reads only its program from the job's file.
    """
    write, exit_now = os.write, os._exit
    kernel.forbid_tracing()  # before the fork, so that no moment exists when it is not
    requests_read, requests_write = os.pipe()
    replies_read, replies_write = os.pipe()
    if os.fork() == 0:
        for fd in (report_fd, requests_write, replies_read):
            os.close(fd)
        try:
            program = job_file.read_text(job_fd, header.program)
            os.close(job_fd)
            _serve_program(
                program, header.module_name, header.entry_point, requests_read, replies_write
            )
        finally:
            os._exit(1)
    os.close(requests_read)
    os.close(replies_write)
    test = job_file.read_text(job_fd, header.test)
    os.close(job_fd)
    runner.fresh_standard_streams()
    status, detail = _run_test(test, _Candidate(requests_write, replies_read))
    runner.flush_standard_streams()
    write(report_fd, runner.encode_report(header.token, status, detail))
    exit_now(0)
