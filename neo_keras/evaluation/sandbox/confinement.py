"""What a sample process does to itself before running untrusted code.

It keeps only its own standard streams and report pipe, gives up every privilege it
has (ids, capabilities, the ability to regain them through exec), and takes its
resource limits and a clean environment.
"""

from __future__ import annotations

import dataclasses
import os
import resource

from . import kernel

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclasses.dataclass(frozen=True)
class Identity:
    """The ids a sample takes, and which privileged steps are possible on the way."""

    uid: int | None  # None: keep the current ids (no way to change them)
    gid: int | None
    may_set_groups: bool
    last_capability: int


@dataclasses.dataclass(frozen=True)
class ResourceLimits:
    """Values for setrlimit, already resolved for one job."""

    cpu_seconds: int
    address_space_bytes: int
    file_size_bytes: int
    processes: int
    open_files: int


def wire_standard_streams(
    stdin_fd: int, stdout_fd: int, stderr_fd: int, keep: tuple[int, ...]
) -> tuple[int, ...]:
    """Makes the given descriptors 0, 1 and 2 and closes every other one except `keep`.

    Returns the (possibly new) numbers of `keep`, in order.
    """
    kept = tuple(os.dup(fd) if fd <= 2 else fd for fd in keep)
    for target, source in ((0, stdin_fd), (1, stdout_fd), (2, stderr_fd)):
        os.dup2(source, target, inheritable=True)
    start = 3
    for fd in sorted(kept):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, os.sysconf("SC_OPEN_MAX"))
    return kept


def drop_privileges(identity: Identity) -> None:
    """Takes the sample's ids and leaves the process with no capabilities, for good."""
    if kernel.has_capability(kernel.CAP_SETPCAP):
        kernel.limit_future_capabilities(identity.last_capability)
    if identity.may_set_groups:
        os.setgroups([])
    if identity.gid is not None:
        os.setresgid(identity.gid, identity.gid, identity.gid)
    if identity.uid is not None:
        os.setresuid(identity.uid, identity.uid, identity.uid)
    # Leaving root in a user namespace whose root is unmapped does not clear
    # capabilities by itself, so they are cleared (and checked) explicitly.
    kernel.clear_capabilities()
    kernel.set_no_new_privileges()


def apply_resource_limits(limits: ResourceLimits) -> None:
    """Lowers soft and hard limits; SIGXCPU at the soft CPU limit, SIGKILL a second later."""
    settings = (
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_AS, limits.address_space_bytes, limits.address_space_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.processes, limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    )
    for which, soft, hard in settings:
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))


def reset_environment(work_directory: str) -> None:
    """Replaces the inherited environment (and the C one, for subprocesses) with a minimal one."""
    os.environ.clear()
    os.environ.update(PATH=_SAFE_PATH, HOME=work_directory, TMPDIR=work_directory, LANG="C.UTF-8")
    os.chdir(work_directory)
    os.umask(0o077)
