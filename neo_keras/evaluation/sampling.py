"""Batched, XLA-compiled sampling of completions that end at string stop sequences, on every
replica of a `tf.distribute` strategy.

Rows (one completion to sample each: a prompt, its task id and sample index) are sorted by
prompt length and packed into batches of a fixed size, one batch per replica at a time; a
group's longest prompt is rounded up to a multiple of `bucket_size` (its bucket) and
`max_new_tokens` added, so the compiled functions are traced once per bucket, not per prompt.
Every row keeps its own prompt tokens and samples after them, exactly as it would alone. Each
distinct prompt of a batch runs through the model once; its samples start from copies of its
key/value cache (`GPTNeoCausalLM.cache_rows`), or with `share_prompts` share it
(`GPTNeoCausalLM.share_prompts`: a decoding step then reads each prompt once, not once per
sample). Either way every prompt of a batch ends at one column and each row decodes at a
position of its own, so all rows decode from the first step. A row's random draws
are its own (`neo_keras.generation.token_choice`), so what it generates does not depend on its
batch's other rows, its replica, host or order. The batch size is part of the arithmetic:
products of another number of rows can be rounded differently (XLA blocks a matmul's sums by
its shapes), so another `batch_size` can change a token where two all but tie; filler rows
keep every batch of a run at that size.

Decoding runs in chunks of `chunk_size` steps of the decode loop (`neo_keras.generation.
decode`), compiled, with the key/value cache carried from chunk to chunk. After each chunk the
host decodes the new text of every live row and retires the rows whose text contains a stop
sequence; single stop tokens (end-of-text) retire rows inside the loop. A group ends when all
of its rows have stopped, and its completions are handed out (`stream`) before the next group
starts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
from keras import ops
from tqdm.auto import tqdm

from neo_keras.evaluation.stop_sequences import cut_at_stop, find_stop
from neo_keras.generation.decode import decode_steps
from neo_keras.generation.token_choice import SamplingSettings, row_chooser, row_keys

# Samples of each prompt from which sharing its cache (`share_prompts`) pays: a batch then
# holds at most about a quarter as many prompts as rows, and a step's product of every row with
# every prompt costs less than reading each row's own copy of its prompt.
SHARE_PROMPTS_FROM = 4

STOP_SEQUENCE = "stop_sequence"
STOP_TOKEN = "stop_token"
LENGTH = "max_new_tokens"


@dataclasses.dataclass(frozen=True)
class Request:
    """One completion to sample: its prompt, and the task id and sample index that key its
    random draws."""

    prompt: str
    task_id: str
    sample: int


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sampled continuation of a prompt (never containing the prompt itself).

    Attributes:
        text: the generated text, cut before the first stop sequence or stop token.
        num_tokens: tokens the model generated for it, the stop included.
        stop_reason: `"stop_sequence"`, `"stop_token"` (e.g. end-of-text) or
            `"max_new_tokens"`.
    """

    text: str
    num_tokens: int
    stop_reason: str


@dataclasses.dataclass
class GenerationStats:
    """What generation cost.

    Attributes:
        compile_seconds: per compiled shape `"batch x length"`, the first-call time.
        generate_seconds: wall time of generation, compilation excluded.
        prefill_seconds: of `generate_seconds`, the prompts' pass, once a batch: each
            distinct prompt through the model, its cache then copied into or shared by its
            rows. The rest is the decoding steps and the host's stop checks between them.
        generated_tokens: tokens generated over all completions (`Completion.num_tokens`).
        batches: batches run.
        decode_steps: decoding steps run (each extends every row of a batch by a position;
            the replicas' steps run side by side and count once).
    """

    compile_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    generate_seconds: float = 0.0
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    batches: int = 0
    decode_steps: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "compile_seconds": dict(self.compile_seconds),
            "generate_seconds": round(self.generate_seconds, 3),
            "prefill_seconds": round(self.prefill_seconds, 3),
            "generated_tokens": self.generated_tokens,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "batches": self.batches,
            "decode_steps": self.decode_steps,
            "seconds_per_step": round(self.generate_seconds / max(self.decode_steps, 1), 4),
        }


