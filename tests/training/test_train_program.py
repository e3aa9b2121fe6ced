"""The training program: flagfiles, learning, checkpoints, resumption, and refusals."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import flags

from neo_keras import GPTNeoCausalLM
from neo_keras.data.builder_support import token_features
from neo_keras.data.pipeline import DatasetNotBuiltError
from neo_keras.training.config import ConfigurationError, TrainConfig
from neo_keras.training.run import train
from tests.models.hf_fixtures import train_tokenizer

REPO = Path(__file__).resolve().parents[2]
LENGTH = 16
FEATURES = ("input_ids", "attention_mask", "loss_mask")


def counting_examples(count: int, seed: int):
    """Sequences that count upwards from a random start: easy to learn, so the loss falls."""
    rng = np.random.default_rng(seed)
    ids = [
        ((rng.integers(0, 30) + np.arange(LENGTH)) % 30 + 1).astype("int32") for _ in range(count)
    ]
    ones = np.ones(LENGTH, "uint8")
    return tf.data.Dataset.from_tensor_slices(
        {
            "input_ids": np.stack(ids),
            "attention_mask": np.stack([ones] * count),
            "loss_mask": np.stack([ones] * count),
        }
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("tfds"))
    features = token_features(LENGTH)
    tfds.dataset_builders.store_as_tfds_dataset(
        name="counting",
        version="1.0.0",
        features=features,
        split_datasets={"train": counting_examples(64, 0), "validation": counting_examples(8, 1)},
        config="tiny",
        data_dir=directory,
    )
    return directory


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("tokenizer"))
    train_tokenizer(directory)
    return directory


def tiny_overrides(data_dir: str, tokenizer_dir: str, output_dir: str) -> list[str]:
    return [
        "--init=scratch",
        "--model_size=gpt_neo_tiny",
        f"--tokenizer={tokenizer_dir}",
        "--dataset=counting/tiny",
        f"--data_dir={data_dir}",
        f"--output_dir={output_dir}",
        "--batch_size=4",
        "--micro_batch_size=2",
        "--train_steps=2",
        "--warmup_steps=1",
        "--eval_every=2",
        "--save_every=2",
        "--shuffle_buffer=64",
        "--verbose=0",
        "--peak_tflops=1",
        "--strategy=cpu",  # configs/tpu_smoke.flags asks for a TPU
    ]


def config_from_flags(argv: list[str]) -> TrainConfig:
    import neo_keras.train  # noqa: F401  (defines the flags)

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", *argv])
    return TrainConfig(
        **{f.name: flags.FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)}
    )


def base_config(data_dir, tokenizer_dir, output_dir, **changes) -> TrainConfig:
    config = config_from_flags(tiny_overrides(data_dir, tokenizer_dir, str(output_dir)))
    return dataclasses.replace(config, **changes)


# Evaluation flagfiles belong to neo_keras.evaluate; every other flagfile is a training run.
EVALUATION_FLAGFILES = {"humaneval.flags", "apps_eval.flags"}
FLAGFILES = sorted(
    p.name for p in (REPO / "configs").glob("*.flags") if p.name not in EVALUATION_FLAGFILES
)


@pytest.mark.parametrize("flagfile", FLAGFILES)
def test_flagfile_parses_and_trains_two_steps(
    flagfile, data_dir, tokenizer_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO)  # flagfiles include each other by repository-relative paths
    config = config_from_flags(
        [f"--flagfile=configs/{flagfile}", *tiny_overrides(data_dir, tokenizer_dir, str(tmp_path))]
    )
    final = train(config)
    assert final["step"] == 2
    assert np.isfinite(final["loss"]) and np.isfinite(final["val_loss"])


def test_the_tpu_smoke_run_stops_at_once_without_a_tpu(data_dir, tokenizer_dir, tmp_path):
    from neo_keras.accelerators import AcceleratorError

    overrides = tiny_overrides(data_dir, tokenizer_dir, str(tmp_path))
    config = config_from_flags(
        [
            f"--flagfile={REPO}/configs/tpu_smoke.flags",
            *[flag for flag in overrides if not flag.startswith("--strategy")],
        ]
    )
    assert config.strategy == "tpu"
    with pytest.raises(AcceleratorError, match="Cannot reach TPU"):
        train(config)
    assert not (tmp_path / "run_config.json").exists()


def resolved_flagfile(flagfile: str) -> TrainConfig:
    return config_from_flags([f"--flagfile=configs/{flagfile}"])


def test_every_run_writes_to_its_own_output_dir_and_gives_one_run_length(monkeypatch):
    monkeypatch.chdir(REPO)
    configs = {name: resolved_flagfile(name) for name in FLAGFILES}
    output_dirs = [config.output_dir for config in configs.values()]
    assert len(set(output_dirs)) == len(output_dirs), output_dirs
    for name, config in configs.items():
        # Both given, --train_steps silently wins: a flagfile must not rely on that.
        assert bool(config.train_steps) != bool(config.epochs), name


def test_every_accelerator_run_fits_the_hardware_it_names(monkeypatch):
    from neo_keras.memory_plan import builder_sequence_length
    from neo_keras.models.gpt_neo import presets
    from neo_keras.training.memory_plan import accelerator, memory_plan_of

    monkeypatch.chdir(REPO)
    for name in FLAGFILES:
        config = resolved_flagfile(name)
        if name == "demo.flags":  # a laptop's CPU
            assert not config.accelerator
            continue
        hardware = accelerator(config.accelerator)
        length = builder_sequence_length(config.dataset)
        assert length, f"{name}: no builder config for {config.dataset}"
        size = config.model_size if config.init == "scratch" else config.init
        plan = memory_plan_of(config, presets.backbone_config(size), length, hardware.replicas)
        assert plan.fits(hardware.replica_bytes), (name, plan.table(hardware.replica_bytes))


def test_small_datasets_are_trained_for_epochs_and_warmup_fits_the_run(monkeypatch):
    monkeypatch.chdir(REPO)
    for name in ("code_search_net_all.flags", "code_search_net_python.flags", "scratch.flags"):
        config = resolved_flagfile(name)
        assert config.epochs and not config.train_steps, name
        assert config.decay_steps is None, name  # the cosine ends with the run, however long


def test_a_run_of_many_epochs_or_all_warmup_is_warned_about(caplog):
    from neo_keras.training.config import warn_about_run_length

    config = TrainConfig(output_dir="unused", dataset="code_search_net/python", warmup_steps=800)
    with caplog.at_level("WARNING"):
        warn_about_run_length(config, steps=20_000, steps_per_epoch=50)
        warn_about_run_length(config, steps=400, steps_per_epoch=400)
    messages = [record.getMessage() for record in caplog.records]
    assert any("400 passes over code_search_net/python" in m for m in messages), messages
    assert any("never reaches --learning_rate" in m for m in messages), messages
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_about_run_length(config, steps=2_000, steps_per_epoch=400)
    assert not caplog.records


def test_loss_falls_and_artefacts_are_written(data_dir, tokenizer_dir, tmp_path, caplog):
    config = base_config(
        data_dir,
        tokenizer_dir,
        tmp_path,
        train_steps=60,
        eval_every=20,
        save_every=20,
        learning_rate=3e-3,
        schedule="constant",
        micro_batch_size=None,
    )
    with caplog.at_level("INFO", logger="absl"):
        final = train(config)
    assert final["step"] == 60
    assert any("Memory plan of one replica's step" in r.getMessage() for r in caplog.records)
    checkpoints = tmp_path / "checkpoints"
    best = GPTNeoCausalLM.from_preset(str(checkpoints / "best"))
    assert best.preprocessor is not None  # the tokenizer travels with the model
    assert glob.glob(str(tmp_path / "logs" / "train" / "events.out.tfevents.*"))
    values = {}
    for event_file in glob.glob(str(tmp_path / "logs" / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    assert {"loss", "learning_rate", "tokens_per_second", "mfu", "val_loss"} <= set(values)
    validation = values["val_loss"]
    assert len(validation) == 3
    assert validation[-1] < 0.5 * validation[0], validation


def test_output_dir_of_another_run_is_refused(data_dir, tokenizer_dir, tmp_path):
    train(base_config(data_dir, tokenizer_dir, tmp_path))
    other = base_config(data_dir, tokenizer_dir, tmp_path, learning_rate=1.0)
    with pytest.raises(ConfigurationError, match="--learning_rate was 5e-05, now 1.0"):
        train(other)


def test_an_unknown_accelerator_is_refused_before_anything_is_written(
    data_dir, tokenizer_dir, tmp_path
):
    config = base_config(data_dir, tokenizer_dir, tmp_path, accelerator="v9-8")
    with pytest.raises(ConfigurationError, match="--accelerator: Unknown accelerator 'v9-8'"):
        train(config)
    assert not (tmp_path / "run_config.json").exists()


def test_unbuilt_dataset_names_the_build_command(data_dir, tokenizer_dir, tmp_path):
    config = base_config(data_dir, tokenizer_dir, tmp_path, dataset="codeclippy/dedup")
    with pytest.raises(DatasetNotBuiltError, match="tfds build"):
        train(config)


def test_an_unbuilt_dataset_is_a_few_lines_that_name_the_build_command(
    data_dir, tokenizer_dir, tmp_path
):
    argv = tiny_overrides(data_dir, tokenizer_dir, str(tmp_path / "run"))
    program = run_program([*argv, "--dataset=codeclippy/dedup"])
    output, _ = program.communicate(timeout=300)
    assert program.returncode == 1, output
    assert "Traceback" not in output
    assert f"tfds build data_builders/codeclippy --config=dedup --data_dir={data_dir}" in output
    # TensorFlow's C++ start-up lines aside, what is left is TFDS's one line and the error.
    ours = [
        line
        for line in output.strip().splitlines()
        if not line.startswith(("I0000", "E0000", "W0000", "WARNING: All log messages"))
    ]
    assert len(ours) <= 5, output


def test_a_loss_chunk_that_does_not_divide_the_sequence_is_refused(
    data_dir, tokenizer_dir, tmp_path
):
    config = base_config(data_dir, tokenizer_dir, tmp_path, loss_chunk_size=6)
    with pytest.raises(ConfigurationError, match="--loss_chunk_size=6 does not divide"):
        train(config)
    assert not (tmp_path / "run_config.json").exists()


def test_an_output_dir_that_is_a_file_is_refused_and_kept(data_dir, tokenizer_dir, tmp_path):
    output = tmp_path / "notes.txt"
    output.write_text("mine\n")
    config = base_config(data_dir, tokenizer_dir, output)
    with pytest.raises(ConfigurationError, match="notes.txt is a file, not a directory"):
        train(config)
    assert output.read_text() == "mine\n"


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"train_split": "trian"},
            r"--train_split: counting/tiny/1.0.0 has no split 'trian'; "
            r"it has \['train', 'validation'\]",
        ),
        ({"validation_split": "test"}, r"--validation_split: .* has no split 'test'"),
        ({"init": "/nonexistent/model"}, r"--init: No model at '/nonexistent/model'"),
        ({"init": "EMPTY_DIR"}, r"--init: .* holds no model \(it has no config.json\)"),
        ({"model_size": "gpt_neo_huge"}, r"--model_size: Unknown model size 'gpt_neo_huge'"),
        ({"tokenizer": "/nonexistent/tokenizer.json"}, r"--tokenizer=.* does not exist"),
        (
            {"batch_size": 128, "micro_batch_size": None},
            r"has 64 examples, fewer than one "
            r"batch: lower --batch_size=128",
        ),
    ],
    ids=[
        "train_split",
        "validation_split",
        "init",
        "init_not_a_model",
        "model_size",
        "tokenizer",
        "batch_over_split",
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_written(
    changes, message, data_dir, tokenizer_dir, tmp_path
):
    if changes.get("init") == "EMPTY_DIR":
        (tmp_path / "empty").mkdir()
        changes = {"init": str(tmp_path / "empty")}
    output = tmp_path / "run"
    with pytest.raises(ConfigurationError, match=message):
        train(base_config(data_dir, tokenizer_dir, output, **changes))
    assert not output.exists()  # so the corrected command starts without complaint


def test_progress_is_counted_in_steps_in_plain_lines_off_a_terminal(
    data_dir, tokenizer_dir, tmp_path, capsys, caplog
):
    config = base_config(data_dir, tokenizer_dir, tmp_path, verbose=1, train_steps=4)
    with caplog.at_level("INFO", logger="absl"):
        train(config)
    shown = "".join(capsys.readouterr())
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith(
            "Training 4 steps: 0.25 epochs of counting/tiny train (16 steps of 4 "
            "sequences each) on 1 replica; starting fresh."
        )
        for m in messages
    ), messages
    assert "step 1/4  loss " in shown and "step 4/4  loss " in shown, shown
    assert "step 2/4  validation loss " in shown and "step 4/4  validation loss " in shown
    assert "Epoch" not in shown and "\r" not in shown and "\x1b" not in shown, shown


def test_the_bar_on_a_terminal_keeps_log_lines_above_it(monkeypatch):
    import io
    from types import SimpleNamespace

    from absl import logging as absl_logging

    from neo_keras.training.progress import StepProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    if not flags.FLAGS.is_parsed():  # as under app.run; before it absl logs to stderr
        flags.FLAGS.mark_as_parsed()
    handler = absl_logging.get_absl_handler().python_handler
    monkeypatch.setattr(handler, "stream", terminal)
    monkeypatch.setattr(handler, "level", 0)
    iterations = tf.Variable(0, dtype=tf.int64)
    display = StepProgress(steps=3, verbose=1, stream=terminal)
    display.set_model(SimpleNamespace(optimizer=SimpleNamespace(iterations=iterations)))
    display.on_train_begin()
    for step in (1, 2, 3):
        iterations.assign(step)
        display.on_train_batch_end(step - 1, {"loss": 2.0})
        if step == 2:
            handler.emit(absl_logging.logging.makeLogRecord({"msg": "a note", "levelno": 20}))
    display.on_train_end()
    assert handler.stream is terminal  # given back once the bar is gone
    text = terminal.getvalue()
    assert "3/3" in text and "\r" in text, text
    # The note sits on a line of its own: the bar was cleared before it and redrawn after.
    *_, cleared, note = next(line for line in text.split("\n") if "a note" in line).split("\r")
    assert not cleared.strip() and note.endswith("] a note"), text


def test_indivisible_batch_is_refused(data_dir, tokenizer_dir, tmp_path):
    config = base_config(data_dir, tokenizer_dir, tmp_path, batch_size=6, micro_batch_size=4)
    with pytest.raises(ConfigurationError, match="multiple of --micro_batch_size=4"):
        train(config)
    assert not os.path.exists(tmp_path / "checkpoints")  # refused before any compute


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--no_such_flag=1"], "no_such_flag"),
        (["--flagfile=/nonexistent.flags"], "nonexistent"),
        (["--optimizer=adamm"], "value should be one of <adamw|adafactor>"),
        (["--schedule=cosin"], "value should be one of <cosine|linear|constant>"),
        (["--mixed_precision=bf16"], "value should be one of <float32|bfloat16>"),
        (["--strategy=gpu"], "value should be one of <auto|tpu|mirrored|multi_worker|cpu>"),
    ],
    ids=["unknown_flag", "missing_flagfile", "optimizer", "schedule", "precision", "strategy"],
)
def test_bad_command_lines_are_refused(argv, message):
    import neo_keras.train  # noqa: F401

    flags.FLAGS.unparse_flags()
    with pytest.raises(flags.Error, match=message):
        flags.FLAGS(["train", *argv])


def run_program(argv: list[str], **environment_changes: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **environment_changes,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "neo_keras.train", *argv],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def saved_steps(output_dir: Path) -> list[int]:
    indexes = glob.glob(str(output_dir / "checkpoints" / "resume" / "ckpt-*.index"))
    return sorted(int(Path(p).name[len("ckpt-") : -len(".index")]) for p in indexes)


def committed_step(output_dir: Path) -> int:
    """The step of the last checkpoint the manager finished (and a rerun resumes from)."""
    latest = tf.train.latest_checkpoint(str(output_dir / "checkpoints" / "resume"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_killed_run_resumes_where_it_stopped(data_dir, tokenizer_dir, tmp_path):
    """A run killed mid-epoch and rerun ends with the same weights as one never interrupted."""
    steps = ["--train_steps=24", "--eval_every=12", "--save_every=2", "--learning_rate=1e-3"]
    uninterrupted = tmp_path / "uninterrupted"
    interrupted = tmp_path / "interrupted"
    reference = run_program([*tiny_overrides(data_dir, tokenizer_dir, str(uninterrupted)), *steps])

    victim = run_program([*tiny_overrides(data_dir, tokenizer_dir, str(interrupted)), *steps])
    deadline = time.time() + 240
    while committed_step(interrupted) < 4:
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    committed_at = committed_step(interrupted)
    killed_at = max(saved_steps(interrupted))
    assert killed_at < 24

    resumed = run_program([*tiny_overrides(data_dir, tokenizer_dir, str(interrupted)), *steps])
    resumed_output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, resumed_output
    # The last save may have been cut short by the kill; resumption takes the last whole one.
    resumed_at = int(re.search(r"Resumed from \S+ at step (\d+)", resumed_output).group(1))
    assert 4 <= committed_at <= resumed_at <= killed_at
    assert (
        f"Training 24 steps: 1.50 epochs of counting/tiny train (16 steps of 4 sequences "
        f"each) on 1 replica; resuming at step {resumed_at}." in resumed_output
    )
    reference_output, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_output

    expected = GPTNeoCausalLM.from_preset(str(uninterrupted / "checkpoints" / "latest"))
    actual = GPTNeoCausalLM.from_preset(str(interrupted / "checkpoints" / "latest"))
    for a, e in zip(actual.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_allclose(a, e, atol=1e-6, rtol=0)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_as_one_process(data_dir, tokenizer_dir, tmp_path):
    """Two MultiWorkerMirrored processes sharing an output dir, and two replicas on a CPU split
    by --cpu_devices, end where one process ends."""
    run = ["--train_steps=6", "--eval_every=3", "--save_every=3", "--dropout=0"]

    def argv(output_dir: Path, strategy: str) -> list[str]:
        overrides = tiny_overrides(data_dir, tokenizer_dir, str(output_dir))
        return [*overrides, *run, f"--strategy={strategy}"]

    single, shared = tmp_path / "single", tmp_path / "two_workers"
    reference = run_program(argv(single, "cpu"))
    # Two replicas in one process, on the host CPU split in two.
    mirrored_dir = tmp_path / "two_replicas"
    mirrored = run_program([*argv(mirrored_dir, "mirrored"), "--cpu_devices=2"])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [
        run_program(
            argv(shared, "multi_worker"),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
        )
        for i in range(2)
    ]
    outputs = []
    for process in [reference, *workers, mirrored]:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-12000:]
        outputs.append(output)
    outputs.pop()
    # A local output dir serves two workers only on a file system both see: they are told.
    assert "must be one file system they all see" not in outputs[0]
    assert all("must be one file system they all see" in output for output in outputs[1:])

    for name in ("latest", "best"):
        expected = GPTNeoCausalLM.from_preset(str(single / "checkpoints" / name))
        for run_dir in (shared, mirrored_dir):
            actual = GPTNeoCausalLM.from_preset(str(run_dir / "checkpoints" / name))
            for a, e in zip(actual.get_weights(), expected.get_weights(), strict=True):
                np.testing.assert_allclose(a, e, atol=2e-5, rtol=0)
    # Only the chief wrote: one TensorBoard writer, one set of checkpoints.
    assert len(glob.glob(str(shared / "logs" / "train" / "events.out.tfevents.*"))) == 1
    assert saved_steps(shared) == saved_steps(single) == [3, 6]
    assert sorted(os.listdir(shared)) == sorted(os.listdir(single))


def test_non_finite_loss_stops_the_run_without_saving_it(data_dir, tokenizer_dir, tmp_path):
    from neo_keras.training.callbacks import NonFiniteLossError

    config = base_config(
        data_dir,
        tokenizer_dir,
        tmp_path,
        train_steps=20,
        eval_every=20,
        save_every=1,
        learning_rate=1e30,
        schedule="constant",
        clip_norm=0.0,
        micro_batch_size=None,
    )
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at step (\d+)") as caught:
        train(config)
    failed_step = int(re.search(r"at step (\d+)", str(caught.value)).group(1))
    assert failed_step < 20
    assert all(step < failed_step for step in saved_steps(tmp_path))
