"""Memory cgroups around the samples, where the machine allows them.

RLIMIT_AS bounds each process's address space; a cgroup bounds what all processes of a
sample hold together, page cache and tmpfs pages included. Two levels:

- the sandbox makes one cgroup for all of its samples (`SamplesCgroup`), bounded below
  what the machine can spare, so that samples running together can exhaust only that
  allowance and the OOM killer never has to look outside it for a victim: the evaluator
  stays out of the cgroup;
- each worker moves itself into a cgroup of its own under that one (`MemoryCgroup`), so
  every sample it forks is born inside; it runs one sample at a time, and the limit is
  the sample's allowance on top of what the worker itself holds.

cgroup v1's memory hierarchy and cgroup v2 (where the parent delegates the memory
controller) are both used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time

_V1_ROOT = "/sys/fs/cgroup/memory"
_V2_ROOT = "/sys/fs/cgroup"
_REMOVE_ATTEMPTS = 50
_SAMPLES_PREFIX = "neo-keras-samples-"
# The evaluator may grow after the sandbox starts (a model loaded, batches decoded): the
# samples get this share of what the machine could spare when it started.
_SAMPLES_SHARE_OF_SPARE = 0.75
_samples_cgroups_made = itertools.count()


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


def _version_of(path: str) -> int:
    return 1 if os.path.exists(f"{path}/memory.usage_in_bytes") else 2


def _usage_bytes(path: str) -> int:
    name = "memory.usage_in_bytes" if _version_of(path) == 1 else "memory.current"
    return int(_read(f"{path}/{name}"))


def _reclaimable_bytes(path: str) -> int:
    """Page cache charged to the cgroup that the kernel can drop when memory runs short."""
    key = "total_inactive_file" if _version_of(path) == 1 else "inactive_file"
    for line in _read(f"{path}/memory.stat").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def _limit_bytes(path: str) -> int | None:
    name = "memory.limit_in_bytes" if _version_of(path) == 1 else "memory.max"
    text = _read(f"{path}/{name}").strip()
    return None if text == "max" else int(text)


def _set_limit(path: str, limit: int, raising: bool) -> None:
    """Sets the limit on memory (and on memory plus swap, where swap is accounted)."""
    if _version_of(path) == 2:
        _write(f"{path}/memory.max", str(limit))
        with contextlib.suppress(OSError):  # absent without swap accounting
            _write(f"{path}/memory.swap.max", "0")
        return
    files = [f"{path}/memory.limit_in_bytes"]
    memory_and_swap = f"{path}/memory.memsw.limit_in_bytes"
    if os.path.exists(memory_and_swap):  # absent without swap accounting
        files.append(memory_and_swap)
    # v1 keeps memory+swap >= memory: raise it first, lower it last.
    if raising:
        files.reverse()
    for file in files:
        _write(file, str(limit))


def spare_memory_bytes() -> int:
    """What the machine can give now: available memory, or less where this process's
    own cgroup has a lower limit."""
    available = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) * 1024
    if available is None:
        raise OSError("/proc/meminfo has no MemAvailable")
    own = _own_cgroup_directory()
    if own is not None:
        with contextlib.suppress(OSError, ValueError):
            limit = _limit_bytes(own[0])
            if limit is not None:
                held = _usage_bytes(own[0]) - _reclaimable_bytes(own[0])
                available = min(available, max(0, limit - held))
    return available


def _remove_abandoned(parent: str) -> None:
    """Removes samples cgroups left by evaluators that were killed before closing them."""
    for name in os.listdir(parent):
        if not name.startswith(_SAMPLES_PREFIX):
            continue
        owner = name[len(_SAMPLES_PREFIX) :].split("-")[0]
        if not owner.isdigit() or os.path.exists(f"/proc/{owner}"):
            continue
        _remove_with_children(os.path.join(parent, name), attempts=1)


class SamplesCgroup:
    """One cgroup, under the evaluator's own, that holds every worker and sample of a
    sandbox and bounds the memory they hold together."""

    def __init__(self, path: str, limit_bytes: int) -> None:
        self.path, self.limit_bytes = path, limit_bytes

    @classmethod
    def make(cls, limit_bytes: int | None = None, least_bytes: int = 0) -> SamplesCgroup | None:
        """Makes the cgroup with `limit_bytes`; by default a share of the memory the machine
        can spare now, but at least `least_bytes` (one sample's allowance: below it no sample
        could use what it is allowed). None where there is no memory cgroup this process may
        create."""
        try:
            parent = _own_cgroup_directory()
            if parent is None:
                return None
            _remove_abandoned(parent[0])
            if limit_bytes is None:
                spare_share = int(spare_memory_bytes() * _SAMPLES_SHARE_OF_SPARE)
                limit_bytes = max(spare_share, least_bytes)
            name = f"{_SAMPLES_PREFIX}{os.getpid()}-{next(_samples_cgroups_made)}"
            path = os.path.join(parent[0], name)
            os.mkdir(path)
        except OSError:
            return None
        try:
            if parent[1] == 1:  # absent, or fixed at 1, on recent kernels
                with contextlib.suppress(OSError):
                    _write(f"{path}/memory.use_hierarchy", "1")
            _set_limit(path, limit_bytes, raising=False)
            if parent[1] == 2:  # the workers' cgroups below get the memory controller
                _write(f"{path}/cgroup.subtree_control", "+memory")
        except OSError:
            remove(path)
            return None
        return cls(path, limit_bytes)

    def close(self) -> None:
        """Removes the cgroup and any worker cgroup still in it (a worker that failed to
        start never reported its own); their processes must have exited."""
        _remove_with_children(self.path)


class MemoryCgroup:
    """The worker's cgroup: a limit to set, and a count of out-of-memory kills to read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._baseline = self.usage_bytes()
        self._limit: int | None = None

    @classmethod
    def enter(cls, name: str, parent: str | None = None) -> MemoryCgroup | None:
        """Makes cgroup `name` under `parent` (by default this process's own) and moves this
        process into it; None where there is no memory cgroup this process may create."""
        try:
            if parent is None:
                own = _own_cgroup_directory()
                if own is None:
                    return None
                parent = own[0]
            path = os.path.join(parent, name)
            os.mkdir(path)
            _write(f"{path}/cgroup.procs", str(os.getpid()))
        except OSError:
            return None
        return cls(path)

    def usage_bytes(self) -> int:
        """Memory charged to the cgroup now."""
        return _usage_bytes(self.path)

    def limit_sample(self, sample_bytes: int) -> None:
        """Lets the next sample hold `sample_bytes` beyond what the worker held at start."""
        limit = self._baseline + sample_bytes
        if limit == self._limit:
            return
        _set_limit(self.path, limit, raising=self._limit is not None and limit > self._limit)
        self._limit = limit

    def oom_kills(self) -> int:
        """Processes the kernel has killed in this cgroup for want of memory, so far."""
        name = "memory.oom_control" if _version_of(self.path) == 1 else "memory.events"
        for line in _read(f"{self.path}/{name}").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0


def remove(path: str, attempts: int = _REMOVE_ATTEMPTS) -> None:
    """Removes a worker's cgroup once its processes have exited (the kernel may lag)."""
    for _ in range(attempts):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def _remove_with_children(path: str, attempts: int = _REMOVE_ATTEMPTS) -> None:
    """Removes a samples cgroup and the worker cgroups in it."""
    with contextlib.suppress(OSError):
        for child in os.listdir(path):
            if os.path.isdir(os.path.join(path, child)):
                remove(os.path.join(path, child), attempts)
    remove(path, attempts)
