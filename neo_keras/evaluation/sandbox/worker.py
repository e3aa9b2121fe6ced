"""The sandbox worker: a warm interpreter that runs one confined process tree per sample.

pool.Sandbox starts it as `python -m neo_keras.evaluation.sandbox.worker` with a clean
environment; the package's `__init__` files import nothing, so what a sample inherits is the
standard library and this directory's modules, not the evaluator. Before it reads any job the
process splits in two (template.py): the template, which forks every sample, and the
worker, which takes jobs and watches samples. Forking a warm interpreter costs a few
milliseconds where starting a new one costs tens, and the template's memory never holds
a job or its output.

Messages are plain dicts, so nothing outside this directory is ever unpickled here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

from . import filesystem, kernel, launch, memory_cgroup, monitor, protocol, sample
from . import job as job_module
from . import template as template_module
from .errors import SandboxError

# Modules that generated programs commonly import, loaded once here instead of per sample.
PRELOADED_MODULES = (
    "array",
    "bisect",
    "cmath",
    "collections",
    "collections.abc",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "numbers",
    "operator",
    "queue",
    "random",
    "re",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "threading",
    "time",
    "typing",
    "unicodedata",
)
# Without a mount namespace the sample's uid may be unable to read the interpreter's
# directory (it often lives under /root), so more of the standard library is loaded here.
PRELOADED_WITHOUT_NAMESPACES = (
    "base64",
    "binascii",
    "csv",
    "fnmatch",
    "glob",
    "hashlib",
    "pathlib",
    "pprint",
    "secrets",
    "shutil",
    "socket",
    "subprocess",
    "tempfile",
    "uuid",
    "zlib",
)
_PROBE_LIMITS = job_module.Limits(timeout_s=30.0)


def _take_control_pipes() -> tuple[int, int]:
    """Moves the evaluator's pipes off 0 and 1 (non-inheritable), pointing 0 and 1 at /dev/null."""
    control_in, control_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    return control_in, control_out


def _probe(runner: sample.SampleRunner, control_fd: int) -> tuple[str, ...]:
    """Runs a trivial program; returns the reported features or raises SandboxError."""
    result = runner.run(job_module.Job("pass"), _PROBE_LIMITS, control_fd)
    if result.status != job_module.PASSED:
        raise SandboxError(f"{result.status}: {result.detail}; stderr: {result.stderr_tail[-500:]}")
    return result.features


def _choose_runner(
    config: dict,
    control_fd: int,
    template: template_module.Template,
    direct: launch.DirectPath,
    memory: memory_cgroup.MemoryCgroup | None,
) -> tuple[sample.SampleRunner, dict]:
    """Namespaces if a trivial program passes under them, otherwise the limits alone.

    `direct` holds descriptors opened before the process split into template and worker,
    for the direct path, which is taken if the template can make PID namespaces."""
    privileged = os.geteuid() == 0
    if privileged:
        uid, gid = config["host_uid"], config["host_gid"]
    else:
        uid, gid = os.getuid(), os.getgid()
    last_capability = kernel.last_capability()
    reason = "disabled by the caller"
    if config["use_namespaces"]:
        try:
            plan = filesystem.plan_file_system()
            if not (
                config.get("direct", True)
                and launch.can_create_pid_namespaces(direct.own_pid_namespace)
            ):
                direct = None
            runner = sample.SampleRunner(
                sample.WorkerSetup(
                    sample.NAMESPACES, uid, gid, privileged, last_capability, plan, direct
                ),
                template,
                memory,
            )
            features = _probe(runner, control_fd)
            path = "keeper" if direct is None else "direct"
            visible = [*plan.visible, *(link for link, _ in plan.links), *plan.exposures]
            details = {"features": list(features), "visible": sorted(visible), "path": path}
            return runner, details
        except (SandboxError, OSError) as error:
            reason = str(error)
    mode = sample.SETUID if privileged else sample.SHARED_UID
    runner = sample.SampleRunner(
        sample.WorkerSetup(mode, uid, gid, privileged, last_capability), template, memory
    )
    try:
        features = _probe(runner, control_fd)
    except (SandboxError, OSError) as error:
        raise SandboxError(f"the sandbox cannot run even a trivial program: {error}") from error
    return runner, {"namespaces_unavailable": reason, "features": list(features)}


def _serve(runner: sample.SampleRunner, control_in: int, control_out: int) -> None:
    while (request := protocol.receive(control_in)) is not None:
        job = job_module.Job(**request["job"])
        limits = job_module.Limits(**request["limits"])
        try:
            reply = {"outcome": runner.run(job, limits, control_in).outcome_fields()}
        except SandboxError as error:
            reply = {"error": str(error)}
        protocol.send(control_out, reply)


def _forget_source_root() -> None:
    """Drops the path this package was imported from (pool.py's PYTHONPATH) from the module
    path: the samples' view holds the interpreter's path, and must not hold the evaluator's
    source tree. Everything of this package the worker needs is imported by now."""
    source_root = os.environ.pop("PYTHONPATH", None)
    sys.path[:] = [entry for entry in sys.path if entry != source_root]


def main(config_json: str) -> None:
    """Entry point of the worker process; `config_json` comes from pool.Sandbox."""
    config = json.loads(config_json)
    _forget_source_root()
    control_in, control_out = _take_control_pipes()
    # Inherited by the template and every sample: under memory pressure the kernel kills
    # them before the evaluator (a killed worker is replaced, its sample reported crashed).
    kernel.volunteer_for_oom_kill()
    for name in PRELOADED_MODULES:
        importlib.import_module(name)
    # Opened here so that the template inherits them.
    direct = launch.DirectPath(
        own_pid_namespace=os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC),
        shared_namespaces=launch.make_shared_namespaces(),
    )
    # Before the first fork, so that the template and every sample are born inside.
    memory = memory_cgroup.MemoryCgroup.enter(
        f"neo-keras-sandbox-{os.getpid()}", config.get("memory_parent")
    )
    template = template_module.Template.split(worker_only=(control_in, control_out))
    try:
        _run(config, control_in, control_out, template, direct, memory)
    finally:
        template.close()


def _run(config, control_in, control_out, template, direct, memory) -> None:
    try:
        runner, details = _choose_runner(config, control_in, template, direct, memory)
    except (SandboxError, monitor.ControlLost) as error:
        protocol.send(control_out, {"fatal": str(error)})
        return
    setup = runner.setup
    if setup.mode != sample.NAMESPACES:
        template.preload(PRELOADED_WITHOUT_NAMESPACES)
    hello = {
        "mode": setup.mode,
        "host_uid": setup.host_uid,
        "sample_id": launch.SAMPLE_ID,
        "memory_cgroup": None if memory is None else memory.path,
    }
    protocol.send(control_out, hello | details)
    with contextlib.suppress(monitor.ControlLost):
        _serve(runner, control_in, control_out)


if __name__ == "__main__":
    main(sys.argv[1])
