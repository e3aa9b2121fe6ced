"""Fixed-length token examples: packing documents into blocks, and prompt + completion pairs.

Every example has the same three arrays of length `sequence_length`: `input_ids` (int32),
`attention_mask` (uint8: 1 on real tokens, 0 on padding) and `loss_mask` (uint8: 1 where the
token is a training target). Padding uses the end-of-text id, which no mask marks as real.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

TokenExample = dict[str, np.ndarray]
FEATURE_NAMES = ("input_ids", "attention_mask", "loss_mask")


def padded_example(
    ids: Sequence[int], loss_start: int, sequence_length: int, pad_id: int
) -> TokenExample:
    """An example holding `ids` then padding, with loss on `ids[loss_start:]`."""
    length = len(ids)
    if length > sequence_length:
        raise ValueError(f"{length} tokens do not fit in sequence_length {sequence_length}.")
    input_ids = np.full(sequence_length, pad_id, dtype=np.int32)
    input_ids[:length] = ids
    attention_mask = np.zeros(sequence_length, dtype=np.uint8)
    attention_mask[:length] = 1
    loss_mask = np.zeros(sequence_length, dtype=np.uint8)
    loss_mask[loss_start:length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def prompt_completion_example(
    prompt_ids: Sequence[int], completion_ids: Sequence[int], eot_id: int, sequence_length: int
) -> TokenExample | None:
    """Prompt, completion and end-of-text, with loss on the completion and end-of-text only.

    Returns None when they do not fit: cutting a completion would teach the model to stop
    mid-solution.
    """
    ids = [*prompt_ids, *completion_ids, eot_id]
    if len(ids) > sequence_length:
        return None
    return padded_example(ids, len(prompt_ids), sequence_length, eot_id)


class BlockPacker:
    """Concatenates documents, each followed by end-of-text, and cuts full blocks.

    Loss is on every real token. `finish` pads the remainder into one last block, so no token
    is dropped; a packer is used per work unit and so pads at most once per unit.
    """

    def __init__(self, sequence_length: int, eot_id: int):
        if sequence_length < 2:
            raise ValueError(f"sequence_length must be at least 2, got {sequence_length}.")
        self._sequence_length = sequence_length
        self._eot_id = eot_id
        self._pending: list[int] = []

    def add(self, ids: Sequence[int]) -> Iterator[TokenExample]:
        """Adds one document; yields the blocks it completes."""
        self._pending.extend(ids)
        self._pending.append(self._eot_id)
        full = len(self._pending) // self._sequence_length
        if not full:
            return
        cut = full * self._sequence_length
        blocks = np.asarray(self._pending[:cut], dtype=np.int32).reshape(full, -1)
        del self._pending[:cut]
        for block in blocks:
            yield {
                "input_ids": block,
                "attention_mask": np.ones(self._sequence_length, dtype=np.uint8),
                "loss_mask": np.ones(self._sequence_length, dtype=np.uint8),
            }

    def finish(self) -> Iterator[TokenExample]:
        """Yields the padded remainder, if any, and empties the packer."""
        if self._pending:
            yield padded_example(self._pending, 0, self._sequence_length, self._eot_id)
        self._pending = []
