"""Execution sandbox for generated programs (pass@k evaluation).

Each program runs in its own process tree: fresh user, PID, network, mount and IPC
namespaces where the kernel allows them (read-only file system, private /tmp, a minimal
/dev, no network, an unprivileged uid, no capabilities), a seccomp filter, resource
limits always, a memory cgroup where one can be made, a clean environment, and nothing
left running afterwards. A job with a test runs the test in a process apart from the
program, so that the program cannot reach its own verdict (harness.py). The worker side
imports the standard library only (and nothing of Keras or of the rest of this package).

    with Sandbox(limits=Limits(timeout_s=3.0)) as sandbox:
        outcomes = sandbox.run_many(jobs)
"""

from .errors import IsolationUnavailableError, SandboxError
from .job import STATUSES, Job, Limits, Outcome
from .pool import Sandbox

__all__ = [
    "STATUSES",
    "IsolationUnavailableError",
    "Job",
    "Limits",
    "Outcome",
    "Sandbox",
    "SandboxError",
]
