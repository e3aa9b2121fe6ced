"""All samples of a sandbox share one memory allowance, and the evaluator is outside it.

Two samples that each fit their own limit, but not together the sandbox's allowance, are
killed at that allowance (`memory_limit`); before, they ran the machine itself short, and
the OOM killer could choose the evaluator.
"""

from __future__ import annotations

import os

import pytest

from neo_keras.evaluation.sandbox import Job, Limits, Sandbox, memory_cgroup

MiB = 1024 * 1024
SAMPLE_BYTES = 400 * MiB
ALLOWANCE_BYTES = 640 * MiB
# Each sample holds its memory for a while, so that the two hold it at the same time.
HOLD = f"""
import time
held = bytearray({SAMPLE_BYTES})
for page in range(0, len(held), 4096):
    held[page] = 1
time.sleep(2.0)
"""


@pytest.fixture(scope="module")
def sandbox():
    limits = Limits(timeout_s=20.0, memory_bytes=1024 * MiB)
    with Sandbox(limits=limits, workers=2, samples_memory_bytes=ALLOWANCE_BYTES) as box:
        yield box


def test_the_allowance_is_described(sandbox):
    assert "one around all samples together (0.6 GiB)" in sandbox.isolation


def test_one_sample_fits_the_allowance(sandbox):
    assert sandbox.run(Job(HOLD)).status == "passed"


def test_samples_together_are_bounded_by_the_allowance(sandbox):
    statuses = [outcome.status for outcome in sandbox.run_many([Job(HOLD)] * 2, progress=False)]
    assert "memory_limit" in statuses, statuses
    assert set(statuses) <= {"passed", "memory_limit"}, statuses


def test_the_evaluator_is_outside_the_allowance(sandbox):
    with open("/proc/self/cgroup") as f:
        own = f.read()
    assert os.path.basename(sandbox._samples_memory.path) not in own


def test_the_allowance_goes_with_the_sandbox():
    with Sandbox(workers=1, samples_memory_bytes=ALLOWANCE_BYTES) as box:
        path = box._samples_memory.path
        assert os.path.isdir(path)
        assert os.path.dirname(box._workers[0].hello["memory_cgroup"]) == path
    assert not os.path.exists(path)


def test_the_default_allowance_is_below_what_the_machine_can_spare():
    spare = memory_cgroup.spare_memory_bytes()
    with Sandbox(workers=1) as box:
        assert 0 < box._samples_memory.limit_bytes < spare


def test_closing_removes_worker_cgroups_left_inside():
    """A worker that failed to start never reported its cgroup; closing still removes it."""
    samples = memory_cgroup.SamplesCgroup.make(ALLOWANCE_BYTES)
    left = os.path.join(samples.path, "neo-keras-sandbox-never-reported")
    os.mkdir(left)
    samples.close()
    assert not os.path.exists(left) and not os.path.exists(samples.path)


def test_the_default_allowance_is_at_least_one_samples_limit():
    more_than_the_machine = 4 * memory_cgroup.spare_memory_bytes()
    samples = memory_cgroup.SamplesCgroup.make(least_bytes=more_than_the_machine)
    try:
        assert samples.limit_bytes == more_than_the_machine
    finally:
        samples.close()
