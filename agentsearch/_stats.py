"""Uncertainty of scores: percentile bootstrap over examples, and paired differences between programs.

A dev set of 100 examples cannot tell 0.79 from 0.75 with confidence; the report says so instead of
letting a user read noise as progress.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int


def bootstrap(scores: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> Estimate:
    """Mean with a percentile-bootstrap interval (resampling examples with replacement)."""
    values = np.asarray(scores, dtype=float)
    if values.size == 0:
        raise ValueError("no scores")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(RESAMPLES, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(float(values.mean()), float(low), float(high), int(values.size))


def paired_difference(first: Mapping[str, float], second: Mapping[str, float], *, confidence: float = 0.95,
                      seed: int = 0) -> Estimate:
    """``first - second`` over the examples both were scored on, resampled as pairs."""
    shared = sorted(set(first) & set(second))
    return bootstrap([first[key] - second[key] for key in shared], confidence=confidence, seed=seed)


def verdict(difference: Estimate) -> str:
    """What a paired difference's interval allows one to claim: a direction only when it excludes 0."""
    if difference.low > 0:
        return "better, beyond the 95% interval"
    if difference.high < 0:
        return "worse, beyond the 95% interval"
    return "within noise (the 95% interval includes 0)"
