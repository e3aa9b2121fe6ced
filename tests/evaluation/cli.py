"""Running `neo_keras.evaluate` in the test process, on flags of its own."""

from __future__ import annotations

from absl import flags

from neo_keras import evaluate


def run_evaluate(*argv: str) -> dict:
    """Parses `argv` as `python -m neo_keras.evaluate` would, runs it, returns the summary."""
    config = flags.FlagValues()
    evaluate.define_flags(config)
    config(["evaluate", "--noprogress", *argv])
    return evaluate.run(config)
