"""Forks the process tree of one sample from the template (template.py).

With namespaces the sample is PID 1 of a new PID namespace, so every process it
starts dies with it, and it is in new user, network, mount and IPC namespaces. It
builds its file system view while it still holds capabilities in its own user
namespace, then drops them and runs the program. There are two ways to get there:

    direct:  template ── sample
    keeper:  template ── keeper ── sample

Direct, the template itself asks for a new PID namespace before each fork (possible
when it has CAP_SYS_ADMIN over its own PID namespace, as real root does), and the
sample unshares the other namespaces. Otherwise a keeper unshares all of them and
forks the sample; it reaps the sample and reports its wait status on a pipe the
program never holds, and the worker stops a sample early by killing the keeper (the
sample has a parent-death signal). Either way the template writes the uid/gid maps
from outside while the first child waits.

Without namespaces, the template forks the sample directly and cleans up after it
(cleanup.py).

The sample reads its job from its own descriptor (job_file.py). Forked children run
only until os._exit: an exception never unwinds into the template.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import traceback
from collections.abc import Callable
from typing import NoReturn

from . import confinement, filesystem, harness, job_file, kernel, runner
from .errors import SandboxError

# Besides the PID namespace, which is made differently on the two paths.
NAMESPACE_FLAGS = (
    kernel.CLONE_NEWUSER | kernel.CLONE_NEWNET | kernel.CLONE_NEWNS | kernel.CLONE_NEWIPC
)
SAMPLE_ID = 1000  # the sample's uid and gid inside its user namespace
# Features travel comma-separated on the status pipe, so this one has no comma.
SECCOMP_FEATURE = (
    "seccomp: no memfd or SysV IPC or POSIX message queues or io_uring or socket but "
    "inet ones (no unix or vsock socket or socketpair) or foreign system call ABIs"
)
LANDLOCK_FEATURE = "landlock: writes only to its private directories and /dev's nodes"
SIGNAL_SCOPE_FEATURE = "landlock: no signal to a process it did not start"
SETUP_FAILED = "setup_failed"  # on the status pipe, which closes before the program runs
_UNSHARED = b"U"
_GO = b"G"


class NamespaceError(SandboxError):
    """The kernel refused to create the sample's namespaces."""


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """What the forked processes need to know about one job besides the job itself."""

    limits: confinement.ResourceLimits
    private_bytes: int


@dataclasses.dataclass(frozen=True)
class DirectPath:
    """Descriptors the template needs to fork samples without a keeper."""

    own_pid_namespace: int  # to return to after each fork
    shared_namespaces: tuple[tuple[int, int], ...]  # (fd, type): make_shared_namespaces


@dataclasses.dataclass(frozen=True)
class SampleFds:
    """The sample's descriptors (the worker and the template close theirs once it is forked)."""

    stdin: int
    stdout: int
    stderr: int
    report: int
    status: int
    lifeline: int  # end of file here means the worker is gone
    job: int  # the job's file (job_file.py)
    parent_ends: tuple[int, ...]  # descriptors of the forking process, closed in children

    def close_parent_ends(self) -> None:
        """Run first in a forked child, so that end of file on a pipe means what it should."""
        for fd in self.parent_ends:
            os.close(fd)


def _exit_on_any_error(body, *args) -> NoReturn:
    try:
        body(*args)
    except BaseException:
        # Nothing more can be done from a dying child if even this fails.
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        os._exit(127)


def _write_setup_failure(fd: int, error: BaseException) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, _status_line(SETUP_FAILED, f"{type(error).__name__}: {error}"))


