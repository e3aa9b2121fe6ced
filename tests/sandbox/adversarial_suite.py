"""Hostile HumanEval completions run through the sandbox, the way the evaluator runs them.

test_adversarial.py starts this script in a process of its own, under outer limits
(wall time, address space, file size, process count), so that a sandbox bug fails the
test instead of harming the machine. It writes a JSON report the test then checks.

    python tests/sandbox/adversarial_suite.py '{"marker_dir": ..., "port": ..., ...}'
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from neo_keras.evaluation.humaneval import check_job, load_problems, problems_file
from neo_keras.evaluation.sandbox import Job, Limits, Sandbox

PROBLEM = "HumanEval/2"  # truncate_number(number) -> number % 1.0
WRONG = "    return -1.0\n"
TIMEOUT_S = 2.0
DAEMON_DELAY_S = 5.0
_GiB = 1024**3

LIMITS = Limits(
    timeout_s=TIMEOUT_S,
    memory_bytes=1 * _GiB,
    file_size_bytes=16 * 1024**2,
    max_processes=32,
    max_open_files=64,
    max_output_bytes=1024**2,
)

# name -> (completion body, statuses that count as the right failing verdict)
HOSTILE = {
    "loop_forever": ("    while True:\n        pass\n", {"timeout"}),
    "sleep_catching_everything": (
        "    import time\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(100)\n"
        "        except BaseException:\n"
        "            pass\n",
        {"timeout"},
    ),
    "ignore_alarm_and_term": (
        "    import signal, time\n"
        "    for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGXCPU):\n"
        "        signal.signal(s, signal.SIG_IGN)\n"
        "    while True:\n"
        "        time.sleep(0.01)\n",
        {"timeout"},
    ),
    "fork_bomb": (
        "    import os\n"
        "    while True:\n"
        "        try:\n"
        "            os.fork()\n"
        "        except BaseException:\n"
        "            pass\n",
        {"timeout"},
    ),
    "double_fork_daemon": (
        "    import os, time\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        if os.fork() == 0:\n"
        f"            time.sleep({DAEMON_DELAY_S})\n"
        "            for path in ({daemon_file!r}, 'daemon_was_here'):\n"
        "                try:\n"
        "                    open(path, 'w').write('the daemon survived')\n"
        "                except OSError:\n"
        "                    pass\n"
        "        os._exit(0)\n" + WRONG,
        {"failed"},
    ),
    "kill_parent": (
        "    import os, signal\n"
        "    for s in (signal.SIGTERM, signal.SIGKILL):\n"
        "        try:\n"
        "            os.kill(os.getppid(), s)\n"
        "        except OSError:\n"
        "            pass\n" + WRONG,
        {"failed"},
    ),
    "tamper_with_marker": (
        "    import os\n"
        "    try:\n"
        "        open({marker!r}, 'w').write('overwritten')\n"
        "    except OSError:\n"
        "        pass\n"
        "    try:\n"
        "        os.remove({marker!r})\n"
        "    except OSError:\n"
        "        pass\n" + WRONG,
        {"failed"},
    ),
    "connect_to_server": (
        "    import socket\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"
        "    except OSError:\n"
        "        pass\n" + WRONG,
        {"failed"},
    ),
    "read_parent_secret": (
        "    import os\n"
        "    print('secret:', os.environ.get({secret_name!r}))\n"
        "    raise RuntimeError(str(os.environ.get({secret_name!r})))\n",
        {"failed"},
    ),
    "allocate_50_gb": ("    data = bytearray(50 * 1024 ** 3)\n" + WRONG, {"memory_limit"}),
    "write_10_gb": (
        "    with open('big', 'wb') as f:\n"
        "        for _ in range(10 * 1024):\n"
        "            f.write(bytes(1024 ** 2))\n" + WRONG,
        {"failed"},
    ),
    "print_1_gb": (
        "    import sys\n"
        "    for _ in range(1024):\n"
        "        sys.stdout.write('x' * 1024 ** 2)\n" + WRONG,
        {"output_limit"},
    ),
    "unbounded_recursion": (
        "    def down(n):\n        return down(n + 1)\n    return down(0)\n",
        {"failed"},
    ),
    "thread_outlives_test": (
        "    import threading, time\n"
        "    threading.Thread(target=lambda: time.sleep(1000)).start()\n" + WRONG,
        {"failed"},
    ),
    "sys_exit_before_tests": ("    import sys\n    sys.exit(0)\n", {"failed"}),
    "os_exit_before_tests": ("    import os\n    os._exit(0)\n", {"failed"}),
    "reload_os": (
        "    import importlib, os\n"
        "    os = importlib.reload(os)\n"
        "    os.system('rm -f {marker} && echo pwned > {marker}')\n"
        "    try:\n"
        "        os.unlink({marker!r})\n"
        "    except OSError:\n"
        "        pass\n" + WRONG,
        {"failed"},
    ),
    # Forgeries: each of these passed when the test ran in the completion's process.
    "forge_report_from_frames": (
        "    import os, sys\n"
        "    frame = sys._getframe()\n"
        "    while frame is not None:\n"
        "        names = frame.f_locals\n"
        "        if 'report_fd' in names and 'token' in names:\n"
        "            os.write(names['report_fd'], (names['token'] + '\\tpassed\\t').encode())\n"
        "            os._exit(0)\n"
        "        frame = frame.f_back\n" + WRONG,
        {"failed"},
    ),
    "forge_report_from_gc": (
        "    import gc, os\n"
        "    objects = gc.get_objects()\n"
        "    header = next(o for o in objects if type(o).__name__ == 'Header')\n"
        "    fds = next(o for o in objects if type(o).__name__ == 'SampleFds')\n"
        "    os.write(fds.report, (header.token + '\\tpassed\\t').encode())\n"
        "    os._exit(0)\n",
        {"failed"},
    ),
    "patch_sandbox_modules": (
        "    import sys\n"
        "    for name, module in list(sys.modules.items()):\n"
        "        if name.endswith('.job'):\n"
        "            module.FAILED = 'passed'\n"
        "        if name.endswith('.runner'):\n"
        "            original = module.encode_report\n"
        "            module.encode_report = lambda token, status, detail: original(\n"
        "                token, 'passed', '')\n" + WRONG,
        {"failed"},
    ),
    "always_equal": (
        "    class Everything:\n"
        "        __eq__ = __lt__ = lambda self, other: True\n"
        "        __sub__ = __rsub__ = __abs__ = lambda self, *other: self\n"
        "    return Everything()\n",
        {"failed"},
    ),
    # Escapes: each answers right only if the sandbox let it through.
    "memfd_past_the_memory_limit": (
        "    import os\n"
        "    fd = os.memfd_create('hoard')\n"
        "    os.posix_fallocate(fd, 0, 2 * 1024 ** 3)\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "processes_past_the_memory_limit": (
        "    import os, time\n"
        "    children = []\n"
        "    for _ in range(3):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            block = bytearray(600 * 1024 ** 2)\n"
        "            time.sleep(0.5)\n"
        "            os._exit(0)\n"
        "        children.append(pid)\n"
        "    if all(os.waitpid(pid, 0)[1] == 0 for pid in children):\n"
        "        return number % 1.0\n" + WRONG,
        # On a loaded machine filling 1.8 GB can outlast the deadline; it must never pass.
        {"memory_limit", "timeout"},
    ),
    "connect_to_host_unix_socket": (
        "    import socket\n"
        "    client = socket.socket(socket.AF_UNIX)\n"
        "    client.connect({unix_socket!r})\n"
        "    client.sendall(b'leak')\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "lower_own_oom_score": (
        "    with open('/proc/self/oom_score_adj') as f:\n"
        "        print('oom_score_adj', f.read().strip())\n"
        "    with open('/proc/self/oom_score_adj', 'w') as f:\n"
        "        f.write('0')\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "read_the_answer_key": (
        "    import gzip, json\n"
        "    with gzip.open({answer_key!r}, 'rt') as f:\n"
        "        problems = [json.loads(line) for line in f]\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    # Not hostile: what APPS solutions may import stays importable.
    "uses_numpy": (
        "    import numpy\n    return float(numpy.float64(number) % 1.0)\n",
        {"passed"},
    ),
    "write_to_visible_fifo": (
        "    import os\n"
        "    fifo = os.open({visible_fifo!r}, os.O_WRONLY | os.O_NONBLOCK)\n"
        "    os.write(fifo, b'leak')\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "open_device_node_in_view": (
        "    with open({device!r}, 'rb') as device:\n"
        "        device.read(1)\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "io_uring": (
        "    import ctypes\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    params = ctypes.create_string_buffer(120)\n"
        "    ring = libc.syscall(425, 8, params)  # io_uring_setup: 425 on x86_64 and arm64\n"
        "    if ring >= 0:\n"
        "        return number % 1.0\n" + WRONG,
        {"failed"},
    ),
    "unix_datagram_socketpair": (
        "    import socket\n"
        "    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "    ends[0].sendto(b'leak', {unix_socket!r})\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "vsock_socket": (
        "    import socket\n"
        "    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "write_to_host_fifo": (
        "    import os\n"
        "    fifo = os.open({fifo!r}, os.O_WRONLY | os.O_NONBLOCK)\n"
        "    os.write(fifo, b'leak')\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "ipc_objects_that_outlive_the_sample": (
        "    import ctypes\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    created = [libc.msgget(0, 0o1600), libc.semget(0, 1, 0o1600),\n"
        "               libc.mq_open(b'/left-behind', 0o102, 0o600, None)]\n"
        "    if any(result >= 0 for result in created):\n"
        "        return number % 1.0\n" + WRONG,
        {"failed"},
    ),
    "foreign_abi_system_call": (
        "    import ctypes, mmap, platform\n"
        "    if platform.machine() != 'x86_64':\n"
        "        return -1.0\n"
        "    # mov eax, 20 (i386 getpid); int 0x80; ret\n"
        "    code = bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3])\n"
        "    page = mmap.mmap(-1, mmap.PAGESIZE, prot=7)\n"
        "    page.write(code)\n"
        "    address = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
        "    call = ctypes.CFUNCTYPE(ctypes.c_int)(address)\n"
        "    if call() > 0:\n"
        "        return number % 1.0\n" + WRONG,
        {"failed"},
    ),
    "open_host_ptmx": (
        "    import os\n"
        "    os.close(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))\n"
        "    return number % 1.0\n",
        {"failed"},
    ),
    "catch_timeout_then_answer": (
        "    import time\n"
        "    try:\n"
        f"        time.sleep({TIMEOUT_S + 1})\n"
        "    except BaseException:\n"
        "        pass\n"
        "    return number % 1.0\n",
        {"timeout"},
    ),
}
KILL_EVERYTHING = (
    "    import os, signal\n"
    "    for s in (signal.SIGTERM, signal.SIGKILL):\n"
    "        try:\n"
    "            os.kill(-1, s)\n"
    "        except OSError:\n"
    "            pass\n" + WRONG
)
# A whole program that forges the sandbox's "could not confine" record on every
# descriptor it might have: it must fail this sample and nothing else.
FORGE_SETUP_FAILED = """
import gc, os
token = next(o for o in gc.get_objects() if type(o).__name__ == 'Header').token
for fd in range(3, 64):
    for status in ("setup_failed", "passed"):
        try:
            os.write(fd, (token + "\\t" + status + "\\tforged\\n").encode())
        except OSError:
            pass
