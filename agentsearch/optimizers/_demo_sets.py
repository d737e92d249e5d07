"""Demo sets for the prompt level: which training examples a predictor sees, in which order."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

MAX_CLASSES = 10
"""More distinct answers than this: free-form outputs, with no labels to balance in a demo set."""


def class_labels(train: Sequence[Any], outputs: Sequence[str]) -> dict[str, str] | None:
    """Each train example's label (its output fields joined), for ``make_demo_sets(label_of=...)``;
    None when the outputs are free-form."""
    labels = {item.id: "\x1f".join(str(item.example.get(name)) for name in outputs) for item in train}
    return None if len(set(labels.values())) > MAX_CLASSES else labels


def _interleave(groups: list[list[str]], rng: random.Random) -> list[str]:
    """Round-robin over the groups (in a random group order), so any prefix is as balanced as it can be."""
    groups = [list(group) for group in groups if group]
    rng.shuffle(groups)
    order: list[str] = []
    while groups:
        order += [group.pop(0) for group in groups]
        groups = [group for group in groups if group]
    return order


def make_demo_sets(
    preferred: list[str],
    others: list[str],
    *,
    num_sets: int,
    size: int,
    rng: random.Random,
    label_of: Mapping[str, str] | None = None,
) -> tuple[tuple[str, ...], ...]:
    """Demo sets of ``size`` ids; the first leads with ``preferred`` (bootstrapped) demos, the rest are random.

    With ``label_of`` (a classification task), every set interleaves the labels: small models copy the
    majority label of their demos, so an unbalanced prefix biases them.
    """
    pool = preferred + others
    if not pool or size == 0:
        return ()
    size = min(size, len(pool))
    labels = sorted({label_of[demo] for demo in pool}) if label_of else [""]

    def ordered(lead: list[str], rest: list[str]) -> tuple[str, ...]:
        groups = [[demo for demo in lead + rest if not label_of or label_of[demo] == label] for label in labels]
        return tuple(_interleave(groups, rng)[:size])

    sets = [ordered(rng.sample(preferred, len(preferred)), rng.sample(others, len(others)))]
    for _ in range(num_sets - 1):
        sets.append(ordered([], rng.sample(pool, len(pool))))
    return tuple(dict.fromkeys(sets))  # drop repeats, keep order
