"""The training input: a built token dataset as `(x, y, sample_weight)` batches for `model.fit`.

`x = {"token_ids": int32[B, T], "padding_mask": int32[B, T]}`, `y = int32[B, T]` (the next
token: `input_ids` shifted left, 0 at the end) and `sample_weight = float32[B, T]` (`loss_mask`
shifted the same way), so position t predicts token t + 1 and is weighted by whether token t + 1
is a training target. Shapes are static.

The data position is reproducible: epoch e reads the split's files and examples in an order
fixed by `(seed, e)`, and each epoch is `steps_per_epoch` whole batches. Training can therefore
resume at any step with the same stream, by passing the step reached as `start_step` with the
same seed and batch size (the shuffles are stateless: TensorFlow's global seed does not enter);
the skipped examples are read but not decoded.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

TOKEN_FEATURES = ("input_ids", "attention_mask", "loss_mask")
_INTERLEAVE_FILES = 16
_MAX_EPOCHS = 2**62


class DatasetNotBuiltError(FileNotFoundError):
    """The dataset asked for has not been built where it was looked for."""


class DatasetError(ValueError):
    """A built dataset that cannot be read as asked: no such split, or not token sequences."""


def load_prepared_builder(
    name_or_builder: str | tfds.core.DatasetBuilder, data_dir: str | None = None
) -> tfds.core.DatasetBuilder:
    """The builder of a built dataset, e.g. "codeclippy/dedup", or a `DatasetNotBuiltError`.

    The error names the `tfds build` command that builds it.
    """
    if isinstance(name_or_builder, tfds.core.DatasetBuilder):
        builder = name_or_builder
    else:
        try:
            builder = tfds.builder(name_or_builder, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as err:
            name, kwargs = tfds.core.naming.parse_builder_name_kwargs(name_or_builder)
            raise DatasetNotBuiltError(
                _not_built_message(name.name, kwargs.get("config"), data_dir)
            ) from err
    if not builder.is_prepared():
        config = builder.builder_config.name if builder.builder_config else None
        raise DatasetNotBuiltError(_not_built_message(builder.name, config, data_dir))
    return builder


def steps_per_epoch(
    name_or_builder: str | tfds.core.DatasetBuilder,
    global_batch_size: int,
    split: str = "train",
    data_dir: str | None = None,
) -> int:
    """Whole global batches in one epoch of `split`; the rest of the examples wait an epoch."""
    builder = load_prepared_builder(name_or_builder, data_dir)
    return _split_info(builder, split).num_examples // global_batch_size


def make_training_dataset(
    name_or_builder: str | tfds.core.DatasetBuilder,
    global_batch_size: int,
    split: str = "train",
    data_dir: str | None = None,
    shuffle: bool = True,
    seed: int = 0,
    repeat: bool = True,
    start_step: int = 0,
    shuffle_buffer: int = 10_000,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Shuffled, batched, prefetched `(x, y, sample_weight)` from a built token dataset.

    Args:
        name_or_builder: e.g. "codeclippy/dedup" or "apps/train", or a builder.
        global_batch_size: examples per batch, across all replicas.
        split: the split to read.
        data_dir: where the dataset was built (TFDS's default when None).
        shuffle: shuffle files and examples, differently each epoch.
        seed: fixes the order of every epoch.
        repeat: go on for ever; otherwise one epoch.
        start_step: global batches already consumed: the stream starts where it left off.
        shuffle_buffer: examples shuffled together, in consecutive blocks of this many.
        input_context: under `distribute_datasets_from_function`, this host's input pipeline:
            it then yields one batch per local replica, that replica's rows of each global
            batch, and decodes no other rows.
    """
    builder = load_prepared_builder(name_or_builder, data_dir)
    files, num_examples = token_split_files(builder, split)
    batches = num_examples // global_batch_size
    if batches == 0:
        raise DatasetError(
            f"Split {split!r} of {builder.info.full_name} has {num_examples} "
            f"examples, fewer than one global batch of {global_batch_size}."
        )
    start_epoch, skipped = divmod(start_step, batches)
    if not repeat and start_epoch > 0:
        raise ValueError(f"start_step {start_step} is past the single epoch of {batches} steps.")
    end_epoch = _MAX_EPOCHS if repeat else 1
    parse = _batch_parser(builder)

    def epoch_batches(epoch):
        records = _epoch_records(files, epoch, seed, shuffle, shuffle_buffer)
        skip = tf.where(
            epoch == start_epoch,
            tf.constant(skipped * global_batch_size, tf.int64),
            tf.constant(0, tf.int64),
        )
        records = records.skip(skip)
        return records.batch(global_batch_size, drop_remainder=True)

    dataset = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(epoch_batches)
    dataset, batch_size = _replica_shares(dataset, global_batch_size, input_context)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(dataset.map(to_model_inputs), batch_size)


