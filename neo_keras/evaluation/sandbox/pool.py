"""The evaluator's side of the sandbox: a pool of warm workers, one sample at a time each."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import grp
import itertools
import json
import logging
import os
import pwd
import queue
import subprocess
import sys
import warnings
from collections.abc import Iterable

from tqdm.auto import tqdm

from . import filesystem, launch, memory_cgroup, protocol, sample
from .errors import IsolationUnavailableError, SandboxError
from .job import CRASHED, Job, Limits, Outcome

# Where the worker imports this package from (the directory holding neo_keras/), whether
# the package is installed or run from a checkout. `import neo_keras` loads nothing else, so
# the worker holds the standard library and the sandbox's own modules only.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
_WORKER_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONPATH": os.path.abspath(_SOURCE_ROOT),
}
_MAX_WORKERS = 1024
# Host ids for samples when the evaluator is root: a block per Sandbox, chosen from
# the process id so that concurrent evaluators do not share ids.
_ID_BASE = 1_000_000_000
_ID_SLOTS = 976_000
_sandboxes_created = itertools.count()
_log = logging.getLogger(__name__)
_warned_about_isolation = False


def _id_in_use(candidate: int) -> bool:
    try:
        pwd.getpwuid(candidate)
    except KeyError:
        try:
            grp.getgrgid(candidate)
        except KeyError:
            return False
    return True


def _unused_host_ids(count: int) -> list[int]:
    slot = (os.getpid() * 16 + next(_sandboxes_created)) % _ID_SLOTS
    candidates = itertools.count(_ID_BASE + slot * _MAX_WORKERS)
    return list(itertools.islice((c for c in candidates if not _id_in_use(c)), count))


class _Worker:
    """One worker process and its control pipes."""

    def __init__(
        self,
        host_id: int,
        use_namespaces: bool,
        memory_parent: str | None = None,
        direct: bool = True,
    ) -> None:
        """`memory_parent` is the cgroup the worker makes its own under (the evaluator's
        when None); `direct=False` makes the worker use a keeper process even where it
        need not."""
        self.host_id = host_id
        config = {
            "host_uid": host_id,
            "host_gid": host_id,
            "use_namespaces": use_namespaces,
            "memory_parent": memory_parent,
            "direct": direct,
        }
        self.process = subprocess.Popen(
            # -s: no user site; -P: not the working directory; the environment is all ours.
            [sys.executable, "-s", "-P", "-m", __package__ + ".worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_WORKER_ENVIRONMENT,
            cwd="/",
            start_new_session=True,
        )
        self.hello: dict = {}

    def read_hello(self) -> dict:
        """Waits for the worker's report on the isolation it achieved."""
        hello = protocol.receive(self.process.stdout.fileno())
        if hello is None:
            status = self.process.wait()
            raise SandboxError(f"a sandbox worker exited while starting (status {status})")
        if "fatal" in hello:
            raise SandboxError(hello["fatal"])
        self.hello = hello
        return hello

    def request(self, message: dict) -> dict | None:
        """Sends one job and waits for its reply; None if the worker died meanwhile."""
        try:
            protocol.send(self.process.stdin.fileno(), message)
        except BrokenPipeError:
            return None
        return protocol.receive(self.process.stdout.fileno())

    def stop(self, timeout_s: float = 10.0) -> None:
        """Closes the control pipe (the worker exits on it) and waits, killing if need be."""
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.hello.get("memory_cgroup"):
            memory_cgroup.remove(self.hello["memory_cgroup"])


def _describe_memory(hello: dict, samples: memory_cgroup.SamplesCgroup | None) -> str:
    if not hello.get("memory_cgroup"):
        return "; memory limited per process only (no memory cgroup available)"
    if samples is None:
        return "; a memory cgroup around each sample"
    return (
        "; a memory cgroup around each sample, and one around all samples together "
        f"({samples.limit_bytes / 2**30:.1f} GiB)"
    )


def _describe(
    mode: str, hello: dict, host_ids: list[int], samples: memory_cgroup.SamplesCgroup | None
) -> str:
    ids = (
        f"host uid {host_ids[0]}"
        if len(set(host_ids)) == 1
        else (f"host uids {min(host_ids)}-{max(host_ids)}")
    )
    features = hello["features"]
    extras = "".join(f"; {feature}" for feature in features) + _describe_memory(hello, samples)
    if mode == sample.NAMESPACES:
        visible = " ".join(hello["visible"])
        return (
            "namespaces: user, pid, net, mount, ipc; a root of its own, read-only, nosuid and "
            "nodev, with only "
            f"{visible} of the host (of their installed packages only "
            f"{', '.join(filesystem.SAMPLE_PACKAGES)}), private /tmp and /dev/shm (noexec) and a "
            f"minimal /dev{extras}; "
            "runs as uid "
            f"{hello['sample_id']} in its namespace ({ids}); no capabilities; rlimits; "
            "fresh session"
        )
    why = f"namespaces unavailable: {hello['namespaces_unavailable']}"
    walled = launch.LANDLOCK_FEATURE in features
    if mode == sample.SETUID:
        writes = "" if walled else " and writes where any unprivileged user can"
        return (
            f"limits only ({why}); runs as {ids} via setuid, which reads the host's files "
            f"and reaches its network as any unprivileged user does{writes} (modules it "
            "imports beyond the preloaded ones must be readable by that uid); no "
            f"capabilities; rlimits; fresh session; leftover processes killed by uid{extras}"
        )
    reaches = [
        *(["write its files"] if not walled else []),
        *(["signal its processes"] if launch.SIGNAL_SCOPE_FEATURE not in features else []),
    ]
    shared = f", so a sample can {' and '.join(reaches)}" if reaches else ""
    return (
        f"limits only ({why}); runs as the evaluator's own uid{shared}; rlimits; fresh "
        f"session{extras}"
    )


