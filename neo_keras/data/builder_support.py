"""What the TFDS builders under data_builders/ share: configs, features, manual data, build report.

The build report: every reader counts what it skipped and why, per split. The counts are logged
when the build ends and stored in the dataset's metadata (`metadata.json` beside
`dataset_info.json`, `builder.info.metadata["build_counts"]`), for the single-process path and
for Apache Beam (where workers report them as Beam counters).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from neo_keras.data.tokenizer import DEFAULT_TOKENIZER, load_tokenizer

BEAM_METRICS_NAMESPACE = "neo_keras_data"

logger = logging.getLogger(__name__)


class ManualDataError(FileNotFoundError):
    """The source data a build needs is not where the build was told to look."""


class EmptySplitError(RuntimeError):
    """A split yielded no example, so TFDS cannot write it."""


@dataclasses.dataclass(eq=False)
class TokenConfig(tfds.core.BuilderConfig):
    """A config whose examples are token ids: which tokenizer and how many tokens an example.

    Attributes:
        tokenizer: a hub id, a local tokenizer directory or a tokenizer.json path.
        sequence_length: tokens per example; fixed, so batches have static shapes.
    """

    tokenizer: str = DEFAULT_TOKENIZER
    sequence_length: int = 2048

    def __post_init__(self):
        if self.sequence_length < 2:
            raise ValueError(f"sequence_length must be at least 2, got {self.sequence_length}.")


def token_features(sequence_length: int) -> tfds.features.FeaturesDict:
    """`input_ids` (int32) and the `attention_mask` and `loss_mask` (uint8) vectors.

    Stored as raw bytes: reading is a copy instead of decoding varints, several times faster.
    """

    def vector(dtype):
        return tfds.features.Tensor(
            shape=(sequence_length,), dtype=dtype, encoding=tfds.features.Encoding.BYTES
        )

    return tfds.features.FeaturesDict(
        {
            "input_ids": vector(np.int32),
            "attention_mask": vector(np.uint8),
            "loss_mask": vector(np.uint8),
        }
    )


def manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> epath.Path | None:
    """The user's `--manual_dir` if it exists and is not empty, else None."""
    try:
        return epath.Path(dl_manager.manual_dir)
    except AssertionError:  # TFDS's signal for a missing or empty manual dir
        return None


def require_manual_dir(dl_manager: tfds.download.DownloadManager, what_to_do: str) -> epath.Path:
    """The user's `--manual_dir`, or a `ManualDataError` saying what to put there."""
    try:
        return epath.Path(dl_manager.manual_dir)
    except AssertionError as err:
        raise ManualDataError(f"{err}\n\n{what_to_do}") from err


class ReportingBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generator-based builder that reports skip counts and knows if Beam builds it.

    Subclasses count into `self.split_counts(split)` (single process) or report Beam counters
    named `<split>/<reason>` in `BEAM_METRICS_NAMESPACE`, and describe their tokenizer with
    `record_tokenizer`.
    """

    def _download_and_prepare(self, dl_manager, download_config):
        self._uses_beam = bool(download_config.beam_runner or download_config.beam_options)
        self._counts: dict[str, Counter] = {}
        super()._download_and_prepare(dl_manager, download_config)
        self._publish_counts()

    def reporting_info(self, **info_kwargs) -> tfds.core.DatasetInfo:
        """`dataset_info_from_configs` with a metadata dict for the build report."""
        return self.dataset_info_from_configs(metadata=tfds.core.MetadataDict(), **info_kwargs)

    @property
    def uses_beam(self) -> bool:
        """Whether this build runs on Apache Beam (`--beam_pipeline_options` or a runner)."""
        return getattr(self, "_uses_beam", False)

    def split_counts(self, split: str) -> Counter:
        """The counter a single-process generator of `split` increments."""
        return self._counts.setdefault(split, Counter())

    def record_tokenizer(self, spec: str, sequence_length: int) -> None:
        """Loads the tokenizer now (a bad spec fails before any work) and records it."""
        tokenizer = load_tokenizer(spec)
        self.info.metadata.update(
            {
                "tokenizer": spec,
                "eot_id": tokenizer.eot_id,
                "vocab_size": tokenizer.vocab_size,
                "sequence_length": sequence_length,
            }
        )

    def require_examples(self, split: str, examples: Iterator, source: str) -> Iterator:
        """Passes `examples` through, raising `EmptySplitError` if there were none."""
        produced = False
        for item in examples:
            produced = True
            yield item
        if not produced:
            counts = dict(self.split_counts(split))
            raise EmptySplitError(
                f"Split {split!r} produced no example from {source}. What the readers "
                f"counted: {counts or 'no records at all'}. Check that the files hold usable "
                "records (see the counts), or remove that split's files."
            )

    def _process_pipeline_result(self, pipeline_result) -> None:
        from apache_beam.metrics.metric import MetricsFilter

        query = MetricsFilter().with_namespace(BEAM_METRICS_NAMESPACE)
        for counter in pipeline_result.metrics().query(query)["counters"]:
            split, _, reason = counter.key.metric.name.partition("/")
            self.split_counts(split)[reason] += counter.committed

    def _publish_counts(self) -> None:
        report = {
            split: dict(sorted(counts.items())) for split, counts in sorted(self._counts.items())
        }
        self.info.metadata["build_counts"] = report
        for split, counts in report.items():
            logger.warning(
                "%s split %r: %s",
                self.info.full_name,
                split,
                ", ".join(f"{reason}={n}" for reason, n in counts.items()),
            )


def report_beam_counts(counts: Counter, split: str) -> None:
    """Adds a worker's counts to the Beam counters `ReportingBuilder` collects."""
    from apache_beam.metrics import Metrics

    for reason, value in counts.items():
        if value:
            Metrics.counter(BEAM_METRICS_NAMESPACE, f"{split}/{reason}").inc(value)
