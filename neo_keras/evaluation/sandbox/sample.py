"""One sample's life inside the worker: start it, watch it, stop everything, judge it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import stat
import sys
import tempfile
import time

from . import (
    cleanup,
    confinement,
    filesystem,
    job_file,
    launch,
    memory_cgroup,
    monitor,
    runner,
    verdict,
)
from . import job as job_module
from . import template as template_module
from .errors import SandboxError

NAMESPACES = "namespaces"
SETUID = "setuid"
SHARED_UID = "shared-uid"


@dataclasses.dataclass(frozen=True)
class WorkerSetup:
    """How this worker isolates samples, decided once when it starts.

    `host_uid`/`host_gid` are the ids sample processes have on the host; `privileged`
    says the worker is root (it can map or switch to ids other than its own).
    """

    mode: str
    host_uid: int
    host_gid: int
    privileged: bool
    last_capability: int
    plan: filesystem.FileSystemPlan | None = None
    direct: launch.DirectPath | None = None  # set when samples are forked without a keeper

    def identity(self) -> confinement.Identity:
        """The ids the sample switches to, as seen from where it runs."""
        if self.mode == NAMESPACES:
            return confinement.Identity(
                launch.SAMPLE_ID, launch.SAMPLE_ID, self.privileged, self.last_capability
            )
        if self.mode == SETUID:
            return confinement.Identity(self.host_uid, self.host_gid, True, self.last_capability)
        return confinement.Identity(None, None, False, self.last_capability)

    def write_id_maps(self, pid: int) -> None:
        """Maps the sample's namespace ids to its host ids, from outside the namespace."""
        if not self.privileged:
            # Unprivileged maps are allowed only once setgroups is disabled for good.
            _write_proc_file(f"/proc/{pid}/setgroups", "deny")
        _write_proc_file(f"/proc/{pid}/uid_map", f"{launch.SAMPLE_ID} {self.host_uid} 1\n")
        _write_proc_file(f"/proc/{pid}/gid_map", f"{launch.SAMPLE_ID} {self.host_gid} 1\n")


def _write_proc_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """An outcome's fields plus the confinement features the sample reported in force."""

    status: str
    detail: str
    stdout: bytes
    stderr_tail: str
    duration_s: float
    features: tuple[str, ...] = ()

    def outcome_fields(self) -> dict:
        """The fields of job.Outcome."""
        return {
            "status": self.status,
            "detail": self.detail,
            "stdout": self.stdout,
            "stderr_tail": self.stderr_tail,
            "duration_s": self.duration_s,
        }


class _Pipes:
    """The sample's pipes and files; the worker keeps read ends, the sample gets the rest."""

    def __init__(self, stdin: bytes, job: int) -> None:
        """`job` is the job's file, which this takes over."""
        self._fds: list[int] = [job]
        stdin_fd = self._own(job_file.read_only_memory_file(stdin))
        ends = {kind: self._pipe() for kind in ("stdout", "stderr", "report", "status")}
        # The worker holds the write end of the lifeline until the job is over.
        lifeline, lifeline_holder = self._pipe()
        self.streams = {read: kind for kind, (read, _) in ends.items()}
        self.child = launch.SampleFds(
            stdin=stdin_fd,
            lifeline=lifeline,
            job=job,
            parent_ends=(*self.streams, lifeline_holder),
            **{kind: write for kind, (_, write) in ends.items()},
        )

    def _own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def _pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        return self._own(read), self._own(write)

    def close_child_ends(self) -> None:
        """Closes the worker's copies of the child ends, so end of file means the sample is gone."""
        child = self.child
        for fd in (
            child.stdin,
            child.stdout,
            child.stderr,
            child.report,
            child.status,
            child.lifeline,
            child.job,
        ):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.remove(fd)
            os.close(fd)

    def close(self) -> None:
        """Closes everything still open."""
        for fd in list(self._fds):
            self._close(fd)


def _remove_tree(path: str) -> None:
    # A sample may leave directories it made unwritable to itself (and to this worker, when
    # both share a uid).
    def make_writable_and_retry(function, failed_path, _):
        os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
        if os.path.isdir(failed_path) and not os.path.islink(failed_path):
            os.chmod(failed_path, stat.S_IRWXU)
        function(failed_path)

    handler = "onexc" if sys.version_info >= (3, 12) else "onerror"
    shutil.rmtree(path, **{handler: make_writable_and_retry})


def _resource_limits(setup: WorkerSetup, limits: job_module.Limits, timeout_s: float):
    processes = limits.max_processes
    if setup.mode == SHARED_UID:
        # The count is per uid, and this uid is shared with the evaluator's processes.
        processes += cleanup.count_tasks_of_uid(setup.host_uid)
    return confinement.ResourceLimits(
        cpu_seconds=limits.cpu_seconds(timeout_s),
        address_space_bytes=limits.memory_bytes,
        file_size_bytes=limits.file_size_bytes,
        processes=processes,
        open_files=limits.max_open_files,
    )


def _plain_work_directory(setup: WorkerSetup) -> str:
    path = tempfile.mkdtemp(prefix="neo-keras-sample-")
    if setup.mode == SETUID:
        os.chown(path, setup.host_uid, setup.host_gid)
    return path


@dataclasses.dataclass(frozen=True)
class _Ending:
    """How the started process ended, as far as the worker could tell."""

    watch: monitor.Watch
    duration_s: float
    wait_status: int | None
    cpu_seconds: float
    features: tuple[str, ...] = ()


