"""The decode loop: from a prefilled key/value cache, one token per row and step.

Rows are prompts of different lengths in one `[rows, length]` buffer: at the start of each
row, or all ending at one column where the model keeps each row's position itself (a cache
of rows at their own positions, `kv_cache.row_positions`). Decoding begins at the first
prompt end; at a column still inside a row's prompt the row keeps its own token (and the step
only extends its cache), past it the row takes the chosen token. A row finishes at a stop
token or at its own end; a finished row writes `pad_token_id` from then on, and the loop ends
when every row has finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from keras import ops


def decode_steps(
    model,
    token_ids,
    cache,
    index,
    prompt_mask,
    row_ends,
    finished,
    choose: Callable,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    max_steps: int | None = None,
    kernels=None,
):
    """Decodes from position `index` until every row has finished, or for `max_steps` steps.

    Args:
        model: a causal LM with `call_with_cache(token_ids, cache, index, kernels)` and
            `decode_kernels(rows)`.
        token_ids: int `[rows, length]`: the prompts, then anything (overwritten).
        cache: the model's key/value cache, filled up to position `index - 1`.
        index: the position the next token goes to (a scalar).
        prompt_mask: bool `[rows, length]`, True on prompt positions.
        row_ends: int `[rows]`: a row finishes once it has filled position `row_end - 1`.
        finished: bool `[rows]`: rows already done (they only write padding).
        choose: `choose(logits [rows, vocabulary], index) -> [rows]` int32, the token choice.
        stop_token_ids: generated tokens that finish their row (kept in the row).
        pad_token_id: what finished rows write.
        max_steps: at most this many steps (so a caller can look at the rows between calls);
            None runs to the end.
        kernels: the model's `decode_kernels(rows)`, from a caller that decodes in several
            calls; made here, once for all the steps, when None.

    Returns:
        `(token_ids, cache, index, finished)` where the loop stopped.
    """
    rows, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    if kernels is None:
        kernels = model.decode_kernels(token_ids.shape[0])

    def keep_going(token_ids, cache, index, finished):
        return ops.logical_and(index < length, ops.logical_not(ops.all(finished)))

    def step(token_ids, cache, index, finished):
        # Position `index - 1` holds the last token chosen (or a prompt token): running it
        # extends the cache and gives the distribution of position `index`.
        previous = ops.slice(token_ids, [0, index - 1], [rows, 1])
        logits, _, cache = model.call_with_cache(previous, cache, index - 1, kernels)
        chosen = ops.where(finished, pad_token_id, choose(logits[:, 0, :], index))
        in_prompt = prompt_mask[:, index]
        next_token = ops.where(in_prompt, token_ids[:, index], chosen)
        token_ids = ops.slice_update(token_ids, [0, index], next_token[:, None])
        stopped = ops.logical_and(is_stop(next_token, stop_token_ids), ops.logical_not(in_prompt))
        full = ops.greater_equal(index + 1, row_ends)
        finished = ops.logical_or(finished, ops.logical_or(stopped, full))
        return token_ids, cache, index + 1, finished

    return ops.while_loop(
        keep_going,
        step,
        (token_ids, cache, index, finished),
        maximum_iterations=max_steps,
    )


def prompt_lengths_of(prompt_mask):
    """`[rows]` int32: the prompt positions of each row."""
    return ops.sum(ops.cast(prompt_mask, "int32"), axis=-1)


def kept_positions(token_ids, prompt_mask, row_ends, stop_token_ids: Sequence[int]):
    """True on each row's prompt and its generated tokens, up to and including the first stop
    token and before the row's end: the `padding_mask` of what was generated."""
    generated_stop = ops.logical_and(
        is_stop(token_ids, stop_token_ids), ops.logical_not(prompt_mask)
    )
    generated_stop = ops.cast(generated_stop, "int32")
    stops_before = ops.cumsum(generated_stop, axis=-1) - generated_stop
    positions = ops.arange(ops.shape(token_ids)[1])[None, :]
    return ops.logical_and(ops.equal(stops_before, 0), positions < row_ends[:, None])


def is_stop(token_ids, stop_token_ids: Sequence[int]):
    """True where `token_ids` holds any of `stop_token_ids`."""
    found = ops.zeros_like(token_ids, dtype="bool")
    for stop_id in stop_token_ids:
        found = ops.logical_or(found, ops.equal(token_ids, stop_id))
    return found
