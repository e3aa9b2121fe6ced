"""The paths this machine would not take on its own: limits only, and the keeper process.

Limits only is what a machine without namespaces gets; the keeper is what a worker
that may not create PID namespaces itself (not real root) uses.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import warnings

import pytest

from neo_keras.evaluation.sandbox import (
    IsolationUnavailableError,
    Job,
    Limits,
    Sandbox,
    kernel,
    pool,
)
from tests.sandbox.processes import processes_of

LIMITS = Limits(timeout_s=1.0, max_processes=16)
DAEMON = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(60)\n"
    "    os._exit(0)\n"
    "print(os.getcwd(), os.getuid())\n"
)
FORK_BOMB = (
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
)


@pytest.fixture(scope="module")
def limits_only():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Sandbox(limits=LIMITS, workers=2, use_namespaces=False) as sandbox:
            yield sandbox


def test_limits_only_is_described_and_warned_once(monkeypatch):
    monkeypatch.setattr(pool, "_warned_about_isolation", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with Sandbox(limits=LIMITS, workers=1, use_namespaces=False) as sandbox:
                assert sandbox.isolation.startswith("limits only (namespaces unavailable")
    assert len(caught) == 1
    assert "without namespaces" in str(caught[0].message)


def test_require_isolation_turns_the_warning_into_an_error():
    with pytest.raises(IsolationUnavailableError, match="--require_isolation"):
        Sandbox(limits=LIMITS, workers=1, use_namespaces=False, require_isolation=True)


def test_limits_only_runs_as_an_unused_uid_and_removes_its_directory(limits_only):
    outcome = limits_only.run(Job(DAEMON))
    assert outcome.passed, outcome.stderr_tail
    work_directory, uid = outcome.stdout.decode().split()
    assert int(uid) in limits_only.sample_uids and int(uid) != 0
    assert not os.path.exists(work_directory)


def test_limits_only_leaves_no_daemon_or_fork_bomb_behind(limits_only):
    outcomes = limits_only.run_many([Job(DAEMON), Job(FORK_BOMB)], progress=False)
    assert [outcome.status for outcome in outcomes] == ["passed", "timeout"]
    assert processes_of(set(limits_only.sample_uids)) == []


def test_limits_only_verdicts(limits_only):
    programs = [
        "assert False\n",
        "import sys\nsys.exit(0)\n",
        "while True:\n    pass\n",
        "x = bytearray(8 * 1024 ** 3)\n",
    ]
    outcomes = limits_only.run_many([Job(p) for p in programs], progress=False)
    assert [o.status for o in outcomes] == ["failed", "crashed", "timeout", "memory_limit"]


LEAVE_BEHIND = """
import os
written = []
for path in ["/tmp/{name}", "/proc/self/cwd/../{name}", "/var/tmp/{name}", "/dev/shm/{name}"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        written.append(path)
    except OSError:
        pass
with open("mine", "w") as f:  # its own directory stays writable
    f.write("x")
print(written)
"""


def test_limits_only_writes_only_to_its_own_directory(limits_only):
    """Without namespaces the sample sees the host's /tmp; Landlock keeps it from writing
    there (through /proc/self/cwd/.. too), where the next sample would find what it left."""
    name = f"neo-keras-left-behind-{os.getpid()}"
    outcome = limits_only.run(Job(LEAVE_BEHIND.format(name=name)))
    try:
        assert (outcome.status, outcome.stdout) == ("passed", b"[]\n"), outcome.stderr_tail
        assert "landlock: writes only to its private directories" in limits_only.isolation
    finally:
        for directory in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.exists(os.path.join(directory, name)):
                os.remove(os.path.join(directory, name))


def test_a_walled_off_process_signals_only_processes_it_started(tmp_path):
    """What keeps a sample running as the evaluator's own uid (no namespaces, no root) from
    signalling the evaluator."""
    if not kernel.landlock_scopes_signals(kernel.landlock_abi()):
        pytest.skip("this kernel's Landlock does not scope signals (ABI 6, Linux 6.12)")
    evaluator = os.getpid()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            kernel.set_no_new_privileges()
            kernel.wall_off([str(tmp_path)], [])
            own = os.fork()
            if own == 0:
                time.sleep(30)
                os._exit(0)
            os.kill(own, signal.SIGKILL)  # its own child: allowed
            os.waitpid(own, 0)
            try:
                os.kill(evaluator, 0)
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0


@pytest.fixture(scope="module")
def keeper_worker():
    worker = pool._Worker(host_id=pool._unused_host_ids(1)[0], use_namespaces=True, direct=False)
    yield worker, worker.read_hello()
    worker.stop()


def run_on(worker: pool._Worker, job: Job) -> dict:
    reply = worker.request({"job": dataclasses.asdict(job), "limits": dataclasses.asdict(LIMITS)})
    return reply["outcome"]


def test_keeper_path_isolates_like_the_direct_one(keeper_worker):
    worker, hello = keeper_worker
    assert (hello["mode"], hello["path"]) == ("namespaces", "keeper")
    assert "own /proc" in hello["features"]
    program = "import os\nprint(os.getpid(), os.getuid(), os.listdir('/proc/1/task'))\n"
    outcome = run_on(worker, Job(program))
    assert (outcome["status"], outcome["stdout"]) == ("passed", b"1 1000 ['1']\n")


def test_keeper_path_leaves_nothing_behind(keeper_worker):
    worker, _ = keeper_worker
    started = time.monotonic()
    assert run_on(worker, Job(DAEMON))["status"] == "passed"
    assert run_on(worker, Job(FORK_BOMB))["status"] == "timeout"
    assert run_on(worker, Job("import time\ntime.sleep(30)\n"))["status"] == "timeout"
    assert time.monotonic() - started < 10 * LIMITS.timeout_s
    # Keepers of finished samples may still be tearing their namespaces down; samples may not.
    assert processes_of({worker.host_id}) == []