def _status_log(watch: monitor.Watch) -> launch.StatusLog:
    """The status pipe's lines; raises SandboxError if the sample could not be confined.

    Only the sandbox's own code writes there, before the job's code runs.
    """
    log = launch.read_status_log(bytes(watch.status))
    if log.setup_error is not None:
        raise SandboxError(f"the sandbox could not confine the sample: {log.setup_error}")
    return log


def _sample_ended(watch: monitor.Watch) -> bool:
    return launch.read_status_log(bytes(watch.status)).ended


class SampleRunner:
    """Runs samples one after another under a worker's setup, forked by its template."""

    def __init__(
        self,
        setup: WorkerSetup,
        template: template_module.Template,
        memory: memory_cgroup.MemoryCgroup | None = None,
    ) -> None:
        """`memory` is the worker's memory cgroup, where it has one."""
        self.setup = setup
        self.template = template
        self.memory = memory

    def run(self, job: job_module.Job, limits: job_module.Limits, control_fd: int) -> SampleResult:
        """Runs one job to its verdict; when this returns, no process of the sample exists.

        Raises SandboxError when the sandbox (not the sample) failed, monitor.ControlLost
        when the evaluator went away.
        """
        timeout_s = job.timeout_s or limits.timeout_s
        spec = launch.SampleSpec(
            limits=_resource_limits(self.setup, limits, timeout_s),
            private_bytes=limits.file_size_bytes,
        )
        token = os.urandom(16).hex()
        pipes = _Pipes(job.stdin, job_file.write(job, token))
        if self.memory is not None:
            self.memory.limit_sample(limits.memory_bytes)
            oom_kills_before = self.memory.oom_kills()
        try:
            deadline = time.monotonic() + timeout_s
            if self.setup.mode == NAMESPACES:
                ending = self._run_namespaced(spec, pipes, limits, deadline, control_fd)
            else:
                ending = self._run_plain(spec, pipes, limits, deadline, control_fd)
        finally:
            pipes.close()
        oom_killed = self.memory is not None and self.memory.oom_kills() > oom_kills_before
        return _judge(spec, token, ending, limits.max_output_bytes, oom_killed)

    def _run_namespaced(self, spec, pipes, limits, deadline, control_fd) -> _Ending:
        started = time.monotonic()
        direct = self.setup.direct is not None
        pid, pid_fd = self.template.fork(self.setup, spec, pipes.child)
        pipes.close_child_ends()
        watcher = monitor.SampleMonitor(pipes.streams, limits.max_output_bytes)
        wait_status, cpu = None, 0.0
        try:
            if direct:
                watcher.wait(pid_fd, control_fd, deadline)
            else:
                watcher.wait(pid_fd, control_fd, deadline, _sample_ended)
        finally:
            if direct:
                # PID 1 of its namespace: when it is reaped, so is everything it started.
                _kill(pid_fd)
                wait_status, cpu = self.template.wait_for_exit()
            elif not _sample_ended(watcher.watch):
                # The keeper's death SIGKILLs the sample (PID 1), which takes its namespace.
                _kill(pid_fd)
                self.template.kill_leftovers(None)
            os.close(pid_fd)
        duration = time.monotonic() - started
        watch = watcher.drain()
        log = _status_log(watch)
        if not direct:
            wait_status, cpu = log.wait_status, log.cpu_seconds
        return _Ending(watch, duration, wait_status, cpu, log.features)

    def _run_plain(self, spec, pipes, limits, deadline, control_fd) -> _Ending:
        started = time.monotonic()
        setup = self.setup
        plain = template_module.PlainSample(
            work_directory=_plain_work_directory(setup),
            uid_to_kill=setup.host_uid if setup.mode == SETUID else None,
        )
        try:
            pid, pid_fd = self.template.fork(setup, spec, pipes.child, plain)
            pipes.close_child_ends()
            watcher = monitor.SampleMonitor(pipes.streams, limits.max_output_bytes)
            try:
                watcher.wait(pid_fd, control_fd, deadline)
            finally:
                _kill(pid_fd)
                wait_status, cpu = self.template.wait_for_exit()
                os.close(pid_fd)
            duration = time.monotonic() - started
            watch = watcher.drain()
            log = _status_log(watch)
        finally:
            _remove_tree(plain.work_directory)
        return _Ending(watch, duration, wait_status, cpu, log.features)


def _kill(pid_fd: int) -> None:
    """SIGKILLs the process behind `pid_fd` (nothing, if it is already gone)."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pid_fd, signal.SIGKILL)


def _judge(
    spec: launch.SampleSpec,
    token: str,
    ending: _Ending,
    max_output_bytes: int,
    oom_killed: bool,
) -> SampleResult:
    watch = ending.watch
    report = runner.decode_report(watch.timely_report(), token)
    status, detail = verdict.decide(
        verdict.Observation(
            output_exceeded=watch.output_exceeded,
            timed_out=watch.timed_out,
            report=report,
            wait_status=ending.wait_status,
            cpu_seconds_used=ending.cpu_seconds,
            cpu_seconds_limit=spec.limits.cpu_seconds,
            oom_killed=oom_killed,
        ),
        max_output_bytes,
    )
    return SampleResult(
        status=status,
        detail=detail,
        stdout=bytes(watch.stdout),
        stderr_tail=watch.stderr_tail.decode("utf-8", "replace"),
        duration_s=ending.duration_s,
        features=ending.features,
    )
