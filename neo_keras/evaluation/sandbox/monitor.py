"""Watching a running sample from the worker: its pipes, its exit, the clock.

Output is read as it arrives and counted against the cap; the deadline is the
worker's own clock. The control pipe to the evaluator is watched too: if the
evaluator goes away, the worker stops the sample and exits.
"""

from __future__ import annotations

import dataclasses
import os
import select
import time
from collections.abc import Callable

_CHUNK = 65536
_STDERR_TAIL_BYTES = 4096
_MAX_RECORD_BYTES = 8192
_DRAIN_SECONDS = 1.0


class ControlLost(Exception):
    """The evaluator closed the control pipe."""


@dataclasses.dataclass
class Watch:
    """What has been seen of one sample so far."""

    stdout: bytearray = dataclasses.field(default_factory=bytearray)
    stderr_tail: bytearray = dataclasses.field(default_factory=bytearray)
    report: bytearray = dataclasses.field(default_factory=bytearray)
    status: bytearray = dataclasses.field(default_factory=bytearray)
    output_bytes: int = 0
    output_exceeded: bool = False
    exited: bool = False
    timed_out: bool = False
    report_at_deadline: bytes = b""

    def timely_report(self) -> bytes:
        """The report bytes that arrived before the deadline."""
        return self.report_at_deadline if self.timed_out else bytes(self.report)


class SampleMonitor:
    """Reads a sample's stdout, stderr, report and status pipes until it ends.

    `streams` maps the worker's read ends to "stdout", "stderr", "report" or "status".
    """

    def __init__(self, streams: dict[int, str], max_output_bytes: int) -> None:
        self._streams = dict(streams)
        self._max_output = max_output_bytes
        self.watch = Watch()
        for fd in self._streams:
            os.set_blocking(fd, False)

    def _take(self, fd: int) -> bool:
        """Reads what `fd` has; False once it reaches end of file."""
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        kind = self._streams[fd]
        watch = self.watch
        if kind in ("stdout", "stderr"):
            room = self._max_output - watch.output_bytes
            watch.output_bytes += len(data)
            if watch.output_bytes > self._max_output:
                watch.output_exceeded = True
            if kind == "stdout":
                watch.stdout += data[: max(room, 0)]
            else:
                watch.stderr_tail += data
                del watch.stderr_tail[:-_STDERR_TAIL_BYTES]
        else:
            # Genuine reports are a few hundred bytes; a program flooding the pipe gets no more.
            record = getattr(watch, kind)
            record.extend(data[: max(_MAX_RECORD_BYTES - len(record), 0)])
        return True

    def wait(
        self,
        pid_fd: int,
        control_fd: int,
        deadline: float,
        finished: Callable[[Watch], bool] = lambda watch: False,
    ) -> Watch:
        """Returns when the process behind `pid_fd` exits or `finished(watch)` says the
        sample is over, when the deadline passes, or when output overflows."""
        poller = select.poll()
        for fd in self._streams:
            poller.register(fd, select.POLLIN)
        poller.register(pid_fd, select.POLLIN)
        poller.register(control_fd, select.POLLIN)
        watch = self.watch
        while not (watch.exited or watch.output_exceeded):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                watch.timed_out = True
                watch.report_at_deadline = bytes(watch.report)
                break
            for fd, _ in poller.poll(remaining * 1000):
                if fd == control_fd:
                    raise ControlLost
                if fd == pid_fd:
                    watch.exited = True
                elif not self._take(fd):
                    poller.unregister(fd)
                    del self._streams[fd]
            watch.exited = watch.exited or finished(watch)
        return watch

    def drain(self) -> Watch:
        """Reads what is left once every writer is gone (bounded in time, just in case)."""
        poller = select.poll()
        for fd in self._streams:
            poller.register(fd, select.POLLIN)
        give_up = time.monotonic() + _DRAIN_SECONDS
        while self._streams and time.monotonic() < give_up:
            for fd, _ in poller.poll(max(give_up - time.monotonic(), 0) * 1000):
                if not self._take(fd):
                    poller.unregister(fd)
                    del self._streams[fd]
        return self.watch