@dataclasses.dataclass
class _Batch:
    """One replica's packed batch: prompts ending at one column, and what the host tracks per
    row."""

    rows: list[int]  # the requests of the real rows
    token_ids: np.ndarray  # [batch, length]
    prompt_mask: np.ndarray  # [batch, length], True on prompt tokens
    prompt_lengths: np.ndarray  # [batch]
    prompt_ends: np.ndarray  # [batch]: the column after each row's prompt, its first new token
    finished: np.ndarray  # [batch]; filler rows start finished
    distinct_prompts: np.ndarray  # [distinct, prompt bucket]: each prompt of the batch once
    sources: np.ndarray  # [batch]: the row of `distinct_prompts` each row's prompt is
    keys: np.ndarray  # [batch, 2]: each row's random key

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.token_ids.shape, *self.distinct_prompts.shape)


class CompletionGenerator:
    """Samples completions of text prompts with a `GPTNeoCausalLM` on every replica.

    Args:
        model: a `GPTNeoCausalLM` with a tokenizer (`model.preprocessor.tokenizer`), built under
            `strategy`'s scope; its keras-hub `call_with_cache` runs every step.
        settings: how tokens are chosen (greedy, temperature, top-k, top-p) and the seed.
        max_new_tokens: most tokens generated per completion.
        stop_token_ids: tokens that end a completion (cut before them); the tokenizer's
            end-of-text token when None, none when empty.
        batch_size: rows (prompt x sample) per batch, on each replica.
        bucket_size: a batch's longest prompt is rounded up to a multiple of this.
        chunk_size: decoding steps between two host checks for stop sequences.
        jit_compile: compile the prefill and decoding steps with XLA.
        share_prompts: rows continuing the same prompt share its key/value cache: each step
            reads a prompt once for all its rows, a row keeps only its own `max_new_tokens`
            positions, and every row decodes from the first step, whatever the lengths of
            the other prompts of its batch. A step multiplies every row with every prompt of its
            batch, so this pays with several samples of each prompt (`SHARE_PROMPTS_FROM`).
            The rounding of the attention differs between the two, so samples drawn with and
            without it may differ where two tokens' probabilities all but tie.
        strategy: the `tf.distribute` strategy whose replicas each decode a batch; the current
            one (a single device unless a scope is entered) when None.

    Example:

    ```python
    from tokenizers.pre_tokenizers import ByteLevel

    from neo_keras import GPTNeoBackbone, GPTNeoCausalLM, GPTNeoCausalLMPreprocessor
    from neo_keras import GPTNeoTokenizer
    from neo_keras.evaluation.sampling import CompletionGenerator
    from neo_keras.generation.token_choice import SamplingSettings

    # A random model over a byte-level vocabulary: every text can be encoded.
    alphabet = sorted(ByteLevel.alphabet())
    vocabulary = {"<|endoftext|>": 0} | {byte: i + 1 for i, byte in enumerate(alphabet)}
    vocabulary["de"] = len(vocabulary)
    tokenizer = GPTNeoTokenizer(vocabulary=vocabulary, merges=["d e"])
    backbone = GPTNeoBackbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=2, hidden_dim=16,
        window_size=4, max_sequence_length=64,
    )
    model = GPTNeoCausalLM(backbone, GPTNeoCausalLMPreprocessor(tokenizer))

    generator = CompletionGenerator(model, SamplingSettings(greedy=True), max_new_tokens=8)
    [[completion]] = generator.generate(["def add(a, b):\\n"], stop_sequences=["\\ndef"])
    print(completion.text)
    ```
    """

    def __init__(
        self,
        model,
        settings: SamplingSettings,
        max_new_tokens: int = 128,
        stop_token_ids: Sequence[int] | None = None,
        batch_size: int = 32,
        bucket_size: int = 64,
        chunk_size: int = 16,
        jit_compile: bool = True,
        share_prompts: bool = False,
        strategy: tf.distribute.Strategy | None = None,
    ):
        if model.preprocessor is None:
            raise ValueError(
                "The model has no tokenizer (model.preprocessor is None); load it from a "
                "source that includes one (vocab.json + merges.txt, or a Keras preset with a "
                "preprocessor)."
            )
        for name, value in [
            ("max_new_tokens", max_new_tokens),
            ("batch_size", batch_size),
            ("bucket_size", bucket_size),
            ("chunk_size", chunk_size),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        self.model = model
        self.tokenizer = model.preprocessor.tokenizer
        self.settings = settings
        self.max_new_tokens = max_new_tokens
        end_token_id = self.tokenizer.end_token_id
        if stop_token_ids is None:
            stop_token_ids = (end_token_id,)
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        self.pad_token_id = end_token_id
        self.batch_size = batch_size
        self.bucket_size = bucket_size
        self.chunk_size = chunk_size
        self.share_prompts = share_prompts
        self.max_length = model.backbone.max_sequence_length
        if max_new_tokens >= self.max_length:
            raise ValueError(
                f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the model's "
                f"{self.max_length} positions; lower it."
            )
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.stats = GenerationStats()
        self.truncated_prompts = 0
        self._encoded: dict[str, list[int]] = {}
        # Off a TPU, the steps are traced again for the second shape with the lengths that
        # differ left open, and not for the later ones: XLA still compiles one program per
        # shape, but each further bucket of prompt lengths saves tracing the model in Python
        # (3 of 8 s a shape at the 125M shape on a CPU). A TPU program keeps to its shapes.
        relaxed = not isinstance(self.strategy, tf.distribute.TPUStrategy)
        self._prefill, self._decode, self._kernels = (
            tf.function(step, jit_compile=jit_compile, autograph=False, reduce_retracing=relaxed)
            for step in (self._prefill_step, self._decode_steps, model.decode_kernels)
        )
        self._prefill_all, self._decode_all, self._kernels_all = (
            self._on_every_replica(step, relaxed)
            for step in (self._prefill, self._decode, self._kernels)
        )
        self._compiled_shapes: set[tuple[int, ...]] = set()

    @property
    def devices(self) -> list[str]:
        """Each replica's device; `["default"]` where TensorFlow places a lone replica."""
        try:
            return list(self.strategy.extended.worker_devices)
        except RuntimeError:  # the default strategy has no device of its own
            return ["default"]

    def _on_every_replica(self, step, reduce_retracing: bool):
        """`step` run by every replica on its own arguments, traced into one program.

        Each replica calls `step` under its own device: a compiled step placed by default would
        land on the first device, away from the other replicas' copies of the weights.
        """

        def run(*args):
            return self.strategy.run(self._under_replica_device(step), args=args)

        return tf.function(run, autograph=False, reduce_retracing=reduce_retracing)

    def _under_replica_device(self, step):
        if self.replicas == 1 or isinstance(self.strategy, tf.distribute.TPUStrategy):
            return step  # one device, or one program the TPU places itself

        def placed(*args):
            context = tf.distribute.get_replica_context()
            replica = tf.get_static_value(context.replica_id_in_sync_group)
            with tf.device(self.strategy.extended.worker_devices[replica]):
                return step(*args)

        return placed

    # ------------------------------------------------------------------ compiled steps

    def _prefill_step(self, distinct_prompts, sources, prompt_lengths, prompt_ends, token_ids):
        """The key/value cache of every row, computed once per distinct prompt: shared by the
        rows that continue it (`share_prompts`), or copied into each."""
        if self.share_prompts:
            return self.model.share_prompts(
                self.model.prefill(distinct_prompts),
                sources,
                prompt_lengths,
                self.max_new_tokens,
                prompt_ends,
            )
        cache = self.model.empty_cache(ops.shape(distinct_prompts)[0], ops.shape(token_ids)[1])
        _, _, cache = self.model.call_with_cache(distinct_prompts, cache, 0)
        return self.model.cache_rows(cache, sources, prompt_ends - prompt_lengths)

    def _decode_steps(
        self, token_ids, cache, index, prompt_mask, prompt_ends, keys, finished, kernels
    ):
        """Up to `chunk_size` steps from position `index`; stops early once all rows finished."""

        return decode_steps(
            self.model,
            token_ids,
            cache,
            index,
            prompt_mask,
            prompt_ends + self.max_new_tokens,
            finished,
            row_chooser(self.settings, keys, prompt_ends),
            stop_token_ids=self.stop_token_ids,
            pad_token_id=self.pad_token_id,
            max_steps=self.chunk_size,
            kernels=kernels,
        )

    # ------------------------------------------------------------------ host side

    def generate(
        self,
        prompts: Sequence[str],
        num_samples: int = 1,
        stop_sequences: Sequence[str] = (),
        progress: bool = False,
    ) -> list[list[Completion]]:
        """`num_samples` completions of each prompt: `result[prompt][sample]`.

        The task id that keys a prompt's draws is its position in `prompts`.

        Args:
            prompts: texts to continue.
            num_samples: completions per prompt.
            stop_sequences: strings that end a completion; it is cut before them.
            progress: show a progress bar.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        requests = [
            Request(prompt, str(p), s)
            for p, prompt in enumerate(prompts)
            for s in range(num_samples)
        ]
        results: list[list[Completion | None]] = [[None] * num_samples for _ in prompts]
        for finished in self.stream(requests, stop_sequences, progress):
            for request, completion in finished:
                results[int(request.task_id)][request.sample] = completion
        return results

    def stream(
        self,
        requests: Sequence[Request],
        stop_sequences: Sequence[str] = (),
        progress: bool = False,
    ) -> Iterator[list[tuple[Request, Completion]]]:
        """Samples every request; yields the completions of each group of batches (one batch
        per replica) as soon as the group has finished.

        Args:
            requests: the completions to sample.
            stop_sequences: strings that end a completion; it is cut before them.
            progress: show a progress bar.
        """
        encoded = [self._encode(request.prompt) for request in requests]
        order = sorted(range(len(requests)), key=lambda r: len(encoded[r]))
        batch_size = min(self.batch_size, len(requests)) or 1
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        distinct = max((len({requests[r].prompt for r in rows}) for rows in batches), default=1)
        stops = tuple(stop_sequences)
        kernels = self._kernels_all(batch_size)  # held while the stream runs
        with tqdm(
            total=len(requests), desc="generating", unit="sample", disable=not progress
        ) as bar:
            for start in range(0, len(batches), self.replicas):
                group = batches[start : start + self.replicas]
                packed = self._pack_group(group, requests, encoded, batch_size, distinct)
                finished = []
                for batch, completions in zip(
                    packed, self._run(packed, stops, kernels), strict=True
                ):
                    for row, completion in zip(batch.rows, completions, strict=True):
                        finished.append((requests[row], completion))
                        self.stats.generated_tokens += completion.num_tokens
                self.stats.batches += len(group)
                bar.update(len(finished))
                yield finished

    def _encode(self, prompt: str) -> list[int]:
        if prompt not in self._encoded:
            self._encoded[prompt] = self._encode_new(prompt)
        return self._encoded[prompt]

    def _encode_new(self, prompt: str) -> list[int]:
        tokens = list(self.tokenizer.tokenize(prompt)) if prompt else []
        if not tokens:
            # Nothing to condition on: start from end-of-text, as the model saw documents start.
            return [self.pad_token_id]
        room = self.max_length - self.max_new_tokens
        if len(tokens) > room:
            self.truncated_prompts += 1
            tokens = tokens[-room:]  # Keep the end: it is what the completion continues.
        return [int(t) for t in tokens]

    def _pack_group(self, group, requests, encoded, batch_size: int, distinct: int) -> list:
        """One batch per replica, padded to the group's common length; replicas without a
        batch of their own get a finished copy of the last one."""
        longest = max(len(encoded[r]) for rows in group for r in rows)
        bucket = -(-longest // self.bucket_size) * self.bucket_size
        length = min(bucket + self.max_new_tokens, self.max_length)
        bucket = min(bucket, length)
        # Every prompt ends at the longest one's end and each row decodes at a position of
        # its own, so all rows decode from the first step, where right-padded rows would
        # start at the shortest prompt's end and the longer prompts wait, a step per token
        # of difference.
        packed = [
            self._pack(rows, requests, encoded, batch_size, distinct, bucket, length, longest)
            for rows in group
        ]
        while len(packed) < self.replicas:
            packed.append(
                dataclasses.replace(packed[-1], rows=[], finished=np.ones(batch_size, bool))
            )
        return packed

    def _pack(self, rows, requests, encoded, batch_size, distinct, bucket, length, end) -> _Batch:
        """The prompts of `rows` in `length` columns, ending at column `end`; filler rows
        repeat the last real row."""
        filled = list(rows) + [rows[-1]] * (batch_size - len(rows))
        prompts = [requests[r].prompt for r in filled]
        token_ids = np.full((batch_size, length), self.pad_token_id, "int32")
        prompt_mask = np.zeros((batch_size, length), bool)
        prompt_lengths = np.array([len(encoded[r]) for r in filled], "int32")
        prompt_ends = np.full(batch_size, end, "int32")
        for i, r in enumerate(filled):
            token_ids[i, prompt_ends[i] - prompt_lengths[i] : prompt_ends[i]] = encoded[r]
            prompt_mask[i, prompt_ends[i] - prompt_lengths[i] : prompt_ends[i]] = True
        unique = list(dict.fromkeys(prompts))
        sources = np.array([unique.index(prompt) for prompt in prompts], "int32")
        unique += [unique[-1]] * (distinct - len(unique))
        distinct_prompts = np.full((distinct, bucket), self.pad_token_id, "int32")
        for i, prompt in enumerate(unique):
            ids = self._encode(prompt)
            distinct_prompts[i, : len(ids)] = ids
        keys = row_keys(
            self.settings.seed,
            [requests[r].task_id for r in filled],
            [requests[r].sample for r in filled],
        )
        return _Batch(
            rows=list(rows),
            token_ids=token_ids,
            prompt_mask=prompt_mask,
            prompt_lengths=prompt_lengths,
            prompt_ends=prompt_ends,
            finished=np.arange(batch_size) >= len(rows),
            distinct_prompts=distinct_prompts,
            sources=sources,
            keys=keys,
        )

    def _per_replica(self, values: list):
        """One value per replica, placed on its replica's device."""
        if self.replicas == 1:
            return tf.constant(values[0])
        devices = self.strategy.extended.worker_devices

        def value(context):
            with tf.device(devices[context.replica_id_in_sync_group]):
                return tf.constant(values[context.replica_id_in_sync_group])

        return self.strategy.experimental_distribute_values_from_function(value)

    def _local(self, per_replica) -> list[np.ndarray]:
        return [np.asarray(v) for v in self.strategy.experimental_local_results(per_replica)]

    def _compile_for(self, packed: list[_Batch], inputs: dict) -> None:
        """Traces and compiles both steps for a new shape, timing it apart from generation."""
        if packed[0].shape in self._compiled_shapes:
            return
        started = time.perf_counter()
        cache = self._prefill_all(*inputs["prefill"])
        # An index at the end runs the loop zero times: compilation without decoding.
        end = self._per_replica([np.int32(b.token_ids.shape[1]) for b in packed])
        finished = self._per_replica([b.finished for b in packed])
        outputs = self._decode_all(
            inputs["token_ids"], cache, end, *inputs["rest"], finished, inputs["kernels"]
        )
        self._local(outputs[0])
        name = "x".join(str(n) for n in packed[0].token_ids.shape)
        self.stats.compile_seconds[name] = round(time.perf_counter() - started, 3)
        self._compiled_shapes.add(packed[0].shape)

    def _run(self, packed: list[_Batch], stop_sequences: tuple[str, ...], kernels) -> list[list]:
        """Decodes one batch per replica until every row has stopped; their completions."""
        token_ids = self._per_replica([b.token_ids for b in packed])
        inputs = {
            "token_ids": token_ids,
            "prefill": tuple(
                self._per_replica([getattr(b, name) for b in packed])
                for name in ("distinct_prompts", "sources", "prompt_lengths", "prompt_ends")
            )
            + (token_ids,),
            "rest": tuple(
                self._per_replica([getattr(b, name) for b in packed])
                for name in ("prompt_mask", "prompt_ends", "keys")
            ),
            "kernels": kernels,
        }
        self._compile_for(packed, inputs)
        started = time.perf_counter()
        cache = self._prefill_all(*inputs["prefill"])
        self.stats.prefill_seconds += time.perf_counter() - started
        starts = [np.int32(b.prompt_ends[: max(len(b.rows), 1)].min()) for b in packed]
        index = self._per_replica(starts)
        finished = [b.finished.copy() for b in packed]
        completions = [[None] * len(b.rows) for b in packed]
        positions = starts
        # Every row finishes by its last position at the latest, which lies inside the batch.
        while not all(f.all() for f in finished):
            token_ids, cache, index, in_graph_finished = self._decode_all(
                token_ids,
                cache,
                index,
                *inputs["rest"],
                self._per_replica(finished),
                kernels,
            )
            ids, positions = self._local(token_ids), self._local(index)
            stopped = self._local(in_graph_finished)
            for b, batch in enumerate(packed):
                finished[b] |= stopped[b]
                self._retire_rows(
                    batch, ids[b], int(positions[b]), finished[b], completions[b], stop_sequences
                )
        self.stats.generate_seconds += time.perf_counter() - started
        # The replicas decode side by side: the group takes as many steps as its longest batch.
        self.stats.decode_steps += max(int(positions[b] - starts[b]) for b in range(len(packed)))
        return completions

    def _retire_rows(
        self, batch: _Batch, ids, position: int, finished, completions, stop_sequences
    ) -> None:
        """Marks finished the live rows whose text reached a stop; records their completions."""
        live = [r for r in range(len(batch.rows)) if completions[r] is None]
        new_tokens = [ids[r, batch.prompt_ends[r] : position] for r in live]
        for r, tokens in zip(live, new_tokens, strict=True):
            completion = self._completion(tokens, stop_sequences)
            if completion.stop_reason == STOP_SEQUENCE or finished[r]:
                completions[r] = completion
                finished[r] = True

    def _completion(self, tokens: np.ndarray, stop_sequences: tuple[str, ...]) -> Completion:
        tokens = tokens[: self.max_new_tokens].tolist()
        reason = LENGTH
        for i, token in enumerate(tokens):
            if token in self.stop_token_ids:
                tokens, reason = tokens[: i + 1], STOP_TOKEN
                break
        kept = tokens[:-1] if reason == STOP_TOKEN else tokens
        text, stopped = cut_at_stop(self._decode_text(kept), stop_sequences)
        if not stopped:
            return Completion(text, len(tokens), reason)
        return Completion(text, self._tokens_to_stop(kept, stop_sequences), STOP_SEQUENCE)

    def _tokens_to_stop(self, tokens: list[int], stop_sequences: tuple[str, ...]) -> int:
        """How many of `tokens` it took for a stop sequence to appear in their text."""
        low, high = 1, len(tokens)
        while low < high:  # The first prefix whose text holds a stop sequence.
            middle = (low + high) // 2
            if find_stop(self._decode_text(tokens[:middle]), stop_sequences) is None:
                low = middle + 1
            else:
                high = middle
        return high

    def _decode_text(self, tokens: list[int]) -> str:
        return self.tokenizer.detokenize([tokens])[0] if tokens else ""
