"""Sampling throughput of the evaluator's generator beside `transformers` `generate()`, one run.

Both sides get the same 125M-shaped GPT-Neo with the same random weights, the same HumanEval
prompts, the same sampling settings (temperature, top-p) and `--num_samples` completions of
exactly `--max_new_tokens` tokens per prompt (no stops, so both do the same work), in batches
of `--batch_size` rows. `transformers` runs with its key/value cache, left-padded batches and
`num_return_sequences`, in eager PyTorch as its users run it. Prints generated tokens per second
for each, their ratio, and the XLA compile time (paid once per shape bucket) separately. The
generator runs with each row's own copy of its prompt's cache (as `neo_keras.evaluate` decodes
below `SHARE_PROMPTS_FROM` samples a prompt; `generate()` and the SavedModel take the same
step, from their shortest prompt's end on), and from `SHARE_PROMPTS_FROM` samples a prompt
also with the samples sharing it (as `neo_keras.evaluate` then decodes). Both decode every row
from the first step, so a step is a new token of every row.

It also measures this machine's limit for one decode step, in the same run: the step must read
every weight once and the filled part of the key/value cache, a shared prompt once (bytes over
the bandwidth of an XLA reduction over 1 GiB, measured here), and do two FLOPs per parameter
per row (over the rate of an XLA float32 matmul, measured here); the larger of the two is the
limit, and the fraction of it the generator reaches is printed beside the ratio to
`transformers`. The rates are measured just before and just after each of the generator's
timings: on a VM they move with the neighbours' load, by up to 1.5x within minutes, so the
limit is taken at their mean over the timing, and the fraction is also printed at each end.
A step's time is printed with its share of the batch's prefill (the prompts' pass, once a
batch) and without it, and the prefill's rate over its prompt tokens' matmul work.

The prompts are tokenized with a byte-level BPE trained here on the HumanEval prompts (no
download); pass --tokenizer DIR (vocab.json + merges.txt, e.g. GPT-2's) to use another.

    python benchmarks/generate.py                      # 4 problems x 10 samples x 128 tokens
    python benchmarks/generate.py --problems 4 --num_samples 8 --batch_size 32   # batch 32
    python benchmarks/generate.py --size gpt_neo_1.3b --batch_size 32 --num_samples 8
    python benchmarks/generate.py --problems 164 --dtype bfloat16      # on an accelerator
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
from reference import random_reference_model  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

from neo_keras import GPTNeoCausalLM  # noqa: E402
from neo_keras.data.tokenizer import END_OF_TEXT  # noqa: E402
from neo_keras.evaluation.humaneval import load_problems  # noqa: E402
from neo_keras.evaluation.sampling import (  # noqa: E402
    SHARE_PROMPTS_FROM,
    CompletionGenerator,
    GenerationStats,
)
from neo_keras.generation.token_choice import SamplingSettings  # noqa: E402
from neo_keras.models.gpt_neo import presets  # noqa: E402
from neo_keras.training.callbacks import measured_peak_flops  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="gpt_neo_125m", choices=sorted(presets.BACKBONE_CONFIGS))
    parser.add_argument("--problems", type=int, default=4, help="first N HumanEval problems")
    parser.add_argument("--num_samples", type=int, default=10)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=20, help="rows per batch")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--tokenizer", help="directory with vocab.json and merges.txt")
    parser.add_argument(
        "--no_xla_too", action="store_true", help="also time the generator without XLA"
    )
    args = parser.parse_args()
    if args.batch_size % args.num_samples:
        parser.error("--batch_size must be a multiple of --num_samples (whole problems).")
    return args


def write_tokenizer(directory: str, prompts: list[str], source: str | None) -> None:
    if source:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(source, name), directory)
        return
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(prompts, vocab_size=8192, special_tokens=[END_OF_TEXT])
    tokenizer.save_model(directory)


def measured_bandwidth() -> float:
    """Bytes a second that an XLA reduction reads from a 1 GiB float32 array."""
    values = tf.random.uniform([256 * 1024 * 1024])
    total = tf.function(tf.reduce_sum, jit_compile=True)
    total(values).numpy()
    repeats, started = 5, time.perf_counter()
    for _ in range(repeats):
        total(values).numpy()
    return 4 * int(values.shape[0]) * repeats / (time.perf_counter() - started)


def machine_rates() -> tuple[float, float]:
    """`(bytes a second read, float32 matmul FLOP/s)` on this machine now."""
    return measured_bandwidth(), measured_peak_flops("float32")


def step_limit(model, rows: int, cached: float, bandwidth: float, flops: float) -> dict:
    """The shortest a decode step of `rows` rows can take with `cached` positions in its
    key/value cache, all rows together."""
    backbone = model.backbone
    parameters = backbone.count_params()
    weight_bytes = parameters * tf.as_dtype(model.compute_dtype).size
    cache_bytes = 2 * backbone.num_layers * cached * backbone.hidden_dim * 4
    memory = (weight_bytes + cache_bytes) / bandwidth
    compute = 2 * parameters * rows / flops
    return {
        "seconds": max(memory, compute),
        "memory_seconds": memory,
        "compute_seconds": compute,
        "bytes": weight_bytes + cache_bytes,
    }


def prefill_flops(model, prompt_tokens: int) -> float:
    """The matmul work of the prompts' pass: two FLOPs per weight of the layers per prompt
    token (the prefill needs no head; padding not counted)."""
    layers = sum(layer.count_params() for layer in model.backbone.transformer_layers)
    return 2 * layers * prompt_tokens


def time_ours(model, args, prompts, jit_compile: bool, share_prompts: bool) -> GenerationStats:
    settings = SamplingSettings(temperature=args.temperature, top_p=args.top_p, seed=0)
    generator = CompletionGenerator(
        model,
        settings,
        max_new_tokens=args.max_new_tokens,
        stop_token_ids=(),  # exactly max_new_tokens per row, like the reference
        batch_size=args.batch_size,
        jit_compile=jit_compile,
        share_prompts=share_prompts,
    )
    completions = generator.generate(prompts, args.num_samples)
    stats = generator.stats
    assert all(c.num_tokens == args.max_new_tokens for row in completions for c in row)
    return stats


def time_reference(model, tokenizer, args, prompts) -> float:
    per_call = args.batch_size // args.num_samples
    options = {
        "do_sample": True,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": 0,
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.max_new_tokens,
        "num_return_sequences": args.num_samples,
        "use_cache": True,
        "pad_token_id": tokenizer.pad_token_id,
    }

    def generate(batch: list[str]) -> int:
        inputs = tokenizer(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**inputs, **options)
        return int(output.shape[0]) * (output.shape[1] - inputs["input_ids"].shape[1])

    torch.manual_seed(0)
    generate(prompts[:1])  # warm-up
    # Prompts sorted by length, as the generator batches them.
    ordered = sorted(prompts, key=lambda p: len(tokenizer(p)["input_ids"]))
    started, tokens = time.perf_counter(), 0
    for start in range(0, len(ordered), per_call):
        tokens += generate(ordered[start : start + per_call])
    return tokens / (time.perf_counter() - started)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    prompts = [p.prompt for p in load_problems()[: args.problems]]
    with tempfile.TemporaryDirectory() as directory:
        write_tokenizer(directory, [p.prompt for p in load_problems()], args.tokenizer)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=ByteLevelBPETokenizer(
                os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt")
            )._tokenizer,
            eos_token=END_OF_TEXT,
            pad_token=END_OF_TEXT,
            padding_side="left",
        )
        reference = random_reference_model(args.size).eval()
        reference.save_pretrained(directory)
        policy = "mixed_bfloat16" if args.dtype == "bfloat16" else "float32"
        ours = GPTNeoCausalLM.from_preset(directory, dtype=policy)
    if args.dtype == "bfloat16":
        reference.to(torch.bfloat16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference.to(device)

    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    print(
        f"{args.size} ({args.dtype}), {len(prompts)} HumanEval prompts of {min(lengths)}-"
        f"{max(lengths)} tokens x {args.num_samples} samples x {args.max_new_tokens} new tokens, "
        f"batches of {args.batch_size} rows, temperature {args.temperature}, top-p {args.top_p}"
    )
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"TF {tf.__version__} ({len(tf.config.list_physical_devices('GPU'))} GPU), "
        f"torch {torch.__version__} on {device}"
    )
    # The reference first, then released: at the 1.3B shape both models, and the kernels our
    # decoding loop transposes (4.8 GB), did not fit in 24 GB together.
    reference_tps = time_reference(reference, tokenizer, args, prompts)
    del reference
    gc.collect()
    # Each row with its own copy of its prompt's cache (the step of `generate()` and the
    # SavedModel), and, with several samples a prompt, the samples sharing it
    # (`neo_keras.evaluate` from SHARE_PROMPTS_FROM samples on).
    layouts = [("own cache", False)]
    if args.num_samples >= SHARE_PROMPTS_FROM:
        layouts.append(("shared prompts", True))
    rows, stats, rates = [], {}, {}
    measured = [machine_rates()]  # before the first timing, then after each
    for layout, share in layouts:
        stats[layout] = time_ours(ours, args, prompts, True, share)
        measured.append(machine_rates())
        rates[layout] = tuple(measured[-2:])
        rows.append((f"neo-keras, {layout}", stats[layout].tokens_per_second))
        compile_text = ", ".join(
            f"{shape}: {s:.1f} s" for shape, s in stats[layout].compile_seconds.items()
        )
        print(f"XLA compile ({layout}), once per shape bucket (batch x length): {compile_text}")
    if args.no_xla_too:
        no_xla = time_ours(ours, args, prompts, False, False)
        rows.append(("neo-keras, no XLA", no_xla.tokens_per_second))
    rows.append(("transformers generate()", reference_tps))
    print(f"{'':30}{'tokens/s':>10}{'vs transformers':>17}")
    for name, tps in rows:
        print(f"{name:30}{tps:10.1f}{tps / reference_tps:16.2f}x")
    bandwidths, matmuls = [b / 1e9 for b, _ in measured], [f / 1e9 for _, f in measured]
    print(
        f"Machine, measured before and after each neo-keras timing: "
        f"{min(bandwidths):.1f}-{max(bandwidths):.1f} GB/s read, "
        f"{min(matmuls):.0f}-{max(matmuls):.0f} GFLOP/s float32 matmul."
    )
    prompt_positions = sum(lengths) / len(lengths)
    own_positions = args.max_new_tokens / 2
    batch_prompts = args.batch_size // args.num_samples
    cached = {
        "own cache": args.batch_size * (prompt_positions + own_positions),
        "shared prompts": batch_prompts * prompt_positions + args.batch_size * own_positions,
    }
    for layout, _ in layouts:
        (bandwidth_before, flops_before), (bandwidth_after, flops_after) = rates[layout]
        bandwidth = (bandwidth_before + bandwidth_after) / 2
        flops = (flops_before + flops_after) / 2

        def limit_at(bandwidth: float, flops: float, layout: str = layout) -> dict:
            return step_limit(ours, args.batch_size, cached[layout], bandwidth, flops)

        run = stats[layout]
        step = run.generate_seconds / run.decode_steps  # the prefill's share included
        alone = (run.generate_seconds - run.prefill_seconds) / run.decode_steps
        limit = limit_at(bandwidth, flops)
        ends = [limit_at(bandwidth_before, flops_before), limit_at(bandwidth_after, flops_after)]
        fractions = sorted(end["seconds"] / step for end in ends)
        prefill = prefill_flops(ours, sum(lengths)) / run.prefill_seconds
        print(
            f"{layout}: a step of {args.batch_size} rows with {cached[layout]:.0f} positions "
            f"cached in all reads {limit['bytes'] / 1e6:.0f} MB "
            f"({1e3 * limit['memory_seconds']:.1f} ms) and computes "
            f"{1e3 * limit['compute_seconds']:.1f} ms: limit {1e3 * limit['seconds']:.1f} ms "
            f"(at the rates' mean over the timing). neo-keras's step {1e3 * step:.1f} ms with "
            f"its share of the prefill, {limit['seconds'] / step:.0%} of the limit "
            f"({fractions[0]:.0%}-{fractions[1]:.0%} at the rates before and after it); the "
            f"decoding step alone {1e3 * alone:.1f} ms, {limit['seconds'] / alone:.0%}. The "
            f"prefill {run.prefill_seconds / run.batches:.2f} s a batch: its prompt tokens' "
            f"matmul work at {prefill / 1e9:.0f} GFLOP/s, {prefill / flops:.0%} of the "
            "matmul rate."
        )


if __name__ == "__main__":
    main()