class Sandbox:
    """Runs untrusted Python programs in parallel, each in its own confined process tree.

    `limits` apply to every job; `workers` defaults to os.cpu_count(). With
    `require_isolation`, a machine without user/PID/network/mount namespaces is an
    error rather than a warning. `use_namespaces=False` runs with the limits alone.
    `isolation` describes what is in force (`mode` names it: "namespaces", "setuid" or
    "shared-uid"), and `sample_uids` lists the host uids samples run as. Use as a
    context manager, or call close().

    Where the machine allows memory cgroups, all workers and samples share one bounded by
    `samples_memory_bytes` (by default 3/4 of the memory the machine can spare when the
    sandbox starts, and at least one sample's `Limits.memory_bytes`), so that samples
    running together run out of that allowance, not of the evaluator's memory. A kill at
    that allowance may land on any running sample.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        workers: int | None = None,
        require_isolation: bool = False,
        use_namespaces: bool = True,
        samples_memory_bytes: int | None = None,
    ) -> None:
        self.limits = limits or Limits()
        count = (os.cpu_count() or 1) if workers is None else workers
        if not 1 <= count <= _MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {_MAX_WORKERS}, got {workers}")
        if os.geteuid() == 0:
            self.sample_uids = _unused_host_ids(count)
        else:
            self.sample_uids = [os.getuid()] * count
        if samples_memory_bytes is not None and samples_memory_bytes <= 0:
            raise ValueError(f"samples_memory_bytes must be positive, got {samples_memory_bytes}")
        self._use_namespaces = use_namespaces
        self._closed = False
        self._workers: list[_Worker] = []
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._samples_memory = memory_cgroup.SamplesCgroup.make(
            samples_memory_bytes, least_bytes=self.limits.memory_bytes
        )
        try:
            for uid in self.sample_uids:  # one at a time, so that close() stops those started
                self._workers.append(self._start_worker(uid))
            hellos = [worker.read_hello() for worker in self._workers]
            modes = {hello["mode"] for hello in hellos}
            if len(modes) != 1:
                raise SandboxError(f"sandbox workers disagree on their isolation: {modes}")
            self.mode = modes.pop()
            self.isolation = _describe(self.mode, hellos[0], self.sample_uids, self._samples_memory)
            if self.mode != sample.NAMESPACES:
                self._refuse_or_warn(require_isolation)
        except BaseException:
            self.close()
            raise
        for worker in self._workers:
            self._idle.put(worker)

    def _refuse_or_warn(self, require_isolation: bool) -> None:
        global _warned_about_isolation
        if require_isolation:
            raise IsolationUnavailableError(
                f"isolation was required but is unavailable here ({self.isolation}). Allow "
                "user namespaces (sysctl user.max_user_namespaces > 0, and "
                "kernel.unprivileged_userns_clone=1 where it exists; container runtimes need "
                "unshare, mount and clone permitted by seccomp) or drop --require_isolation."
            )
        if not _warned_about_isolation:
            _warned_about_isolation = True
            warnings.warn(f"sandbox running without namespaces: {self.isolation}", stacklevel=3)

    @property
    def size(self) -> int:
        """How many programs run at once: one per worker."""
        return len(self.sample_uids)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stops the workers; any running sample is killed with its worker's namespace."""
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
        if self._samples_memory is not None:
            self._samples_memory.close()

    def _start_worker(self, host_id: int) -> _Worker:
        memory = self._samples_memory
        return _Worker(host_id, self._use_namespaces, None if memory is None else memory.path)

    def _replace(self, dead: _Worker) -> _Worker:
        dead.stop(timeout_s=1.0)
        _log.warning(
            "a sandbox worker died (exit status %s); starting another",
            dead.process.returncode,
        )
        worker = self._start_worker(dead.host_id)
        if worker.read_hello()["mode"] != self.mode:
            raise SandboxError("a restarted sandbox worker came up with different isolation")
        self._workers = [worker if w is dead else w for w in self._workers]
        return worker

    def run(self, job: Job) -> Outcome:
        """Runs one job and returns its outcome; blocks while all workers are busy."""
        if self._closed:
            raise SandboxError("the sandbox is closed")
        worker = self._idle.get()
        try:
            reply = worker.request(
                {"job": dataclasses.asdict(job), "limits": dataclasses.asdict(self.limits)}
            )
            if reply is None:
                if self._closed:
                    raise SandboxError("the sandbox was closed while this sample ran")
                worker = self._replace(worker)
                return Outcome(CRASHED, "the sandbox worker died while running this sample")
        finally:
            self._idle.put(worker)
        if "error" in reply:
            raise SandboxError(reply["error"])
        return Outcome(**reply["outcome"])

    def run_many(self, jobs: Iterable[Job], progress: bool = True) -> list[Outcome]:
        """Runs jobs in parallel on all workers; outcomes come back in the order of `jobs`."""
        jobs = list(jobs)
        outcomes: list[Outcome | None] = [None] * len(jobs)
        with (
            tqdm(total=len(jobs), disable=not progress, unit="sample", desc="sandbox") as bar,
            concurrent.futures.ThreadPoolExecutor(len(self._workers)) as executor,
        ):
            futures = {executor.submit(self.run, job): index for index, job in enumerate(jobs)}
            try:
                for future in concurrent.futures.as_completed(futures):
                    outcomes[futures[future]] = future.result()
                    bar.update()
            except BaseException:
                executor.shutdown(cancel_futures=True)
                raise
        return outcomes