def _become_sample(
    spec: SampleSpec,
    fds: SampleFds,
    identity: confinement.Identity,
    work_directory: str,
    features: list[str] | None = None,
) -> NoReturn:
    """Confines this process and runs the job. Setup failures and the features in force
    (the view's `features`, None without a view of its own) go to the status pipe, which is
    closed before any of the job's code runs, so that nothing the program writes can pass
    for the sandbox's own word."""
    report_fd, status_fd, job_fd = fds.report, fds.status, fds.job
    try:
        os.setsid()
        confinement.drop_privileges(identity)
        # Changing ids cleared the parent-death signal; if the worker died before it was
        # set again, the lifeline already shows end of file.
        kernel.set_parent_death_signal(signal.SIGKILL)
        if _worker_gone(fds.lifeline):
            os._exit(1)
        report_fd, status_fd, job_fd = confinement.wire_standard_streams(
            fds.stdin, fds.stdout, fds.stderr, keep=(report_fd, status_fd, job_fd)
        )
        confinement.reset_environment(work_directory)
        confinement.apply_resource_limits(spec.limits)
        refused = kernel.refuse_unbounded_calls()
        # Without a view of its own, "/tmp" would be the host's: only its directory then.
        writable = filesystem.PRIVATE_DIRECTORIES if features is not None else [work_directory]
        # The host's /dev may lack one of them; the sample's own /dev has them all.
        devices = [f"/dev/{name}" for name in filesystem.DEVICES]
        landlock = kernel.wall_off(writable, [d for d in devices if os.path.exists(d)])
        header = job_file.read_header(job_fd)
    except BaseException as error:
        _write_setup_failure(status_fd, error)
        os._exit(1)
    features = [
        *(features or []),
        *([SECCOMP_FEATURE] if refused else []),
        *([LANDLOCK_FEATURE] if landlock else []),
        *([SIGNAL_SCOPE_FEATURE] if kernel.landlock_scopes_signals(landlock) else []),
    ]
    os.write(status_fd, _status_line("ready", ",".join(features)))
    os.close(status_fd)
    _run_job(job_fd, header, report_fd)


def _run_job(job_fd: int, header: job_file.Header, report_fd: int) -> NoReturn:
    if header.test is not None:
        harness.run_with_test(job_fd, header, report_fd)
    program = job_file.read_text(job_fd, header.program)
    os.close(job_fd)
    runner.run_program(program, report_fd, header.token, header.clean_exit_passes)


def _worker_gone(lifeline: int) -> bool:
    readable, _, _ = select.select([lifeline], [], [], 0)
    return bool(readable) and os.read(lifeline, 1) == b""


