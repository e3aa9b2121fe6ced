"""Batched, XLA-compiled sampling of completions that end at string stop sequences.

Rows (prompt x sample) are sorted by prompt length and packed into batches of a fixed size;
each batch's longest prompt is rounded up to a multiple of `bucket_size` (its bucket) and
`max_new_tokens` added, so the compiled functions are traced once per bucket, not per prompt.
Prompts are right-padded: every row keeps its own prompt tokens and samples from its first
padded position on, exactly as it would alone. Each distinct prompt of a batch runs through the
model once; its samples start from copies of its key/value cache.

Decoding runs in chunks of `chunk_size` steps inside one compiled loop with the key/value
cache carried from chunk to chunk. After each chunk the host decodes the new text of every
live row and retires the rows whose text contains a stop sequence; single stop tokens
(end-of-text) retire rows inside the loop. A batch ends when all of its rows have stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops
from tqdm.auto import tqdm

from neo_keras.evaluation.nucleus import NucleusSampler
from neo_keras.evaluation.stop_sequences import cut_at_stop, find_stop

STOP_SEQUENCE = "stop_sequence"
STOP_TOKEN = "stop_token"
LENGTH = "max_new_tokens"


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How the next token is chosen.

    Args:
        temperature: softmax temperature (> 0); ignored when `greedy`.
        top_p: nucleus sampling keeps the smallest set of tokens with this much probability;
            1.0 turns it off.
        top_k: sample among the k most likely tokens; 0 turns it off.
        greedy: always take the most likely token.
        seed: seed of the random draws: the same seed gives the same samples.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False
    seed: int = 0

    def __post_init__(self):
        if not self.greedy and not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0 (got {self.temperature}); use greedy decoding for "
                "temperature 0."
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p}); 1 turns it off.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (got {self.top_k}); 0 turns it off.")


def make_sampler(settings: SamplingSettings) -> keras_hub.samplers.Sampler:
    """The keras-hub sampler that implements `settings` (top-p without a full sort)."""
    samplers = keras_hub.samplers
    if settings.greedy:
        return samplers.GreedySampler()
    common = {"seed": settings.seed, "temperature": settings.temperature}
    if settings.top_p < 1:
        return NucleusSampler(p=settings.top_p, k=settings.top_k or None, **common)
    if settings.top_k:
        return samplers.TopKSampler(k=settings.top_k, **common)
    return samplers.RandomSampler(**common)


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
        generated_tokens: tokens generated over all completions (`Completion.num_tokens`).
        batches: batches run.
    """

    compile_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    generate_seconds: float = 0.0
    generated_tokens: int = 0
    batches: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "compile_seconds": dict(self.compile_seconds),
            "generate_seconds": round(self.generate_seconds, 3),
            "generated_tokens": self.generated_tokens,
            "tokens_per_second": round(self.tokens_per_second, 2),
            "batches": self.batches,
        }


@dataclasses.dataclass
class _Batch:
    """One packed batch: right-padded prompts and what the host tracks per row."""

    rows: list[tuple[int, int]]  # (prompt index, sample index) of the real rows
    token_ids: np.ndarray  # [batch, length]
    prompt_mask: np.ndarray  # [batch, length], True on prompt tokens
    prompt_lengths: np.ndarray  # [batch]
    finished: np.ndarray  # [batch]; filler rows start finished
    distinct_prompts: np.ndarray  # [distinct, prompt bucket]: each prompt of the batch once
    sources: np.ndarray  # [batch]: the row of `distinct_prompts` each row's prompt is

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.token_ids.shape, *self.distinct_prompts.shape)


