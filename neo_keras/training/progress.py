"""What a training run shows while it goes: a start line, then progress counted in steps.

Keras' own display counts `--eval_every` chunks as its "epochs" and draws with control
characters that land in redirected logs, so the run turns it off and shows this instead. On a
terminal a bar redraws in place, with log lines printed above it rather than spliced into it;
anywhere else (a file, a pipe, a cluster's log collector) a plain line comes every
`PLAIN_LINE_SECONDS`, and at the first and last step.
"""

from __future__ import annotations

import datetime
import io
import sys
import time
from typing import TextIO

import keras
from absl import logging
from tqdm import tqdm

from neo_keras.training.callbacks import optimizer_step

PLAIN_LINE_SECONDS = 30.0


def start_line(
    *,
    steps: int,
    start_step: int,
    steps_per_epoch: int,
    dataset: str,
    split: str,
    batch_size: int,
    replicas: int,
) -> str:
    """One sentence on what the run does: its steps, the epochs of data, where it begins."""
    beginning = f"resuming at step {start_step:,}" if start_step else "starting fresh"
    return (
        f"Training {steps:,} steps: {steps / steps_per_epoch:.2f} epochs of {dataset} "
        f"{split} ({steps_per_epoch:,} steps of {batch_size} sequences each) on "
        f"{replicas} replica{'s' if replicas > 1 else ''}; {beginning}."
    )


class StepProgress(keras.callbacks.Callback):
    """Shows the step, the loss, throughput and the time left; validation results as they come.

    Args:
        steps: the step the run ends at.
        verbose: 0 shows nothing, 1 a bar on a terminal and plain lines elsewhere, 2 plain lines.
        stream: where it writes (standard error by default).
    """

    def __init__(self, steps: int, verbose: int = 1, stream: TextIO | None = None):
        super().__init__()
        self.steps = steps
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self._bar: tqdm | None = None
        self._log_stream: _AboveTheBar | None = None
        self._began: tuple[float, int] | None = None
        self._last_line = 0.0

    @property
    def _interactive(self) -> bool:
        return self.verbose == 1 and self.stream.isatty()

    def on_train_begin(self, logs=None):
        step = optimizer_step(self.model)
        self._began = (time.monotonic(), step)
        if not self._interactive:
            return
        self._bar = tqdm(
            total=self.steps, initial=step, unit="step", file=self.stream, dynamic_ncols=True
        )
        self._log_stream = _AboveTheBar.install(self.stream)  # None: logs go elsewhere

    def on_train_batch_end(self, batch, logs=None):
        if not self.verbose:
            return
        step, logs = optimizer_step(self.model), logs or {}
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(_figures(logs), refresh=False)
            return
        now = time.monotonic()
        first = step == self._began[1] + 1
        if first or step >= self.steps or now - self._last_line >= PLAIN_LINE_SECONDS:
            self._last_line = now
            self._write(f"step {step:,}/{self.steps:,}  {_figures(logs)}  {self._time_left(step)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose and "val_loss" in (logs or {}):
            self._write(
                f"step {optimizer_step(self.model):,}/{self.steps:,}  validation loss "
                f"{logs['val_loss']:.4f}  perplexity {logs['val_perplexity']:.2f}"
            )

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            if self._log_stream is not None:
                self._log_stream.uninstall()
            self._bar = self._log_stream = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _time_left(self, step: int) -> str:
        began_at, first_step = self._began
        done = step - first_step
        if done <= 0 or step >= self.steps:
            return ""
        seconds = (time.monotonic() - began_at) / done * (self.steps - step)
        return f"{datetime.timedelta(seconds=round(seconds))} left"


def _figures(logs: dict) -> str:
    parts = []
    if "loss" in logs:
        parts.append(f"loss {float(logs['loss']):.4f}")
    if "tokens_per_second" in logs:
        parts.append(f"{float(logs['tokens_per_second']):,.0f} tokens/s")
    if "mfu" in logs:
        parts.append(f"MFU {float(logs['mfu']):.1%}")
    return "  ".join(parts)


class _AboveTheBar(io.TextIOBase):
    """A stream for absl's log handler that prints each line above the progress bar."""

    def __init__(self, stream: TextIO, handler):
        self._stream = stream
        self._handler = handler
        self._saved = handler.stream

    @classmethod
    def install(cls, stream: TextIO) -> _AboveTheBar | None:
        """Sends absl's log lines above a bar on `stream`, if that is where they go."""
        handler = logging.get_absl_handler().python_handler
        if handler.stream is not stream:
            return None
        above = cls(stream, handler)
        handler.stream = above
        return above

    def uninstall(self) -> None:
        self._handler.stream = self._saved

    def write(self, text: str) -> int:
        tqdm.write(text, file=self._stream, end="")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
