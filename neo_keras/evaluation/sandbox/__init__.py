"""Execution sandbox for generated programs (pass@k evaluation).

Each program runs in its own process tree, forked from a template that never holds a
job: fresh user, PID and mount namespaces and empty network and IPC ones where the
kernel allows them (a read-only root of its own with only the system's and the
interpreter's directories, private /tmp, a minimal /dev, no network, an unprivileged uid,
no capabilities), a seccomp filter, resource limits always, a memory cgroup where one can
be made, a clean environment, and nothing left running afterwards. A job with a test
runs the test in a process apart from the program, so that the program cannot reach its
own verdict (harness.py). The worker side imports the standard library only (and nothing
of Keras or of the rest of this package).

    with Sandbox(limits=Limits(timeout_s=3.0)) as sandbox:
        outcomes = sandbox.run_many(jobs)
"""

from neo_keras.lazy import lazy_names

# Imported on first use: the worker runs as `python -m neo_keras.evaluation.sandbox.worker`
# and must not load the evaluator's side (pool.py and its progress bars) into the
# interpreter every sample is forked from.
_NAMES = {
    "STATUSES": ".job",
    "IsolationUnavailableError": ".errors",
    "Job": ".job",
    "Limits": ".job",
    "Outcome": ".job",
    "Sandbox": ".pool",
    "SandboxError": ".errors",
}
__all__ = list(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