class CompletionGenerator:
    """Samples completions of text prompts with a `GPTNeoCausalLM` and any keras-hub sampler.

    Args:
        model: a `GPTNeoCausalLM` with a tokenizer (`model.preprocessor.tokenizer`); its
            keras-hub `call_with_cache` runs every step.
        sampler: a `keras_hub.samplers.Sampler` (see `make_sampler`); its random state is reset
            at the start of every `generate` call, so equal calls give equal samples.
        max_new_tokens: most tokens generated per completion.
        stop_token_ids: tokens that end a completion (cut before them); the tokenizer's
            end-of-text token when None, none when empty.
        batch_size: rows (prompt x sample) per batch.
        bucket_size: a batch's longest prompt is rounded up to a multiple of this.
        chunk_size: decoding steps between two host checks for stop sequences.
        jit_compile: compile the prefill and decoding steps with XLA.

    Example:

    ```python
    generator = CompletionGenerator(model, make_sampler(SamplingSettings(greedy=True)),
                                    max_new_tokens=64)
    [[completion]] = generator.generate(["def add(a, b):\\n"], stop_sequences=["\\ndef"])
    print(completion.text)
    ```
    """

    def __init__(
        self,
        model,
        sampler: keras_hub.samplers.Sampler,
        max_new_tokens: int = 128,
        stop_token_ids: Sequence[int] | None = None,
        batch_size: int = 32,
        bucket_size: int = 64,
        chunk_size: int = 16,
        jit_compile: bool = True,
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
        self.sampler = sampler
        self.max_new_tokens = max_new_tokens
        end_token_id = self.tokenizer.end_token_id
        if stop_token_ids is None:
            stop_token_ids = (end_token_id,)
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        self.pad_token_id = end_token_id
        self.batch_size = batch_size
        self.bucket_size = bucket_size
        self.chunk_size = chunk_size
        self.max_length = model.backbone.max_sequence_length
        if max_new_tokens >= self.max_length:
            raise ValueError(
                f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in the model's "
                f"{self.max_length} positions; lower it."
            )
        self.stats = GenerationStats()
        self.truncated_prompts = 0
        self._initial_sampler_state = [np.array(v.numpy()) for v in sampler.variables]
        self._prefill = tf.function(self._prefill_step, jit_compile=jit_compile)
        self._decode = tf.function(self._decode_steps, jit_compile=jit_compile)
        self._compiled_shapes: set[tuple[int, ...]] = set()

    # ------------------------------------------------------------------ compiled steps

    def _prefill_step(self, distinct_prompts, sources, token_ids):
        """The key/value cache of every row, computed once per distinct prompt.

        The samples of a prompt share its prompt's cache, so the prompt runs through the
        model once rather than once per sample.
        """
        backbone = self.model.backbone
        shape = [
            ops.shape(distinct_prompts)[0],
            backbone.num_layers,
            2,
            ops.shape(token_ids)[1],
            backbone.num_heads,
            backbone.head_dim,
        ]
        cache = ops.zeros(shape, dtype=self.model.compute_dtype)
        _, _, cache = self.model.call_with_cache(distinct_prompts, cache, 0)
        return ops.take(cache, sources, axis=0)

    def _decode_steps(self, token_ids, cache, index, prompt_mask, row_ends, finished):
        """Up to `chunk_size` steps from position `index`; stops early once all rows finished."""
        batch_size, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]

        def keep_going(token_ids, cache, index, finished):
            return ops.logical_and(index < length, ops.logical_not(ops.all(finished)))

        def step(token_ids, cache, index, finished):
            previous = ops.slice(token_ids, [0, index - 1], [batch_size, 1])
            logits, _, cache = self.model.call_with_cache(previous, cache, index - 1)
            probabilities = self.sampler.compute_probabilities(logits[:, 0, :])
            sampled = ops.cast(self.sampler.get_next_token(probabilities), "int32")
            sampled = ops.where(finished, self.pad_token_id, sampled)
            in_prompt = prompt_mask[:, index]
            next_token = ops.where(in_prompt, token_ids[:, index], sampled)
            token_ids = ops.slice_update(token_ids, [0, index], next_token[:, None])
            stopped = ops.zeros_like(finished)
            for stop_id in self.stop_token_ids:
                stopped = ops.logical_or(stopped, ops.equal(next_token, stop_id))
            stopped = ops.logical_and(stopped, ops.logical_not(in_prompt))
            full = ops.greater_equal(index + 1, row_ends)
            finished = ops.logical_or(finished, ops.logical_or(stopped, full))
            return token_ids, cache, index + 1, finished

        token_ids, cache, index, finished = ops.while_loop(
            keep_going,
            step,
            (token_ids, cache, index, finished),
            maximum_iterations=self.chunk_size,
        )
        return token_ids, cache, index, finished

    # ------------------------------------------------------------------ host side

    def generate(
        self,
        prompts: Sequence[str],
        num_samples: int = 1,
        stop_sequences: Sequence[str] = (),
        progress: bool = False,
    ) -> list[list[Completion]]:
        """`num_samples` completions of each prompt: `result[prompt][sample]`.

        Args:
            prompts: texts to continue.
            num_samples: completions per prompt.
            stop_sequences: strings that end a completion; it is cut before them.
            progress: show a progress bar.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        for variable, value in zip(
            self.sampler.variables, self._initial_sampler_state, strict=True
        ):
            variable.assign(value)
        encoded = [self._encode(prompt) for prompt in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
        rows = [(i, s) for i in order for s in range(num_samples)]
        batch_size = min(self.batch_size, len(rows)) or 1
        # Consecutive rows hold the samples of one prompt, so few prompts share a batch.
        distinct = min(batch_size, -(-(batch_size - 1) // num_samples) + 1)
        results: list[list[Completion | None]] = [[None] * num_samples for _ in prompts]
        with tqdm(total=len(rows), desc="generating", unit="sample", disable=not progress) as bar:
            for start in range(0, len(rows), batch_size):
                batch = self._pack(rows[start : start + batch_size], encoded, batch_size, distinct)
                completions = self._run(batch, tuple(stop_sequences))
                for (prompt, sample), completion in zip(batch.rows, completions, strict=True):
                    results[prompt][sample] = completion
                    self.stats.generated_tokens += completion.num_tokens
                bar.update(len(batch.rows))
        return results

    def _encode(self, prompt: str) -> list[int]:
        tokens = list(self.tokenizer.tokenize(prompt)) if prompt else []
        if not tokens:
            # Nothing to condition on: start from end-of-text, as the model saw documents start.
            return [self.pad_token_id]
        room = self.max_length - self.max_new_tokens
        if len(tokens) > room:
            self.truncated_prompts += 1
            tokens = tokens[-room:]  # Keep the end: it is what the completion continues.
        return [int(t) for t in tokens]

    def _pack(self, rows, encoded, batch_size: int, distinct: int) -> _Batch:
        """Right-pads the prompts of `rows` to the batch's bucket (the longest prompt rounded
        up to `bucket_size`) plus `max_new_tokens`; filler rows repeat the last real row."""
        prompts = [prompt for prompt, _ in rows]
        prompts += [prompts[-1]] * (batch_size - len(rows))
        longest = max(len(encoded[prompt]) for prompt in prompts)
        bucket = -(-longest // self.bucket_size) * self.bucket_size
        length = min(bucket + self.max_new_tokens, self.max_length)
        bucket = min(bucket, length)
        token_ids = np.full((batch_size, length), self.pad_token_id, "int32")
        prompt_mask = np.zeros((batch_size, length), bool)
        prompt_lengths = np.array([len(encoded[prompt]) for prompt in prompts], "int32")
        for r, prompt in enumerate(prompts):
            token_ids[r, : prompt_lengths[r]] = encoded[prompt]
            prompt_mask[r, : prompt_lengths[r]] = True
        unique = list(dict.fromkeys(prompts))
        sources = np.array([unique.index(prompt) for prompt in prompts], "int32")
        unique += [unique[-1]] * (distinct - len(unique))
        distinct_prompts = np.full((distinct, bucket), self.pad_token_id, "int32")
        for i, prompt in enumerate(unique):
            distinct_prompts[i, : len(encoded[prompt])] = encoded[prompt]
        return _Batch(
            rows=list(rows),
            token_ids=token_ids,
            prompt_mask=prompt_mask,
            prompt_lengths=prompt_lengths,
            finished=np.arange(batch_size) >= len(rows),
            distinct_prompts=distinct_prompts,
            sources=sources,
        )

    def _compile_for(self, batch: _Batch, inputs: dict) -> None:
        """Traces and compiles both steps for a new shape, timing it apart from generation."""
        if batch.shape in self._compiled_shapes:
            return
        started = time.perf_counter()
        cache = self._prefill(*inputs["prefill"])
        # An index at the end runs the loop zero times: compilation without decoding.
        end = tf.constant(batch.token_ids.shape[1], tf.int32)
        finished = tf.constant(batch.finished)
        self._decode(inputs["token_ids"], cache, end, *inputs["rest"], finished)[0].numpy()
        name = "x".join(str(n) for n in batch.token_ids.shape)
        self.stats.compile_seconds[name] = round(time.perf_counter() - started, 3)
        self._compiled_shapes.add(batch.shape)

    def _run(self, batch: _Batch, stop_sequences: tuple[str, ...]) -> list[Completion]:
        real = len(batch.rows)
        token_ids = tf.constant(batch.token_ids)
        inputs = {
            "token_ids": token_ids,
            "prefill": (
                tf.constant(batch.distinct_prompts),
                tf.constant(batch.sources),
                token_ids,
            ),
            "rest": (
                tf.constant(batch.prompt_mask),
                tf.constant(batch.prompt_lengths + self.max_new_tokens),
            ),
        }
        self._compile_for(batch, inputs)
        started = time.perf_counter()
        cache = self._prefill(*inputs["prefill"])
        index = tf.constant(int(batch.prompt_lengths[:real].min()), tf.int32)
        finished = batch.finished.copy()
        completions: list[Completion | None] = [None] * real
        # Every row finishes by its last position at the latest, which lies inside the batch.
        while not finished.all():
            token_ids, cache, index, in_graph_finished = self._decode(
                token_ids, cache, index, *inputs["rest"], tf.constant(finished)
            )
            finished |= in_graph_finished.numpy()
            self._retire_rows(
                batch, token_ids.numpy(), int(index), finished, completions, stop_sequences
            )
        self.stats.generate_seconds += time.perf_counter() - started
        self.stats.batches += 1
        return completions

    def _retire_rows(
        self, batch: _Batch, ids, position: int, finished, completions, stop_sequences
    ) -> None:
        """Marks finished the live rows whose text reached a stop; records their completions."""
        live = [r for r in range(len(batch.rows)) if completions[r] is None]
        new_tokens = [ids[r, batch.prompt_lengths[r] : position] for r in live]
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