def fork_plain_sample(
    spec: SampleSpec, fds: SampleFds, identity: confinement.Identity, work_directory: str
) -> int:
    """Forks the sample directly (no namespaces); returns its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _exit_on_any_error(_plain_sample, parent, spec, fds, identity, work_directory)
    return pid


def _plain_sample(parent, spec, fds, identity, work_directory) -> NoReturn:
    fds.close_parent_ends()
    kernel.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    _become_sample(spec, fds, identity, work_directory)


@dataclasses.dataclass
class StatusLog:
    """What the status pipe said: the view's features, a setup error, the sample's end."""

    features: tuple[str, ...] = ()
    setup_error: str | None = None
    wait_status: int | None = None
    cpu_seconds: float = 0.0

    @property
    def ended(self) -> bool:
        """Whether a keeper reported the sample reaped (so all its processes are gone)."""
        return self.wait_status is not None


def _status_line(*fields: object) -> bytes:
    flat = (" ".join(str(field).split()) for field in fields)
    return ("\t".join(flat) + "\n").encode()


def read_status_log(data: bytes) -> StatusLog:
    """Parses the lines the sample and its keeper wrote (tolerating a cut-off last line)."""
    log = StatusLog()
    for line in data.decode("utf-8", "replace").split("\n"):
        kind, _, rest = line.partition("\t")
        if kind == "ready":
            log.features = tuple(f for f in rest.split(",") if f)
        elif kind == SETUP_FAILED:
            log.setup_error = rest
        elif kind == "exited":
            status, _, cpu = rest.partition("\t")
            log.wait_status, log.cpu_seconds = int(status), float(cpu)
    return log


def can_create_pid_namespaces(own_pid_namespace: int) -> bool:
    """Whether this process may give each child a new PID namespace itself (direct path)."""
    try:
        kernel.setns(own_pid_namespace, kernel.CLONE_NEWPID)
        kernel.unshare(kernel.CLONE_NEWPID)
        kernel.setns(own_pid_namespace, kernel.CLONE_NEWPID)
    except OSError:
        return False
    return True


def make_shared_namespaces() -> tuple[tuple[int, int], ...]:
    """(descriptor, type) of new, empty network and IPC namespaces for the samples of
    the direct path to join instead of making their own (those this process may make).

    Making and tearing down these namespaces costs more CPU than anything else about a
    sample. Nothing in them carries over from one sample to the next: the network
    namespace holds only a loopback device that is down and no sample holds a
    capability over it; the IPC namespace stays empty because the seccomp filter refuses
    every call that creates an object in it, so it is shared only where that filter is
    installed. No process of a sample outlives it.
    """
    kinds = [(kernel.CLONE_NEWNET, "net")]
    if kernel.can_refuse_unbounded_calls():
        kinds.append((kernel.CLONE_NEWIPC, "ipc"))
    shared = []
    for nstype, name in kinds:
        own = os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            kernel.unshare(nstype)
        except OSError:
            os.close(own)
            continue
        shared.append((os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), nstype))
        kernel.setns(own, nstype)
        os.close(own)
    return tuple(shared)


def make_base_view(plan: filesystem.FileSystemPlan, host_ids: tuple[int, int]) -> int:
    """A descriptor of a mount namespace holding filesystem.build_base_view for samples
    with `host_ids`, built by a child that exits once the descriptor is open. Raises
    NamespaceError if the view cannot be built."""
    ready_read, ready_write = os.pipe()
    hold_read, hold_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        os.close(hold_write)
        _exit_on_any_error(_build_base_view, plan, host_ids, ready_write, hold_read)
    os.close(ready_write)
    os.close(hold_read)
    try:
        _expect_success(ready_read)
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_read)
        os.close(hold_write)
        os.waitpid(pid, 0)


def _build_base_view(plan, host_ids, ready: int, hold: int) -> NoReturn:
    try:
        kernel.unshare(kernel.CLONE_NEWNS)
        filesystem.build_base_view(plan, *host_ids)
    except BaseException as error:
        _refuse((hold, ready), "could not build the samples' base view", error)
    os.write(ready, _UNSHARED)
    os.read(hold, 1)  # end of file once the parent holds the namespace
    os._exit(0)


def fork_namespaced_sample(
    spec: SampleSpec,
    fds: SampleFds,
    plan: filesystem.FileSystemPlan,
    identity: confinement.Identity,
    host_ids: tuple[int, int],
    write_id_maps: Callable[[int], None],
    direct: DirectPath | None,
    base_view: int | None = None,
) -> int:
    """Forks the sample (direct path) or its keeper, completes the namespace handshake
    and returns the child's pid.

    `host_ids` are the sample's uid and gid on the host; `base_view` (direct path only)
    is a mount namespace from make_base_view for the sample to copy. Raises
    NamespaceError if the kernel refuses the namespaces.
    """
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    if direct is not None:
        kernel.unshare(kernel.CLONE_NEWPID)
    try:
        pid = os.fork()
        if pid == 0:
            os.close(to_child_w)
            os.close(from_child_r)
            fds.close_parent_ends()
            handshake = (to_child_r, from_child_w)
            if direct is None:
                _exit_on_any_error(_keeper, handshake, spec, fds, plan, identity)
            _exit_on_any_error(
                _direct_sample,
                handshake,
                spec,
                fds,
                plan,
                identity,
                host_ids,
                direct.shared_namespaces,
                base_view,
            )
    finally:
        if direct is not None:
            # Later children of the template belong in its own PID namespace again.
            kernel.setns(direct.own_pid_namespace, kernel.CLONE_NEWPID)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        _expect_success(from_child_r)
        write_id_maps(pid)
        os.write(to_child_w, _GO)
    except BaseException as error:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if isinstance(error, OSError):
            raise NamespaceError(f"could not map the sample's ids: {error}") from error
        raise
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
    return pid


def _expect_success(from_child: int) -> None:
    """Raises NamespaceError with the child's message unless it reported success."""
    answer = os.read(from_child, 512)
    if answer != _UNSHARED:
        raise NamespaceError(answer[1:].decode("utf-8", "replace") or "the child died")


