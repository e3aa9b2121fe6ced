"""Making sure nothing a sample started outlives it.

The template is a child subreaper, so every orphaned descendant (double-forked daemons,
children that called setsid) becomes its child and can be found and killed here.
Where the sample ran as a uid of its own, one kill(-1) sent with that uid reaches all
of its processes at once: the kernel walks the process list under a lock that fork
also takes, so nothing escapes by forking meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import signal


def _children_from_proc_tree(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def children_of_this_process(spare: tuple[int, ...]) -> list[int]:
    """Pids of this single-threaded process's children, except those in `spare`."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except FileNotFoundError:  # kernels built without CONFIG_PROC_CHILDREN
        children = _children_from_proc_tree(pid)
    return [child for child in children if child not in spare]


def kill_all_children(spare: tuple[int, ...]) -> None:
    """SIGKILLs and reaps children, except those in `spare`, until none is left (orphans
    keep arriving as children)."""
    while children := children_of_this_process(spare):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)


def kill_processes_of_uid(uid: int) -> None:
    """SIGKILLs every process whose real or saved uid is `uid` (needs root to take the uid)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:  # ESRCH: nothing was left to kill
            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def count_tasks_of_uid(uid: int) -> int:
    """Processes and threads running as `uid`, as RLIMIT_NPROC counts them."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue
    return count
