"""Workers and evaluators that die: nothing a sample started may outlive them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from neo_keras.evaluation.sandbox import Job, Limits, Sandbox
from tests.sandbox.processes import processes_of

LIMITS = Limits(timeout_s=30.0)
# Leaves a daemon behind as well, to be sure the whole tree goes.
SLEEPER = (
    "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\ntime.sleep(600)\n"
)


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def start_sleeper(sandbox: Sandbox) -> tuple[threading.Thread, list]:
    """Runs SLEEPER in a thread; returns once both of its processes are up."""
    outcomes: list = []
    runner = threading.Thread(target=lambda: outcomes.append(sandbox.run(Job(SLEEPER))))
    runner.start()
    assert wait_until(lambda: len(processes_of(set(sandbox.sample_uids))) == 2)
    return runner, outcomes


def test_a_killed_worker_is_replaced_and_its_sample_reported_crashed():
    with Sandbox(limits=LIMITS, workers=1) as sandbox:
        uids = set(sandbox.sample_uids)
        runner, outcomes = start_sleeper(sandbox)
        os.kill(sandbox._workers[0].process.pid, signal.SIGKILL)
        runner.join(timeout=10)
        assert outcomes and outcomes[0].status == "crashed"
        assert "worker died" in outcomes[0].result
        assert wait_until(lambda: processes_of(uids) == [])
        assert sandbox.run(Job("print('still here')")).stdout == b"still here\n"


def worker_half(template: int) -> int:
    """The worker process pool.Sandbox's process split off: its child in its PID namespace
    (samples are in namespaces of their own)."""
    with open(f"/proc/{template}/task/{template}/children") as f:
        children = [int(child) for child in f.read().split()]
    own = os.readlink(f"/proc/{template}/ns/pid")
    return next(child for child in children if os.readlink(f"/proc/{child}/ns/pid") == own)


def test_when_the_worker_half_dies_the_template_stops_its_sample():
    with Sandbox(limits=LIMITS, workers=1) as sandbox:
        uids = set(sandbox.sample_uids)
        runner, outcomes = start_sleeper(sandbox)
        template = sandbox._workers[0].process
        os.kill(worker_half(template.pid), signal.SIGKILL)
        runner.join(timeout=10)
        assert outcomes and outcomes[0].status == "crashed"
        assert wait_until(lambda: processes_of(uids) == [])
        # The template stopped the sample and exited by itself (exit status 0), long before
        # the sample's 30 s deadline, which only the dead worker kept, and before the
        # pool's one-second wait for it ran out and it was killed.
        assert wait_until(lambda: template.poll() is not None)
        assert template.returncode == 0


def test_when_the_evaluator_dies_its_workers_and_samples_go_too(tmp_path):
    evaluator = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from neo_keras.evaluation.sandbox import Job, Limits, Sandbox\n"
            "sandbox = Sandbox(limits=Limits(timeout_s=30.0), workers=1)\n"
            "print(sandbox.sample_uids[0], sandbox._workers[0].process.pid, flush=True)\n"
            f"sandbox.run(Job({SLEEPER!r}))\n",
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        uid, worker = map(int, evaluator.stdout.readline().split())
        assert wait_until(lambda: len(processes_of({uid})) == 2, timeout_s=30)
    finally:
        evaluator.kill()
        evaluator.wait()
    assert wait_until(lambda: processes_of({uid}) == [])
    assert wait_until(lambda: not Path(f"/proc/{worker}").exists())


def test_the_memory_cgroups_go_with_the_sandbox():
    with Sandbox(workers=1) as sandbox:
        paths = [worker.hello["memory_cgroup"] for worker in sandbox._workers]
        assert all(paths) and all(os.path.isdir(path) for path in paths)
    assert not any(os.path.exists(path) for path in paths)
