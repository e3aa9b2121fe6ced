"""How observations become verdicts, and which reports count (no processes involved)."""

from __future__ import annotations

import signal

import pytest

from neo_keras.evaluation.sandbox import monitor, runner, verdict


def observe(**overrides) -> verdict.Observation:
    fields = {
        "output_exceeded": False,
        "timed_out": False,
        "report": None,
        "wait_status": 0,
        "cpu_seconds_used": 0.1,
        "cpu_seconds_limit": 3,
    }
    return verdict.Observation(**{**fields, **overrides})


def killed_by(signum: int) -> int:
    """The wait status of a process terminated by `signum` (no core dump)."""
    return signum


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        (observe(report=("passed", "")), ("passed", "")),
        (observe(report=("failed", "AssertionError")), ("failed", "AssertionError")),
        (
            observe(output_exceeded=True, report=("passed", "")),
            ("output_limit", "output limit exceeded (100 bytes)"),
        ),
        (observe(timed_out=True, wait_status=None), ("timeout", "wall-clock time limit")),
        (observe(timed_out=True, report=("passed", "")), ("passed", "")),
        (observe(wait_status=0), ("crashed", "exited early with status 0")),
        (observe(wait_status=3 << 8), ("crashed", "exited early with status 3")),
        (observe(wait_status=killed_by(signal.SIGSEGV)), ("crashed", "killed by SIGSEGV")),
        (observe(wait_status=killed_by(signal.SIGXCPU)), ("timeout", "CPU time limit")),
        (
            observe(wait_status=killed_by(signal.SIGKILL), cpu_seconds_used=3.2),
            ("timeout", "CPU time limit"),
        ),
        (observe(wait_status=killed_by(signal.SIGKILL)), ("crashed", "killed by SIGKILL")),
        (observe(wait_status=None), ("crashed", "the sample ended without an exit status")),
    ],
)
def test_decide(observation, expected):
    assert verdict.decide(observation, max_output_bytes=100) == expected


def test_reports_need_the_job_token_and_a_known_status():
    report = runner.encode_report("t0ken", "failed", "ValueError: bad\nvalue\twith tabs")
    assert runner.decode_report(report, "t0ken") == ("failed", "ValueError: bad value with tabs")
    assert runner.decode_report(report, "other") is None
    assert runner.decode_report(b"t0ken\tpassed-ish\t", "t0ken") is None
    assert runner.decode_report(b"passed", "t0ken") is None
    assert runner.decode_report(b"", "t0ken") is None


def test_a_report_after_the_deadline_does_not_count():
    watch = monitor.Watch()
    watch.report += b"early"
    watch.timed_out, watch.report_at_deadline = True, b"early"
    watch.report += b" and late"
    assert watch.timely_report() == b"early"
    assert monitor.Watch(report=bytearray(b"in time")).timely_report() == b"in time"
