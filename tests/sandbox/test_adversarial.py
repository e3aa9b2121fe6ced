"""The sandbox against hostile completions (adversarial_suite.py), run under outer limits.

The suite runs in a process of its own with a wall-clock limit and inherited rlimits;
this module owns the marker files, the TCP server and the secret, and checks what
the suite could not have faked: files, connections, leftover processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests.sandbox import adversarial_suite

SUITE = Path(adversarial_suite.__file__)
SECRET_NAME = "NEO_KERAS_SANDBOX_TEST_SECRET"
OUTER_TIMEOUT_S = 150
MARKER_TEXT = "owned by the test\n"
HOSTILE = sorted(adversarial_suite.HOSTILE)


class RecordingServer:
    """A server that records every connection and byte it receives: TCP on 127.0.0.1, or
    a unix socket at `path` that anyone may connect to."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._listener = socket.create_server(("127.0.0.1", 0))
            self.port = self._listener.getsockname()[1]
        else:
            self._listener = socket.socket(socket.AF_UNIX)
            self._listener.bind(str(path))
            path.chmod(0o777)
            self._listener.listen()
        self._listener.settimeout(0.2)
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with connection:
                connection.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received += connection.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()


class RecordingFifo:
    """A FIFO at `path` that anyone may write to; `received()` reads what was written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        path.chmod(0o666)
        self._reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def received(self) -> bytes:
        try:
            return os.read(self._reader, 65536)
        except BlockingIOError:  # open for writing somewhere, and empty
            return b""

    def close(self) -> None:
        os.close(self._reader)


def processes_matching(uids: set[int], session: int) -> list[str]:
    """Live processes whose real uid is in `uids` or whose session id is `session`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                uid = int(next(line for line in f if line.startswith("Uid:")).split()[1])
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except (OSError, StopIteration):
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if uid in uids or int(fields[3]) == session:
            found.append(f"{entry}: {stat[:80]!r}")
    return found


@dataclasses.dataclass
class SuiteRun:
    report: dict
    marker: Path
    marker_dir: Path
    server: RecordingServer
    unix_server: RecordingServer
    fifo_received: bytes
    secret: str
    session: int


