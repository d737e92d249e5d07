"""The prompt-level search space: for each predictor, instruction variants and demo sets.

The space is built once per run (it costs LM calls) and kept as JSON with the run, so a resumed
run and its Optuna study see the same choices behind the same indices.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentsearch.search_space import CandidateSpec, PredictorSpec


@dataclass(frozen=True)
class PredictorChoices:
    instructions: tuple[str, ...]
    """Index 0 is the seed program's instruction."""
    demo_sets: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class PromptSpace:
    seed: CandidateSpec
    predictors: tuple[PredictorChoices, ...]
    demos: dict[str, dict[str, Any]]
    formats: tuple[str, ...]
    max_demos: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed.model_dump(mode="json"),
            "predictors": [
                {"instructions": list(p.instructions), "demo_sets": [list(s) for s in p.demo_sets]} for p in self.predictors
            ],
            "demos": self.demos,
            "formats": list(self.formats),
            "max_demos": self.max_demos,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSpace:
        return cls(
            seed=CandidateSpec.model_validate(data["seed"]),
            predictors=tuple(
                PredictorChoices(tuple(p["instructions"]), tuple(tuple(s) for s in p["demo_sets"]))
                for p in data["predictors"]
            ),
            demos=data["demos"],
            formats=tuple(data["formats"]),
            max_demos=int(data["max_demos"]),
        )

    def spec(self, params: dict[str, Any]) -> CandidateSpec:
        """The spec for one assignment of the parameters ``optuna_params`` describes."""
        predictors = []
        for base, choices in zip(self.seed.predictors, self.predictors, strict=True):
            demo_set = choices.demo_sets[params[f"{base.name}.demo_set"]] if choices.demo_sets else ()
            predictors.append(
                PredictorSpec(
                    name=base.name,
                    signature=base.signature,
                    module=base.module,
                    instructions=choices.instructions[params[f"{base.name}.instruction"]],
                    demo_ids=tuple(demo_set[: params[f"{base.name}.n_demos"]]),
                    format=params[f"{base.name}.format"],
                )
            )
        return CandidateSpec(predictors=tuple(predictors))

    def seed_params(self) -> dict[str, Any] | None:
        if any(base.format not in self.formats for base in self.seed.predictors):
            return None
        params: dict[str, Any] = {}
        for base in self.seed.predictors:
            params.update({f"{base.name}.instruction": 0, f"{base.name}.demo_set": 0, f"{base.name}.n_demos": 0,
                           f"{base.name}.format": base.format})
        return params


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
