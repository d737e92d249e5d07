from __future__ import annotations

import pytest

from agentsearch._stats import bootstrap, paired_difference


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_data():
    small = bootstrap([1, 0] * 10)
    large = bootstrap([1, 0] * 500)
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3
    assert bootstrap([1.0] * 5) == bootstrap([1.0] * 5) and bootstrap([1.0] * 5).low == 1.0


def test_paired_difference_uses_shared_examples_only():
    best = {"a": 1.0, "b": 1.0, "c": 1.0, "extra": 0.0}
    seed = {"a": 0.0, "b": 1.0, "c": 0.0}
    estimate = paired_difference(best, seed)
    assert estimate.n == 3 and estimate.mean == pytest.approx(2 / 3)
    assert 0.0 <= estimate.low <= estimate.mean <= estimate.high <= 1.0


def test_empty_scores_are_refused():
    with pytest.raises(ValueError):
        bootstrap([])
