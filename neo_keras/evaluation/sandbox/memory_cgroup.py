"""A memory cgroup around a worker and the samples it forks, where the machine allows one.

RLIMIT_AS bounds each process's address space; a cgroup bounds what all processes of a
sample hold together, page cache and tmpfs pages included. The worker moves itself
into a cgroup of its own under the one it was started in, so every sample it forks is
born inside; it runs one sample at a time, and the limit is the sample's allowance on
top of what the worker itself holds. cgroup v1's memory hierarchy and cgroup v2 (where
the parent delegates the memory controller) are both used.
"""

from __future__ import annotations

import contextlib
import os
import time

_V1_ROOT = "/sys/fs/cgroup/memory"
_V2_ROOT = "/sys/fs/cgroup"
_REMOVE_ATTEMPTS = 50


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _own_cgroup_directory() -> tuple[str, int] | None:
    """(directory, version) of this process's memory cgroup, if one can have children."""
    v2_path = None
    for line in _read("/proc/self/cgroup").splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and os.path.isdir(_V1_ROOT + path):
            return _V1_ROOT + path.rstrip("/"), 1
        if hierarchy == "0" and controllers == "":
            v2_path = path
    if v2_path is None:
        return None
    directory = _V2_ROOT + v2_path.rstrip("/")
    try:
        delegated = "memory" in _read(f"{directory}/cgroup.subtree_control").split()
    except OSError:
        return None
    return (directory, 2) if delegated else None


class MemoryCgroup:
    """The worker's cgroup: a limit to set, and a count of out-of-memory kills to read."""

    def __init__(self, path: str, version: int) -> None:
        self.path, self.version = path, version
        self._baseline = self.usage_bytes()
        self._limit: int | None = None

    @classmethod
    def enter(cls, name: str) -> MemoryCgroup | None:
        """Makes cgroup `name` under this process's own and moves this process into it;
        None where there is no memory cgroup this process may create."""
        try:
            parent = _own_cgroup_directory()
            if parent is None:
                return None
            path = os.path.join(parent[0], name)
            os.mkdir(path)
            _write(f"{path}/cgroup.procs", str(os.getpid()))
        except OSError:
            return None
        return cls(path, parent[1])

    def usage_bytes(self) -> int:
        """Memory charged to the cgroup now."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int(_read(f"{self.path}/{name}"))

    def limit_sample(self, sample_bytes: int) -> None:
        """Lets the next sample hold `sample_bytes` beyond what the worker held at start."""
        limit = self._baseline + sample_bytes
        if limit == self._limit:
            return
        if self.version == 2:
            _write(f"{self.path}/memory.max", str(limit))
            with contextlib.suppress(OSError):  # absent without swap accounting
                _write(f"{self.path}/memory.swap.max", "0")
        else:
            files = [f"{self.path}/memory.limit_in_bytes"]
            memory_and_swap = f"{self.path}/memory.memsw.limit_in_bytes"
            if os.path.exists(memory_and_swap):  # absent without swap accounting
                files.append(memory_and_swap)
            # v1 keeps memory+swap >= memory: raise it first, lower it last.
            if self._limit is not None and limit > self._limit:
                files.reverse()
            for path in files:
                _write(path, str(limit))
        self._limit = limit

    def oom_kills(self) -> int:
        """Processes the kernel has killed in this cgroup for want of memory, so far."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in _read(f"{self.path}/{name}").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0


def remove(path: str) -> None:
    """Removes a worker's cgroup once its processes have exited (the kernel may lag)."""
    for _ in range(_REMOVE_ATTEMPTS):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
