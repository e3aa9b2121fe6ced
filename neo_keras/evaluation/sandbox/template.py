"""The template: the one process that forks samples, split from the worker before any job.

A forked process inherits its parent's memory, freed blocks included. The worker
receives every job and reads every sample's output, so a sample forked from it could
find earlier samples' code and output in its own heap. The process pool.Sandbox starts
forks once before it reads any job: the parent stays behind as the template, the child
goes on as the worker. The template never reads a job: the worker sends it a sample's
descriptors (over SCM_RIGHTS) and limits, the template forks, and the sample reads its
job from its own descriptor (job_file.py). As the samples' parent and a child
subreaper, the template also reaps them and kills what they leave behind: it answers a
fork with the child's pid and a pidfd (for the worker to watch and kill it by), then,
unless a keeper reaps the sample, waits for the child and sends its wait status.

Requests and replies are pickles between the worker and its own fork; no sample ever
holds the socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import os
import pickle
import select
import signal
import socket
from collections.abc import Iterable
from typing import NoReturn

from . import cleanup, filesystem, kernel, launch
from .errors import SandboxError

_MAX_MESSAGE_BYTES = 1 << 20
_MAX_FDS = 16


@dataclasses.dataclass(frozen=True)
class PlainSample:
    """A sample without namespaces: where it works, and the uid whose processes die with
    it (None where it shares the worker's uid)."""

    work_directory: str
    uid_to_kill: int | None


class Template:
    """The worker's handle on its template process."""

    def __init__(self, connection: socket.socket) -> None:
        self._connection = connection

    @classmethod
    def split(cls, worker_only: Iterable[int]) -> Template:
        """Forks. This process becomes the template, closes `worker_only` (the worker's
        pipes) and never returns; the child returns as the worker, with its handle.

        The template is the root of its samples' process tree (a fresh interpreter's
        memory, not a fork's), which keeps each fork and page fault of a sample cheap.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        template = os.getpid()
        worker = os.fork()
        if worker != 0:
            ours.close()
            for fd in worker_only:
                os.close(fd)
            _serve(theirs, worker)
        theirs.close()
        kernel.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != template:
            os._exit(1)
        return cls(ours)

    def _call(self, request: tuple, fds: Iterable[int] = ()) -> tuple[object, list[int]]:
        try:
            socket.send_fds(self._connection, [pickle.dumps(request)], list(fds))
        except OSError as error:
            raise SandboxError(f"the sandbox's template process is gone: {error}") from error
        return self._receive()

    def _receive(self) -> tuple[object, list[int]]:
        try:
            reply, fds, _, _ = socket.recv_fds(self._connection, _MAX_MESSAGE_BYTES, 1)
        except OSError as error:
            raise SandboxError(f"the sandbox's template process is gone: {error}") from error
        if not reply:
            raise SandboxError("the sandbox's template process is gone")
        kind, value = pickle.loads(reply)
        if kind == "namespace_error":
            raise launch.NamespaceError(value)
        if kind == "error":
            raise SandboxError(value)
        return value, fds

    def fork(
        self,
        setup,
        spec: launch.SampleSpec,
        fds: launch.SampleFds,
        plain: PlainSample | None = None,
    ) -> tuple[int, int]:
        """Forks a sample (or its keeper) under `setup` (a sample.WorkerSetup) with
        namespaces, or without them given `plain`; returns its pid and a pidfd. Unless a
        keeper reaps the sample, wait_for_exit must follow."""
        child_ends = (
            fds.stdin,
            fds.stdout,
            fds.stderr,
            fds.report,
            fds.status,
            fds.lifeline,
            fds.job,
        )
        pid, pid_fds = self._call(("fork", setup, spec, plain), child_ends)
        return pid, pid_fds[0]

    def wait_for_exit(self) -> tuple[int, float]:
        """The forked child's wait status and CPU seconds, once it has exited and everything
        it left behind is gone."""
        ended, _ = self._receive()
        return ended

    def kill_leftovers(self, uid: int | None) -> None:
        """Kills every remaining descendant (orphans included), and every process of `uid`."""
        self._call(("kill_leftovers", uid))

    def preload(self, modules: Iterable[str]) -> None:
        """Imports `modules` in the template, so that samples start with them loaded."""
        self._call(("preload", tuple(modules)))

    def close(self) -> None:
        """Ends the template (and with it any sample still running)."""
        self._connection.close()


def _serve(connection: socket.socket, worker: int) -> NoReturn:
    try:
        _Server(connection, worker).serve()
    finally:
        # The worker is gone: so are its samples, which have this process as their parent.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(worker, 0)
        os._exit(0)


class _Server:
    """The template's side: requests from the worker, until it closes the connection."""

    def __init__(self, connection: socket.socket, worker: int) -> None:
        self._connection, self._worker = connection, worker
        self._base_views: dict[tuple, int] = {}

    def serve(self) -> None:
        kernel.set_child_subreaper()
        # Everything allocated so far is shared with samples; keep the collector off it.
        gc.freeze()
        operations = {"kill_leftovers": self._kill_leftovers, "preload": _preload}
        while (request := self._receive()) is not None:
            (operation, *arguments), fds = request
            if operation == "fork":
                self._fork_and_wait(fds, *arguments)
                continue
            try:
                reply = ("ok", operations[operation](*arguments))
            except (SandboxError, OSError) as error:
                reply = _error_reply(error)
            self._send(reply)

    def _receive(self) -> tuple[tuple, list[int]] | None:
        message, fds, _, _ = socket.recv_fds(self._connection, _MAX_MESSAGE_BYTES, _MAX_FDS)
        return None if not message else (pickle.loads(message), fds)

    def _send(self, reply: tuple, fds: Iterable[int] = ()) -> None:
        socket.send_fds(self._connection, [pickle.dumps(reply)], list(fds))

    def _fork_and_wait(self, fds, setup, spec, plain: PlainSample | None) -> None:
        self._reap_exited_children()  # keepers whose samples ended earlier
        try:
            pid = self._fork(fds, setup, spec, plain)
        except (SandboxError, OSError) as error:
            self._send(_error_reply(error))
            return
        finally:
            # Only the sample holds its pipes now, so end of file on them means it is gone.
            for fd in fds:
                os.close(fd)
        # Opened before this process reaps the child, so the pid cannot have been reused.
        pid_fd = os.pidfd_open(pid)
        try:
            self._send(("ok", pid), [pid_fd])
            if plain is None and setup.direct is None:
                return  # a keeper: it reports its sample's end itself, and is reaped later
            self._wait_for(pid_fd)
        finally:
            os.close(pid_fd)
        _, wait_status, usage = os.wait4(pid, 0)
        if plain is not None:
            self._kill_leftovers(plain.uid_to_kill)
        self._send(("ok", (wait_status, usage.ru_utime + usage.ru_stime)))

    def _wait_for(self, pid_fd: int) -> None:
        """Returns once the child behind `pid_fd` has exited. The worker, which enforces
        the deadline, sends nothing meanwhile: if the connection stirs, the worker is gone
        and the child is killed."""
        poller = select.poll()
        poller.register(pid_fd, select.POLLIN)
        poller.register(self._connection, select.POLLIN)
        if any(fd != pid_fd for fd, _ in poller.poll()):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pid_fd, signal.SIGKILL)

    def _fork(self, fds, setup, spec, plain: PlainSample | None) -> int:
        stdin, stdout, stderr, report, status, lifeline, job = fds
        sample_fds = launch.SampleFds(
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            report=report,
            status=status,
            lifeline=lifeline,
            job=job,
            parent_ends=(self._connection.fileno(),),
        )
        if plain is None:
            host_ids = (setup.host_uid, setup.host_gid)
            return launch.fork_namespaced_sample(
                spec,
                sample_fds,
                setup.plan,
                setup.identity(),
                host_ids,
                setup.write_id_maps,
                setup.direct,
                self._base_view(setup, host_ids),
            )
        return launch.fork_plain_sample(spec, sample_fds, setup.identity(), plain.work_directory)

    def _base_view(self, setup, host_ids: tuple[int, int]) -> int | None:
        """The direct path's base view for this setup, built on first use."""
        if setup.direct is None or not filesystem.can_share_base_view(setup.plan):
            return None
        key = (setup.plan, host_ids)
        if key not in self._base_views:
            self._base_views[key] = launch.make_base_view(setup.plan, host_ids)
        return self._base_views[key]

    def _reap_exited_children(self) -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG) != (0, 0):
                pass

    def _kill_leftovers(self, uid: int | None) -> None:
        # Orphans of a sample are reparented to this subreaper: no children, no leftovers.
        spare = (self._worker,)
        if not cleanup.children_of_this_process(spare):
            return
        if uid is not None:
            cleanup.kill_processes_of_uid(uid)
        cleanup.kill_all_children(spare)


def _error_reply(error: BaseException) -> tuple[str, str]:
    if isinstance(error, launch.NamespaceError):
        return "namespace_error", str(error)
    return "error", f"{type(error).__name__}: {error}"


def _preload(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)
    gc.freeze()