def _refuse(handshake: tuple[int, int], what: str, error: BaseException) -> NoReturn:
    os.write(handshake[1], f"E{what}: {type(error).__name__}: {error}".encode())
    os._exit(1)


def _enter_namespaces(handshake: tuple[int, int], flags: int) -> None:
    """Unshares, then waits until the template has written this process's id maps."""
    from_parent, to_parent = handshake
    try:
        kernel.unshare(flags)
    except OSError as error:
        _refuse(handshake, "unshare failed", error)
    os.write(to_parent, _UNSHARED)
    # If the template is gone, this sees end of file instead.
    if os.read(from_parent, 1) != _GO:
        os._exit(1)
    os.close(from_parent)
    os.close(to_parent)


def _direct_sample(
    handshake, spec, fds, plan, identity, host_ids, shared_namespaces, base_view
) -> NoReturn:
    # PID 1 of a PID namespace the template (real root) made. The view is built before the
    # user namespace exists, so the mount namespace (and /proc) belong to the host's
    # user namespace and nothing inside can undo them; so do the shared namespaces.
    kernel.set_parent_death_signal(signal.SIGKILL)
    flags = NAMESPACE_FLAGS & ~kernel.CLONE_NEWNS
    try:
        if base_view is None:
            kernel.unshare(kernel.CLONE_NEWNS)
            features = filesystem.build_view(plan, *host_ids, spec.private_bytes)
        else:
            kernel.setns(base_view, kernel.CLONE_NEWNS)
            os.close(base_view)
            kernel.unshare(kernel.CLONE_NEWNS)  # a copy of its own
            os.chdir("/")
            features = filesystem.finish_view(*host_ids, spec.private_bytes)
        for fd, nstype in shared_namespaces:
            kernel.setns(fd, nstype)
            os.close(fd)
            flags &= ~nstype
    except BaseException as error:
        _refuse(handshake, "could not build the file system view", error)
    _enter_namespaces(handshake, flags)
    _run_confined(spec, fds, identity, features)


def _keeper(handshake, spec, fds, plan, identity) -> NoReturn:
    kernel.set_parent_death_signal(signal.SIGKILL)
    _enter_namespaces(handshake, NAMESPACE_FLAGS | kernel.CLONE_NEWPID)
    sample = os.fork()
    if sample == 0:
        _exit_on_any_error(_keeper_sample, spec, fds, plan, identity)
    os.closerange(3, fds.status)
    os.closerange(fds.status + 1, os.sysconf("SC_OPEN_MAX"))
    _, wait_status, usage = os.wait4(sample, 0)
    os.write(fds.status, _status_line("exited", wait_status, usage.ru_utime + usage.ru_stime))
    os._exit(0)


def _keeper_sample(spec, fds, plan, identity) -> NoReturn:
    kernel.set_parent_death_signal(signal.SIGKILL)
    try:
        features = filesystem.build_view(plan, SAMPLE_ID, SAMPLE_ID, spec.private_bytes)
    except BaseException as error:
        _write_setup_failure(fds.status, error)
        os._exit(1)
    _run_confined(spec, fds, identity, features)


def _run_confined(spec, fds, identity, features: list[str]) -> NoReturn:
    if filesystem.forbid_nested_user_namespaces():
        features = [*features, "no nested user namespaces"]
    _become_sample(spec, fds, identity, filesystem.WORK_DIRECTORY, features)
