"""Turns what the sandbox observed about a sample into its status and detail.

The harness decides: the output limit, the memory cgroup's limit and the wall-clock
deadline take precedence, then the sample's report (written only when the program
reached its end or raised), then how the process ended.
"""

from __future__ import annotations

import dataclasses
import os
import signal

from . import job as job_module


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the monitor saw; `report` is (status, detail) when a valid one arrived in time."""

    output_exceeded: bool
    timed_out: bool
    report: tuple[str, str] | None
    wait_status: int | None  # of the process that ran the program
    cpu_seconds_used: float
    cpu_seconds_limit: int
    oom_killed: bool = False  # the kernel killed one of its processes at the cgroup's limit


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ended_by_cpu_limit(observation: Observation, signum: int) -> bool:
    if signum == signal.SIGXCPU:
        return True
    # The hard CPU limit kills with SIGKILL one second after the soft one.
    return (
        signum == signal.SIGKILL and observation.cpu_seconds_used >= observation.cpu_seconds_limit
    )


def decide(observation: Observation, max_output_bytes: int) -> tuple[str, str]:
    """(status, detail) for one sample."""
    if observation.output_exceeded:
        return job_module.OUTPUT_LIMIT, f"output limit exceeded ({max_output_bytes} bytes)"
    if observation.oom_killed:
        return job_module.MEMORY_LIMIT, "memory limit of the sample's processes together"
    if observation.report is not None:
        return observation.report
    if observation.timed_out:
        return job_module.TIMEOUT, "wall-clock time limit"
    status = observation.wait_status
    if status is None:
        return job_module.CRASHED, "the sample ended without an exit status"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if _ended_by_cpu_limit(observation, signum):
            return job_module.TIMEOUT, "CPU time limit"
        return job_module.CRASHED, f"killed by {_signal_name(signum)}"
    return job_module.CRASHED, f"exited early with status {os.waitstatus_to_exitcode(status)}"
