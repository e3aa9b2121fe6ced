"""pass@k: the chance that at least one of k samples passes, estimated without bias from n >= k.

Chen et al. (2021), "Evaluating Large Language Models Trained on Code": with n samples of
which c pass, pass@k = 1 - C(n - c, k) / C(n, k), computed as a product for stability.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def estimate_pass_at_k(num_samples: int, num_correct: int, k: int) -> float | None:
    """Unbiased pass@k of one problem; None when `k > num_samples` (not computable).

    Raises:
        ValueError: the counts are impossible (negative, or more correct than samples) or k < 1.
    """
    n, c = int(num_samples), int(num_correct)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if n < 0 or not 0 <= c <= n:
        raise ValueError(f"Impossible counts: {c} correct out of {n} samples.")
    if k > n:
        return None
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float | None:
    """Mean pass@k over problems given `(num_samples, num_correct)` per problem.

    None when any problem has fewer than k samples, or there are no problems: a mean over only
    the problems that could be scored would not be the same quantity.
    """
    estimates = [estimate_pass_at_k(n, c, k) for n, c in counts]
    if not estimates or any(e is None for e in estimates):
        return None
    return float(np.mean(estimates))


def pass_at_k_table(
    counts: Sequence[tuple[int, int]], ks: Sequence[int]
) -> dict[str, float | None]:
    """`{"pass@k": value or None}` for each k, in the order given."""
    return {f"pass@{k}": mean_pass_at_k(counts, k) for k in ks}