def _marker_directory() -> Path:
    # Outside /tmp (which the sample's /tmp hides) and world-writable with a world-writable
    # marker: only the sandbox, not file permissions, stands between a sample and the file.
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    directory = Path(tempfile.mkdtemp(prefix="neo-keras-sandbox-marker-", dir=base))
    directory.chmod(0o777)
    return directory


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory) -> SuiteRun:
    marker_dir = _marker_directory()
    marker = marker_dir / "marker.txt"
    marker.write_text(MARKER_TEXT)
    marker.chmod(0o666)
    server = RecordingServer()
    unix_server = RecordingServer(marker_dir / "service.sock")
    fifo = RecordingFifo(marker_dir / "service.fifo")
    secret = secrets.token_hex(16)
    # A device node (a copy of /dev/zero) where every sample sees it: in the standard library.
    device = Path(os.__file__).parent / f"neo-keras-sandbox-device-{secret[:8]}"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    device.chmod(0o666)
    # And a FIFO beside it, which read-only mounts do not stop a writer from opening.
    visible_fifo = RecordingFifo(Path(os.__file__).parent / f"neo-keras-sandbox-fifo-{secret[:8]}")
    report_path = tmp_path_factory.mktemp("adversarial") / "report.json"
    config = {
        "marker_dir": str(marker_dir),
        "marker": str(marker),
        "port": server.port,
        "unix_socket": str(marker_dir / "service.sock"),
        "fifo": str(marker_dir / "service.fifo"),
        "device": str(device),
        "visible_fifo": str(visible_fifo.path),
        "secret_name": SECRET_NAME,
        "report": str(report_path),
    }
    process = subprocess.Popen(
        [sys.executable, str(SUITE), json.dumps(config)],
        env={**os.environ, SECRET_NAME: secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        _, stderr = process.communicate(timeout=OUTER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"the adversarial suite overran {OUTER_TIMEOUT_S} s: {stderr[-3000:]!r}")
    finally:
        device.unlink()
        visible_fifo_received = visible_fifo.received()
        visible_fifo.close()
        visible_fifo.path.unlink()
        server.close()
        unix_server.close()
        fifo_received = fifo.received()
        fifo.close()
    assert process.returncode == 0, stderr.decode(errors="replace")[-5000:]
    run = SuiteRun(
        json.loads(report_path.read_text()),
        marker,
        marker_dir,
        server,
        unix_server,
        fifo_received + visible_fifo_received,
        secret,
        process.pid,
    )
    yield run
    shutil.rmtree(marker_dir, ignore_errors=True)


@pytest.mark.parametrize("name", [*HOSTILE, "kill_everything"])
def test_hostile_completion_gets_the_right_failing_verdict(suite_run, name):
    case = suite_run.report["cases"][name]
    assert case["status"] in suite_run.report["expected"][name], case


@pytest.mark.parametrize(
    ("name", "exception"),
    [
        ("double_fork_daemon", "AssertionError"),
        ("kill_parent", "AssertionError"),
        ("kill_everything", "AssertionError"),
        ("tamper_with_marker", "AssertionError"),
        ("connect_to_server", "AssertionError"),
        ("reload_os", "AssertionError"),
        ("thread_outlives_test", "AssertionError"),
        ("write_10_gb", "OSError"),
        ("unbounded_recursion", "RecursionError"),
        ("read_parent_secret", "RuntimeError: None"),
        ("memfd_past_the_memory_limit", "PermissionError"),
        ("connect_to_host_unix_socket", "PermissionError"),
        ("unix_datagram_socketpair", "PermissionError"),
        ("vsock_socket", "PermissionError"),
        ("open_host_ptmx", "FileNotFoundError"),
        ("open_device_node_in_view", "PermissionError"),
        ("write_to_visible_fifo", "PermissionError"),
        ("read_the_answer_key", "FileNotFoundError"),
    ],
)
def test_failures_name_the_exception(suite_run, name, exception):
    # Reaching the test's assertion shows the hostile action did not break the sample's run.
    assert exception in suite_run.report["cases"][name]["result"]


def test_limits_stop_samples_well_before_the_deadline(suite_run):
    cases = suite_run.report["cases"]
    for name in (
        "allocate_50_gb",
        "write_10_gb",
        "print_1_gb",
        "thread_outlives_test",
        "sys_exit_before_tests",
        "os_exit_before_tests",
    ):
        assert cases[name]["duration_s"] < adversarial_suite.TIMEOUT_S, (name, cases[name])
    assert cases["print_1_gb"]["stdout_bytes"] <= adversarial_suite.LIMITS.max_output_bytes


def test_marker_files_are_untouched(suite_run):
    assert suite_run.marker.read_text() == MARKER_TEXT
    names = sorted(p.name for p in suite_run.marker_dir.iterdir())
    assert names == ["marker.txt", "service.fifo", "service.sock"]
    assert not suite_run.report["daemon_file_exists"]


@pytest.mark.parametrize("server", ["server", "unix_server"])
def test_servers_received_nothing(suite_run, server):
    assert getattr(suite_run, server).connections == 0
    assert getattr(suite_run, server).received == b""


def test_the_host_fifo_received_nothing(suite_run):
    assert suite_run.fifo_received == b""


def test_samples_are_the_first_the_oom_killer_takes(suite_run):
    case = suite_run.report["cases"]["lower_own_oom_score"]
    assert "oom_score_adj 1000" in case["stdout_head"]
    assert "PermissionError" in case["result"]  # and cannot lower it back


def test_secret_never_reaches_a_sample(suite_run):
    everything = json.dumps(suite_run.report["cases"])
    assert suite_run.secret not in everything
    assert "secret: None" in suite_run.report["cases"]["read_parent_secret"]["stdout_head"]


def test_kill_everything_ran_only_after_confinement_was_checked(suite_run):
    confinement = suite_run.report["confinement"]
    assert confinement["not_root"] and confinement["own_pid_namespace"], confinement
    assert suite_run.report["cases"]["kill_everything"]["status"] == "failed"


def test_no_process_from_the_suite_is_left(suite_run):
    assert suite_run.report["leftover_processes"] == []
    uids = set(suite_run.report["sample_uids"])
    assert processes_matching(uids, suite_run.session) == []
    assert not [pid for pid in suite_run.report["worker_pids"] if Path(f"/proc/{pid}").exists()]


def test_evaluator_survives_and_a_correct_sample_still_passes(suite_run):
    assert suite_run.report["evaluator_alive"]
    assert suite_run.report["workers_unchanged"]
    assert suite_run.report["correct_after"]["status"] == "passed"
