"""The file system a sample sees inside its mount namespace.

The host tree is visible read-only. Home and runtime directories (credentials, sockets)
are covered by empty read-only tmpfs mounts, except for the directories the Python
interpreter itself needs, which are bind-mounted back at the same paths. /dev is a
fresh tmpfs with the harmless devices only (no /dev/ptmx, /dev/pts, /dev/kvm or host
sockets such as /dev/log). /tmp and /dev/shm are private, size-limited tmpfs mounts;
the sample works in /tmp/work.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys

from . import kernel

VISIBLE_DIRECTORIES = ("/bin", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr")
# Mounted afresh for the sample (below) or, for /sys, left as the kernel shows it.
SYSTEM_DIRECTORIES = ("/dev", "/proc", "/sys", "/tmp")
PRIVATE_DIRECTORIES = ("/tmp", "/dev/shm")
WORK_DIRECTORY = "/tmp/work"
DEVICES = ("null", "zero", "full", "random", "urandom")
_DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                 "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
_MAX_PRIVATE_INODES = 4096
# A sysctl of the sample's own user namespace: no user namespaces inside it, and
# without one the sample has no capability to create namespaces of any other kind.
_NESTED_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"


@dataclasses.dataclass(frozen=True)
class FileSystemPlan:
    """Where to put tmpfs mounts and which interpreter directories to bind back."""

    hidden: tuple[str, ...]
    private: tuple[str, ...]
    exposures: tuple[str, ...]


def _interpreter_paths() -> set[str]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(entry for entry in sys.path if entry and os.path.isdir(entry))
    paths.add(os.path.dirname(sys.executable))
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    # A symlinked entry has to work both under its own name and under its target's.
    paths.update({os.path.realpath(path) for path in paths})
    return {os.path.abspath(path) for path in paths}


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _searchable_by(path: str, uid: int, gid: int) -> bool:
    info = os.stat(path)
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _first_blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    for ancestor in _ancestors(os.path.dirname(path)):
        if not _searchable_by(ancestor, uid, gid):
            return ancestor
    return None


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def _outermost(paths: set[str]) -> tuple[str, ...]:
    return tuple(sorted(p for p in paths if not any(_under(p, q) for q in paths if q != p)))


def plan_file_system(host_uid: int, host_gid: int) -> FileSystemPlan:
    """Plans the sample's view for a sample running as `host_uid`/`host_gid` on the host."""
    needed = _interpreter_paths()
    hidden = set(_uncommon_top_level_directories())
    for path in needed:
        blocked = _first_blocked_ancestor(path, host_uid, host_gid)
        if blocked is not None:
            hidden.add(blocked)
    # A directory the interpreter needs whole cannot be hidden.
    hidden -= needed
    hidden_roots = _outermost(hidden)
    private = tuple(d for d in PRIVATE_DIRECTORIES if os.path.isdir(d) and not os.path.islink(d))
    covered = {p for p in needed if any(_under(p, d) for d in hidden_roots + private)}
    return FileSystemPlan(hidden=hidden_roots, private=private, exposures=_outermost(covered))


def _uncommon_top_level_directories() -> list[str]:
    # A symbolic link at the root leads into a directory that is visible or hidden itself.
    kept = set(VISIBLE_DIRECTORIES + SYSTEM_DIRECTORIES)
    with os.scandir("/") as entries:
        return [
            entry.path for entry in entries
            if entry.is_dir(follow_symlinks=False) and entry.path not in kept
        ]


def _cover(directories: tuple[str, ...], exposures: dict[str, int], owner: str) -> None:
    """Covers each directory with an empty tmpfs; those that hold none of the interpreter's
    directories share one (a bind mount costs less than a new tmpfs)."""
    shared = None
    for directory in directories:
        holds_exposures = any(_under(path, directory) for path in exposures)
        if shared is not None and not holds_exposures:
            kernel.mount(shared, directory, None, kernel.MS_BIND)
            continue
        kernel.mount(
            "tmpfs", directory, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
            f"size=1m,nr_inodes=1024,mode=755,{owner}",
        )
        _expose_under(directory, exposures)
        if not holds_exposures:
            shared = directory


def _expose_under(directory: str, exposures: dict[str, int]) -> None:
    for path, fd in exposures.items():
        if _under(path, directory):
            os.makedirs(path, exist_ok=True)
            kernel.mount(f"/proc/self/fd/{fd}", path, None, kernel.MS_BIND | kernel.MS_REC)


def _mount_minimal_dev(devices: dict[str, int]) -> None:
    kernel.mount("tmpfs", "/dev", "tmpfs", kernel.MS_NOSUID, "size=64k,nr_inodes=64,mode=755")
    for name, fd in devices.items():
        os.close(os.open(f"/dev/{name}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        kernel.mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, kernel.MS_BIND)
    for name, target in _DEVICE_LINKS.items():
        os.symlink(target, f"/dev/{name}")
    os.mkdir("/dev/shm", 0o1777)


def forbid_nested_user_namespaces() -> bool:
    """Sets this user namespace's limit on user namespaces to 0; needs root in it and a
    writable /proc of it. Returns whether that worked."""
    try:
        fd = os.open(_NESTED_USER_NAMESPACES, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.write(fd, b"0")
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _mount_fresh_proc() -> bool:
    # Writable, so that forbid_nested_user_namespaces can still reach its sysctl; what
    # /proc lets an unprivileged process without capabilities write is its own business.
    try:
        kernel.mount("proc", "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except PermissionError:
        # Container runtimes that mask parts of /proc forbid a new proc mount; the
        # host's stays visible, read-only, and the PID namespace still confines signals.
        return False
    return True


def build_view(
    plan: FileSystemPlan, owner_uid: int, owner_gid: int, private_bytes: int
) -> list[str]:
    """Builds the sample's view in a new mount namespace, as PID 1 of a new PID namespace.

    `owner_uid`/`owner_gid` are the sample's ids as the calling process sees them; the
    tmpfs mounts and the work directory belong to them. Returns the optional features
    that took effect, for the isolation description.
    """
    features = []
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    # Bind sources must be mounts of this namespace, reached before anything covers them.
    exposures = {
        path: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for path in plan.exposures
    }
    devices = {name: os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC) for name in DEVICES}
    # Directories created from here on belong to the sample.
    kernel.set_file_system_ids(owner_uid, owner_gid)
    owner = f"uid={owner_uid},gid={owner_gid}"
    _cover(plan.hidden, exposures, owner)
    _mount_minimal_dev(devices)
    for directory in plan.private:
        kernel.mount(
            "tmpfs", directory, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
            f"size={private_bytes},nr_inodes={_MAX_PRIVATE_INODES},mode=700,{owner}",
        )
        _expose_under(directory, exposures)
    os.mkdir(WORK_DIRECTORY, 0o700)
    kernel.make_mount_tree_read_only("/")
    for directory in plan.private:
        kernel.make_mount_writable(directory)
    if _mount_fresh_proc():
        features.append("own /proc")
    for fd in (*exposures.values(), *devices.values()):
        os.close(fd)
    return features
