"""The whole system on any machine: corpus, tokenizer, TFDS build, training, pass@k, export.

Runs each user-facing command in turn on the Python standard library of this interpreter,
then writes a report (training curve, pass@k table, tokens/s, MFU):

    python -m neo_keras.demo                  # under 10 minutes on 2 CPU cores
    DEMO_FAST=1 python -m neo_keras.demo      # about 3 minutes, a smaller everything
    python -m neo_keras.demo --steps=train,report

Every step reuses what an earlier run built, so any step can be rerun alone.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from absl import app, flags

STEPS = ("corpus", "tokenizer", "dataset", "train", "evaluate", "export", "report")

flags.DEFINE_string("output_dir", None, "Where the demo writes (default demo_output[_fast]).")
flags.DEFINE_bool("fast", os.environ.get("DEMO_FAST", "") not in ("", "0"), "The quick variant.")
flags.DEFINE_list("steps", list(STEPS), f"Steps to run, of {', '.join(STEPS)}.")

# Standard-library folders that are not library code, or are mostly data.
_EXCLUDED = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "site-packages",
    "__pycache__",
    "unittest",
}
_FAST_PACKAGES = ("json", "email", "http", "urllib", "logging", "concurrent", "xml", "importlib")


@dataclasses.dataclass(frozen=True)
class Scale:
    packages: tuple[str, ...] | None  # None: every package
    vocab_size: int
    sequence_length: int
    train_flags: tuple[str, ...]
    problems: int
    samples: int
    max_new_tokens: int


FULL = Scale(None, 8192, 256, (), 164, 10, 96)
FAST = Scale(
    _FAST_PACKAGES,
    2048,
    128,
    (
        "--train_steps=30",
        "--eval_every=10",
        "--save_every=10",
        "--batch_size=8",
        "--warmup_steps=5",
        "--eval_steps=4",
    ),
    12,
    2,
    32,
)


class Paths:
    """Where each step of the demo puts its artefact."""

    def __init__(self, root: Path):
        self.root = root
        self.sources = root / "sources"
        self.corpus = root / "corpus"
        self.tokenizer = root / "tokenizer"
        self.tfds = root / "tfds"
        self.run = root / "run"
        self.evaluation = root / "humaneval"
        self.export = root / "export_hf"
        self.curve = root / "training_curve.png"


def run_command(command: list[str]) -> None:
    """Runs one of the project's commands as a user would, echoing it first."""
    print(f"\n$ {shlex.join(command)}", flush=True)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(command, check=True, env=environment)