raise SystemExit(1)
"""
PROBE = """
import json, os
print(json.dumps({
    "uid": os.getuid(),
    "euid": os.geteuid(),
    "pid_namespace": os.readlink("/proc/self/ns/pid"),
    "uid_map": [line.split() for line in open("/proc/self/uid_map")],
}))
"""


def limit_this_process() -> None:
    """The outer limits; workers and samples inherit them unless the sandbox lowers them."""
    for which, value in (
        (resource.RLIMIT_AS, 8 * _GiB),
        (resource.RLIMIT_FSIZE, 1 * _GiB),
        (resource.RLIMIT_NPROC, 4096),
        (resource.RLIMIT_CPU, 600),
    ):
        resource.setrlimit(which, (value, value))


def host_uid(uid: int, uid_map: list[list[str]]) -> int | None:
    """The host uid behind `uid`, from the sample's /proc/self/uid_map lines."""
    for inside, outside, count in ((int(a), int(b), int(c)) for a, b, c in uid_map):
        if inside <= uid < inside + count:
            return outside + uid - inside
    return None


def confinement_check(sandbox: Sandbox) -> dict:
    """Whether a sample runs neither as root nor in this process's PID namespace."""
    outcome = sandbox.run(Job(PROBE))
    probe = json.loads(outcome.stdout)
    outer = host_uid(probe["uid"], probe["uid_map"])
    return {
        "status": outcome.status,
        "not_root": probe["uid"] != 0 and probe["euid"] != 0 and outer not in (0, None),
        "own_pid_namespace": probe["pid_namespace"] != os.readlink("/proc/self/ns/pid"),
        "probe": probe,
    }