def make_validation_dataset(
    name_or_builder: str | tfds.core.DatasetBuilder,
    global_batch_size: int,
    split: str = "validation",
    data_dir: str | None = None,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Every example of `split` once, in a fixed order, as `(x, y, sample_weight)` batches.

    The last batch is filled up with rows of zero weight, so shapes stay static and no example
    is left out of the evaluation. `input_context` as in `make_training_dataset`, except
    that the rows are taken after decoding, since the last batch is filled first.
    """
    builder = load_prepared_builder(name_or_builder, data_dir)
    files, _ = token_split_files(builder, split)
    parse = _batch_parser(builder)
    dataset = tf.data.TFRecordDataset(files).batch(global_batch_size)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.map(lambda batch: _fill_batch(batch, global_batch_size))
    dataset, batch_size = _replica_shares(dataset, global_batch_size, input_context)
    return _finish(dataset.map(to_model_inputs), batch_size)


def to_model_inputs(batch: dict[str, tf.Tensor]):
    """`(x, y, sample_weight)` from a batch of `input_ids`, `attention_mask`, `loss_mask`."""
    input_ids = tf.cast(batch["input_ids"], tf.int32)
    # An int32 mask, not bool: under MirroredStrategy Keras averages the first batch across
    # replicas to build the model, which fails on booleans.
    x = {"token_ids": input_ids, "padding_mask": tf.cast(batch["attention_mask"], tf.int32)}
    y = _shift_left(input_ids)
    sample_weight = _shift_left(tf.cast(batch["loss_mask"], tf.float32))
    return x, y, sample_weight


def _shift_left(values: tf.Tensor) -> tf.Tensor:
    return tf.concat([values[:, 1:], tf.zeros_like(values[:, :1])], axis=1)


def _epoch_records(
    files: tf.Tensor, epoch, seed: int, shuffle: bool, shuffle_buffer: int
) -> tf.data.Dataset:
    if shuffle:
        files = tf.random.experimental.stateless_shuffle(
            files, seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=_INTERLEAVE_FILES,
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if shuffle:
        records = _block_shuffle(records, shuffle_buffer, seed, epoch)
    return records


def _block_shuffle(records: tf.data.Dataset, block: int, seed: int, epoch) -> tf.data.Dataset:
    """Shuffles each run of `block` records with a seed fixed by `(seed, epoch, block index)`.

    Stateless on purpose: `Dataset.shuffle` cannot take the epoch tensor as its seed once a
    global seed is set (as training sets one), and its order could not be recomputed anyway.
    """

    def shuffled(index, chunk):
        block_seed = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + epoch, index])
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(chunk, seed=block_seed)
        )

    return records.batch(block).enumerate().flat_map(shuffled)


def _batch_parser(builder: tfds.core.DatasetBuilder):
    features = builder.info.features
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in TOKEN_FEATURES}
    dtypes = {name: features[name].tf_dtype for name in TOKEN_FEATURES}
    length = features["input_ids"].shape[0]

    def parse(records: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(records, spec)
        return {
            name: tf.cast(
                tf.reshape(tf.io.decode_raw(parsed[name], dtypes[name]), [-1, length]), tf.int32
            )
            for name in TOKEN_FEATURES
        }

    return parse


def _replica_shares(
    dataset: tf.data.Dataset,
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None,
) -> tuple[tf.data.Dataset, int]:
    """Of each global batch, one batch per replica this input pipeline feeds, and its size.

    Replica r of the whole job gets rows `[r * b, (r + 1) * b)` of every global batch, so a
    step sees the same examples however many hosts and replicas share it.
    """
    if input_context is None:
        return dataset, global_batch_size
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    local_replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    start = input_context.input_pipeline_id * local_replicas * per_replica

    def share(t: tf.Tensor) -> tf.Tensor:
        rows = t[start : start + local_replicas * per_replica]
        return tf.reshape(rows, [local_replicas, per_replica, *t.shape[1:]])

    shares = dataset.map(lambda batch: tf.nest.map_structure(share, batch))
    return shares.unbatch(), per_replica


def _fill_batch(batch: dict[str, tf.Tensor], batch_size: int) -> dict[str, tf.Tensor]:
    missing = batch_size - tf.shape(batch["input_ids"])[0]
    # Filler rows attend to everything (no fully masked row to trip a softmax) and weigh 0.
    fill_values = {"input_ids": 0, "attention_mask": 1, "loss_mask": 0}
    return {
        name: tf.pad(batch[name], [[0, missing], [0, 0]], constant_values=fill_values[name])
        for name in TOKEN_FEATURES
    }


def _finish(dataset: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    dataset = dataset.map(lambda x, y, w: _static_shapes(x, y, w, batch_size))
    options = tf.data.Options()
    options.deterministic = True
    # Should a strategy distribute this dataset itself, each worker reads every record and keeps
    # its share, whatever the file count (`input_context` decodes only the worker's rows).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _static_shapes(x, y, sample_weight, batch_size: int):
    length = y.shape[1]
    shape = [batch_size, length]
    x = {name: tf.ensure_shape(value, shape) for name, value in x.items()}
    return x, tf.ensure_shape(y, shape), tf.ensure_shape(sample_weight, shape)


def token_split_files(builder: tfds.core.DatasetBuilder, split: str) -> tuple[tf.Tensor, int]:
    """The record files of a token dataset's `split` and its example count."""
    info = token_split(builder, split)
    files = sorted(str(path) for path in info.filepaths)
    return tf.constant(files), info.num_examples


def token_split(builder: tfds.core.DatasetBuilder, split: str) -> tfds.core.SplitInfo:
    """The info of a token dataset's `split`, read without starting TensorFlow's runtime
    (a multi-worker strategy must be made first).

    Raises `DatasetError` for a split the dataset lacks or a dataset that is not token ids
    in TFRecord files.
    """
    missing = [name for name in TOKEN_FEATURES if name not in builder.info.features]
    if missing:
        raise DatasetError(
            f"{builder.info.full_name} has no {missing}: it is not a token "
            "dataset (the APPS evaluation view, for one, is text)."
        )
    if builder.info.file_format not in (None, tfds.core.FileFormat.TFRECORD):
        raise DatasetError(
            f"{builder.info.full_name} is stored as {builder.info.file_format}; "
            "the training input reads TFRecord files, TFDS's default format."
        )
    return _split_info(builder, split)


def _split_info(builder: tfds.core.DatasetBuilder, split: str):
    if split not in builder.info.splits:
        raise DatasetError(
            f"{builder.info.full_name} has no split {split!r}; it has "
            f"{sorted(builder.info.splits)}."
        )
    return builder.info.splits[split]


def _not_built_message(dataset: str, config: str | None, data_dir: str | None) -> str:
    command = f"tfds build data_builders/{dataset}"
    if config:
        command += f" --config={config}"
    if data_dir:
        command += f" --data_dir={data_dir}"
    if dataset == "codeclippy":
        command += " --manual_dir=DIR"
    where = data_dir or "TFDS's default data dir (~/tensorflow_datasets)"
    name = f"{dataset}/{config}" if config else dataset
    return (
        f"Dataset {name!r} is not built in {where}. Build it with:\n  {command}\n"
        '(for a config of your own, pass -c \'{"name": ..., "tokenizer": ..., '
        '"sequence_length": ...}\' instead of --config).'
    )