def python_module(module: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", module, *arguments]


def step_corpus(paths: Paths, scale: Scale) -> None:
    if list(paths.corpus.glob("train/*.jsonl.zst")):
        print(f"corpus: reusing {paths.corpus}")
        return
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.rmtree(paths.sources, ignore_errors=True)
    packages = scale.packages or sorted(
        p.name
        for p in stdlib.iterdir()
        if p.is_dir() and p.name not in _EXCLUDED and (p / "__init__.py").exists()
    )
    ignore = shutil.ignore_patterns("__pycache__", "test", "tests")
    for package in packages:  # each package is one "repository" of the corpus
        shutil.copytree(stdlib / package, paths.sources / package, ignore=ignore)
    run_command(
        python_module(
            "neo_keras.make_corpus",
            str(paths.sources),
            f"--output={paths.corpus}",
            "--validation_fraction=0.1",
            "--test_fraction=0.1",
            "--overwrite",
        )
    )


def step_tokenizer(paths: Paths, scale: Scale) -> None:
    if (paths.tokenizer / "tokenizer.json").exists():
        print(f"tokenizer: reusing {paths.tokenizer}")
        return
    from neo_keras.data.tokenizer_training import train_tokenizer_on_corpus

    start = time.perf_counter()
    train_tokenizer_on_corpus(paths.corpus, paths.tokenizer, vocab_size=scale.vocab_size)
    print(
        f"tokenizer: {scale.vocab_size} byte-level BPE tokens trained in "
        f"{time.perf_counter() - start:.0f} s -> {paths.tokenizer}"
    )


def step_dataset(paths: Paths, scale: Scale) -> None:
    if glob.glob(str(paths.tfds / "codeclippy" / "demo" / "*" / "dataset_info.json")):
        print(f"dataset: reusing codeclippy/demo in {paths.tfds}")
        return
    config = json.dumps(
        {
            "name": "demo",
            "tokenizer": str(paths.tokenizer),
            "sequence_length": scale.sequence_length,
        }
    )
    tfds_cli = str(Path(sys.executable).with_name("tfds"))
    run_command(
        [
            tfds_cli,
            "build",
            "data_builders/codeclippy",
            f"--manual_dir={paths.corpus}",
            f"--config={config}",
            f"--data_dir={paths.tfds}",
        ]
    )


def step_train(paths: Paths, scale: Scale) -> None:
    run_command(
        python_module(
            "neo_keras.train",
            "--flagfile=configs/demo.flags",
            f"--data_dir={paths.tfds}",
            f"--tokenizer={paths.tokenizer}",
            f"--output_dir={paths.run}",
            "--verbose=2",
            *scale.train_flags,
        )
    )


def step_evaluate(paths: Paths, scale: Scale) -> None:
    if (paths.evaluation / "summary.json").exists():
        print(f"evaluate: reusing {paths.evaluation}")
        return
    run_command(
        python_module(
            "neo_keras.evaluate",
            "--flagfile=configs/humaneval.flags",
            f"--model={paths.run}",
            "--model_name=demo gpt_neo_tiny",
            f"--output_dir={paths.evaluation}",
            f"--limit={scale.problems}",
            f"--num_samples={scale.samples}",
            f"--max_new_tokens={scale.max_new_tokens}",
            f"--batch_size={4 * scale.samples}",
            "--k=1,2,5,10",
        )
    )


def step_export(paths: Paths, scale: Scale) -> None:
    if paths.export.exists():
        print(f"export: reusing {paths.export}")
    else:
        run_command(
            python_module(
                "neo_keras.export",
                f"--model={paths.run}",
                "--format=hf",
                f"--output={paths.export}",
            )
        )
    from transformers import GPTNeoForCausalLM

    model = GPTNeoForCausalLM.from_pretrained(paths.export)
    print(
        f"export: transformers reloads {paths.export} "
        f"({sum(p.numel() for p in model.parameters()):,} parameters)"
    )


def training_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar the trainer logged to TensorBoard, as (step, value) lists."""
    import tensorflow as tf

    from neo_keras.checkpoints import RunDirectory

    scalars: dict[str, list[tuple[int, float]]] = {}
    logs = RunDirectory(str(run_dir)).logs
    for event_file in sorted(glob.glob(os.path.join(logs, "train", "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def plot_curve(scalars: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for tag, label in (("loss", "training loss"), ("val_loss", "validation loss")):
        if scalars.get(tag):
            steps, values = zip(*scalars[tag], strict=True)
            axes.plot(steps, values, marker="o" if tag == "val_loss" else None, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("cross-entropy (nats/token)")
    axes.set_title("GPT-Neo (tiny) on the Python standard library")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def step_report(paths: Paths, scale: Scale) -> None:
    scalars = training_scalars(paths.run)
    plot_curve(scalars, paths.curve)

    def mean_of_last(tag: str, count: int = 10) -> float | None:
        values = [v for _, v in scalars.get(tag, [])][-count:]
        return sum(values) / len(values) if values else None

    validation = [v for _, v in scalars.get("val_loss", [])]
    table = (paths.evaluation / "table.md").read_text() if paths.evaluation.exists() else ""
    tokens_per_second, mfu = mean_of_last("tokens_per_second"), mean_of_last("mfu")
    print("\n================ neo-keras demo report ================")
    print(f"corpus (make_corpus):      {paths.corpus}")
    print(f"tokenizer:                 {paths.tokenizer / 'tokenizer.json'}")
    print(f"TFDS dataset:              {paths.tfds / 'codeclippy' / 'demo'}")
    from neo_keras.checkpoints import RunDirectory  # loads TensorFlow: not at start

    run = RunDirectory(str(paths.run))
    print(f"training run:              {run.root}  (TensorBoard: {run.logs})")
    print(f"best checkpoint:           {run.preset('best')}")
    print(f"HumanEval samples/results: {paths.evaluation}")
    print(f"Hugging Face export:       {paths.export}")
    print(f"training curve:            {paths.curve}")
    if validation:
        print(
            f"validation loss:           {validation[0]:.3f} -> {validation[-1]:.3f} "
            f"over {len(validation)} evaluations"
        )
    if tokens_per_second:
        print(
            f"throughput:                {tokens_per_second:,.0f} tokens/s"
            + (f", MFU {100 * mfu:.1f}% of this CPU's measured matmul peak" if mfu else "")
        )
    if table:
        print("HumanEval pass@k (a model this small is expected to score about 0):")
        print(table.strip())


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    unknown = sorted(set(flags.FLAGS.steps) - set(STEPS))
    if unknown:
        raise app.UsageError(f"Unknown steps {unknown}; choose from {', '.join(STEPS)}.")
    scale = FAST if flags.FLAGS.fast else FULL
    default_root = "demo_output_fast" if flags.FLAGS.fast else "demo_output"
    paths = Paths(Path(flags.FLAGS.output_dir or default_root).resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chdir(Path(__file__).resolve().parents[1])  # configs/ and data_builders/ paths
    runners = {name: globals()[f"step_{name}"] for name in STEPS}
    start = time.perf_counter()
    for name in STEPS:
        if name in flags.FLAGS.steps:
            step_start = time.perf_counter()
            runners[name](paths, scale)
            print(f"[{name}: {time.perf_counter() - step_start:.0f} s]", flush=True)
    print(f"\nDemo finished in {(time.perf_counter() - start) / 60:.1f} minutes.")


if __name__ == "__main__":
    app.run(main)
