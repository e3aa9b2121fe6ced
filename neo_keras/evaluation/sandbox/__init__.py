"""Execution sandbox for generated programs (pass@k evaluation).

Each program runs in its own process tree: fresh user, PID, network, mount, IPC and
UTS namespaces where the kernel allows them (read-only file system, private /tmp,
no network, an unprivileged uid, no capabilities), resource limits always, a clean
environment, and nothing left running afterwards. Verdicts are decided by the
sandbox, not taken from the program. The worker side imports the standard library
only (and nothing of Keras or of the rest of this package).

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