def processes_of(uids: set[int]) -> list[str]:
    """Processes whose real uid is one of `uids`, as 'pid command' strings."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields["Uid"].split()[0]) in uids:
            found.append(f"{entry} {fields['Name'].strip()}")
    return found


def outcome_record(outcome) -> dict:
    return {
        "status": outcome.status,
        "result": outcome.result,
        "stdout_head": outcome.stdout[:2000].decode("utf-8", "replace"),
        "stdout_bytes": len(outcome.stdout),
        "stderr_tail": outcome.stderr_tail,
        "duration_s": outcome.duration_s,
    }


def main(config: dict) -> dict:
    limit_this_process()
    problem = next(p for p in load_problems() if p.task_id == PROBLEM)
    daemon_file = os.path.join(config["marker_dir"], "daemon.txt")
    names = {
        "marker": config["marker"],
        "port": config["port"],
        "unix_socket": config["unix_socket"],
        "fifo": config["fifo"],
        "device": config["device"],
        "visible_fifo": config["visible_fifo"],
        "answer_key": problems_file(),
        "secret_name": config["secret_name"],
        "daemon_file": daemon_file,
    }
    report: dict = {"cases": {}, "expected": {}}
    with Sandbox(limits=LIMITS, workers=2) as sandbox:
        report["isolation"] = sandbox.isolation
        report["sample_uids"] = sorted(set(sandbox.sample_uids))
        workers_before = [worker.process.pid for worker in sandbox._workers]
        report["worker_pids"] = workers_before
        report["confinement"] = check = confinement_check(sandbox)
        jobs = {
            name: check_job(problem, body.format(**names)) for name, (body, _) in HOSTILE.items()
        }
        started = time.monotonic()
        outcomes = sandbox.run_many(list(jobs.values()), progress=False)
        for name, outcome in zip(jobs, outcomes, strict=True):
            report["cases"][name] = outcome_record(outcome)
            report["expected"][name] = sorted(HOSTILE[name][1])
        if check["not_root"] and check["own_pid_namespace"] and check["status"] == "passed":
            kill_everything = sandbox.run(check_job(problem, KILL_EVERYTHING))
            report["cases"]["kill_everything"] = outcome_record(kill_everything)
        else:
            report["cases"]["kill_everything"] = {
                "status": "not run: the sample could be root or share this PID namespace"
            }
        report["expected"]["kill_everything"] = ["failed"]
        report["cases"]["forge_setup_failed"] = outcome_record(sandbox.run(Job(FORGE_SETUP_FAILED)))
        report["expected"]["forge_setup_failed"] = ["crashed"]
        # Give the daemon its chance to write, had it survived.
        time.sleep(max(0.0, started + DAEMON_DELAY_S + 1.0 - time.monotonic()))
        report["leftover_processes"] = processes_of(set(sandbox.sample_uids))
        correct = sandbox.run(check_job(problem, problem.canonical_solution))
        report["correct_after"] = outcome_record(correct)
        report["workers_unchanged"] = workers_before == [w.process.pid for w in sandbox._workers]
    report["daemon_file_exists"] = os.path.exists(daemon_file)
    report["evaluator_alive"] = True
    return report


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    result = main(settings)
    with open(settings["report"], "w") as f:
        json.dump(result, f)
