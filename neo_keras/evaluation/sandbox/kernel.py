"""Linux system calls that the standard library does not expose, called through ctypes."""

from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_module
import os
from collections.abc import Sequence

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
# New system calls share one number on every architecture since Linux 5.1.
_SYS_MOUNT_SETATTR = 442
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_MNT_DETACH = 0x2

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4

# Root inside a user namespace gets no capabilities back through exec, the
# ambient set stays empty, and neither choice can be undone.
_SECBIT_NOROOT = 1 << 0
_SECBIT_NOROOT_LOCKED = 1 << 1
_SECBIT_KEEP_CAPS_LOCKED = 1 << 5
_SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
_SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
_LOCKED_SECUREBITS = (
    _SECBIT_NOROOT
    | _SECBIT_NOROOT_LOCKED
    | _SECBIT_KEEP_CAPS_LOCKED
    | _SECBIT_NO_CAP_AMBIENT_RAISE
    | _SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CAP_SETPCAP = 8

_libc = ctypes.CDLL(None, use_errno=True)


def _function(name: str, *argtypes):
    # Declared once: calls then convert plain ints without building ctypes objects.
    function = getattr(_libc, name)
    function.restype = ctypes.c_int
    function.argtypes = argtypes
    return function


_c_int, _c_uint, _c_ulong, _c_char_p = ctypes.c_int, ctypes.c_uint, ctypes.c_ulong, ctypes.c_char_p
_prctl_call = _function("prctl", _c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong)
_unshare = _function("unshare", _c_int)
_setns = _function("setns", _c_int, _c_int)
_mount = _function("mount", _c_char_p, _c_char_p, _c_char_p, _c_ulong, _c_char_p)
_setfsuid = _function("setfsuid", _c_uint)
_setfsgid = _function("setfsgid", _c_uint)
_umount2 = _function("umount2", _c_char_p, _c_int)
_capget = _function("capget", ctypes.c_void_p, ctypes.c_void_p)
_capset = _function("capset", ctypes.c_void_p, ctypes.c_void_p)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> int:
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _path(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _prctl(option: int, arg2: int = 0, what: str = "prctl") -> int:
    return _check(_prctl_call(option, arg2, 0, 0, 0), what)


def unshare(flags: int) -> None:
    """Moves the calling process into new namespaces of the kinds in `flags`."""
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Joins the namespace behind `fd` (for a PID namespace: the one of future children)."""
    _check(_setns(fd, nstype), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    """mount(2); raises OSError naming the target."""
    encoded = None if data is None else data.encode()
    _check(_mount(_path(source), _path(target), _path(fstype), flags, encoded), f"mount {target}")


def pivot_root_here() -> None:
    """Makes the current directory the root of this mount namespace and detaches the old
    root (pivot_root(".", "."), which stacks the old root on the new one)."""
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(errno_module.ENOSYS, f"pivot_root: not known on {os.uname().machine}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_umount2(b".", _MNT_DETACH), "umount2 of the old root")
    os.chdir("/")


def _mount_setattr(path: str, flags: int, attr_set: int, attr_clr: int) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(
        _libc.syscall(
            ctypes.c_long(_SYS_MOUNT_SETATTR),
            ctypes.c_int(_AT_FDCWD),
            _path(path),
            ctypes.c_uint(flags),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"mount_setattr {path}",
    )


def make_mount_tree_read_only(path: str) -> None:
    """Makes every mount at or below `path` read-only, nosuid and nodev (this namespace only):
    no device node anywhere in it opens, whatever directory it was placed in."""
    _mount_setattr(
        path, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, 0
    )


def allow_device_node(path: str) -> None:
    """Lets the device node bound at `path` (its own mount) open again."""
    _mount_setattr(path, 0, 0, _MOUNT_ATTR_NODEV)


def make_mount_writable(path: str) -> None:
    """Clears read-only on the single mount at `path`, leaving mounts below it alone."""
    _mount_setattr(path, 0, 0, _MOUNT_ATTR_RDONLY)


def set_file_system_ids(uid: int, gid: int) -> None:
    """Sets the ids used for file access and creation, verifying that the change took."""
    _setfsgid(gid)
    _setfsuid(uid)
    # setfsuid reports nothing on failure; asking with an invalid id returns the current one.
    if _setfsuid(0xFFFFFFFF) & 0xFFFFFFFF != uid:
        raise OSError(f"setfsuid({uid}) did not take effect")
    if _setfsgid(0xFFFFFFFF) & 0xFFFFFFFF != gid:
        raise OSError(f"setfsgid({gid}) did not take effect")


def volunteer_for_oom_kill() -> None:
    """Makes this process (and what it forks) the first the kernel's OOM killer takes, before
    the evaluator or anything else of the host: an oom_score_adj of 1000. Any process may
    raise its own."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def set_parent_death_signal(signum: int) -> None:
    """Asks the kernel to send `signum` to this process when its parent exits."""
    _prctl(_PR_SET_PDEATHSIG, signum, "prctl(PR_SET_PDEATHSIG)")


def set_child_subreaper() -> None:
    """Makes orphaned descendants of this process become its children instead of init's."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1, "prctl(PR_SET_CHILD_SUBREAPER)")


def forbid_tracing() -> None:
    """Stops processes of the same uid from ptracing or reading the memory of this one."""
    _prctl(_PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE)")


def set_no_new_privileges() -> None:
    """Makes exec unable to grant privileges (setuid bits, file capabilities) from now on."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _capabilities() -> tuple[int, int, int]:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_capget(ctypes.byref(header), data), "capget")
    effective = data[0].effective | data[1].effective << 32
    permitted = data[0].permitted | data[1].permitted << 32
    inheritable = data[0].inheritable | data[1].inheritable << 32
    return effective, permitted, inheritable


def has_capability(capability: int) -> bool:
    """Whether `capability` is in this process's effective set."""
    return bool(_capabilities()[0] >> capability & 1)


def limit_future_capabilities(last_cap: int) -> None:
    """Empties the bounding and ambient sets and locks the securebits (needs CAP_SETPCAP)."""
    for capability in range(last_cap + 1):
        _prctl(_PR_CAPBSET_DROP, capability, "prctl(PR_CAPBSET_DROP)")
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    _prctl(_PR_SET_SECUREBITS, _LOCKED_SECUREBITS, "prctl(PR_SET_SECUREBITS)")


def clear_capabilities() -> None:
    """Empties the effective, permitted and inheritable sets and checks that they are empty."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_capset(ctypes.byref(header), data), "capset")
    if any(_capabilities()):
        raise OSError("capabilities remain after capset")


# seccomp: a classic BPF program over struct seccomp_data {int nr; u32 arch; u64 ip;
# u64 args[6]}, refusing the calls whose effects the other limits do not bound.
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LOAD_WORD, _BPF_JUMP_IF_EQUAL, _BPF_JUMP_IF_AT_LEAST, _BPF_RETURN = 0x20, 0x15, 0x35, 0x06
_X32_SYSCALL_BIT = 0x40000000
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16
# The only socket families a sample may open: those of its own, empty, network namespace.
_INET_FAMILIES = (2, 10)  # AF_INET, AF_INET6


@dataclasses.dataclass(frozen=True)
class _Machine:
    """A machine's audit arch and the system call numbers the filter refuses or checks."""

    arch: int
    # memfd_create, shmget, semget, msgget, mq_open, socketpair, io_uring_setup,
    # io_uring_enter, io_uring_register
    refused: tuple[int, ...]
    socket: int


# Elsewhere no filter is installed.
_MACHINES = {
    "x86_64": _Machine(0xC000003E, (319, 29, 64, 68, 240, 53, 425, 426, 427), 41),
    "aarch64": _Machine(0xC00000B7, (279, 194, 190, 186, 180, 199, 425, 426, 427), 198),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp_program(machine: _Machine) -> list[tuple]:
    """Refuse (EPERM) the calls `machine.refused`, a socket of any family but the inet ones,
    and every call made through another ABI (i386's int 0x80 on x86_64, x32 numbers): the
    same calls by other numbers.

    Written with labels ("refuse", "allow") that `_resolve_jumps` turns into the forward
    offsets classic BPF jumps take.
    """
    program = [
        (_BPF_LOAD_WORD, 0, 0, _OFFSET_ARCH),
        (_BPF_JUMP_IF_EQUAL, 0, "refuse", machine.arch),
        (_BPF_LOAD_WORD, 0, 0, _OFFSET_NR),
        (_BPF_JUMP_IF_AT_LEAST, "refuse", 0, _X32_SYSCALL_BIT),
        *((_BPF_JUMP_IF_EQUAL, "refuse", 0, number) for number in machine.refused),
        (_BPF_JUMP_IF_EQUAL, 0, "allow", machine.socket),
        (_BPF_LOAD_WORD, 0, 0, _OFFSET_ARG0),  # the family, an int: the argument's low word
        *((_BPF_JUMP_IF_EQUAL, "allow", 0, family) for family in _INET_FAMILIES),
        ("refuse",),
        (_BPF_RETURN, 0, 0, _SECCOMP_RET_ERRNO | errno_module.EPERM),
        ("allow",),
        (_BPF_RETURN, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    return _resolve_jumps(program)


def _resolve_jumps(program: list[tuple]) -> list[tuple]:
    """Instructions with label operands made offsets (instructions to skip); labels dropped."""
    labels, instructions = {}, []
    for entry in program:
        if len(entry) == 1:
            labels[entry[0]] = len(instructions)
        else:
            instructions.append(entry)

    def offset(target, index):
        return labels[target] - index - 1 if isinstance(target, str) else target

    return [
        (code, offset(true, index), offset(false, index), k)
        for index, (code, true, false, k) in enumerate(instructions)
    ]


def can_refuse_unbounded_calls() -> bool:
    """Whether refuse_unbounded_calls knows this machine's system call numbers."""
    return os.uname().machine in _MACHINES


def refuse_unbounded_calls() -> bool:
    """Installs a seccomp filter that makes memfd_create, SysV IPC (shmget, semget,
    msgget), mq_open, io_uring, socketpair, socket() of any family but AF_INET and AF_INET6,
    and every call through a foreign ABI fail with EPERM: memory they allocate escapes
    RLIMIT_AS, IPC objects outlive their creator, io_uring does on the sample's behalf what
    the filter would refuse it (IORING_OP_SOCKET opens a unix socket), a unix socket reaches
    host services through any socket file in view, and vsock is not namespaced at all. Needs
    no_new_privs. Returns False where this machine's system call numbers are not known
    here."""
    machine = _MACHINES.get(os.uname().machine)
    if machine is None:
        return False
    program = _seccomp_program(machine)
    instructions = (_SockFilter * len(program))(*program)
    fprog = _SockFprog(len(program), instructions)
    _check(
        _prctl_call(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
        "prctl(PR_SET_SECCOMP)",
    )
    return True


# Landlock (Linux 5.13+): a second wall beside the mount view, enforced on every open.
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 0x1, 0x2, 0x4, 0x8
# The file-system rights each ABI version knows: 13 in version 1, then REFER (2), TRUNCATE (3)
# and IOCTL_DEV (5). Handling every right it knows refuses whatever a rule does not grant.
_FS_RIGHTS_BY_ABI = ((1, (1 << 13) - 1), (2, 1 << 13), (3, 1 << 14), (5, 1 << 15))


class _LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


# ABI 6: signals to, and abstract unix sockets of, processes outside the domain.
_SCOPE_ABI = 6
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 0x1, 0x2


class _LandlockPathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (or it is turned off)."""
    version = _libc.syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    return max(version, 0)


def wall_off(writable: Sequence[str], devices: Sequence[str]) -> int:
    """Lets this process and all it starts read and execute what its view shows, write only
    below the directories `writable` and into the device nodes `devices`: no FIFO, socket
    file or other file of the view opens for writing, whatever the mounts say. From ABI 6,
    also no signal to a process outside this one's descendants and no abstract unix socket
    of theirs. Needs no_new_privs. Returns the Landlock ABI applied: 0 where the kernel has
    none."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    handled = sum(rights for version, rights in _FS_RIGHTS_BY_ABI if abi >= version)
    scoped = _SCOPE_SIGNAL | _SCOPE_ABSTRACT_UNIX_SOCKET if abi >= _SCOPE_ABI else 0
    # A kernel that knows fewer fields accepts the longer structure while they are zero.
    attr = _LandlockRulesetAttr(handled, 0, scoped)
    ruleset = _check(
        _libc.syscall(
            ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
            ctypes.c_uint32(0),
        ),
        "landlock_create_ruleset",
    )
    try:
        _allow_beneath(ruleset, "/", _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE)
        for directory in writable:
            _allow_beneath(ruleset, directory, handled)
        for device in devices:
            _allow_beneath(ruleset, device, _FS_READ_FILE | _FS_WRITE_FILE)
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF),
                ctypes.c_int(ruleset),
                ctypes.c_uint32(0),
            ),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)
    return abi


def landlock_scopes_signals(abi: int) -> bool:
    """Whether wall_off, at Landlock ABI `abi`, keeps signals inside the domain."""
    return abi >= _SCOPE_ABI


def _allow_beneath(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _LandlockPathBeneath(access, fd)
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_LANDLOCK_ADD_RULE),
                ctypes.c_int(ruleset),
                ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            ),
            f"landlock_add_rule {path}",
        )
    finally:
        os.close(fd)
