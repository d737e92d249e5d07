"""The prompt-level search space: for each predictor, instruction variants and demo sets.

The space is built once per run (it costs LM calls) and kept as JSON with the run, so a resumed
run and its Optuna study see the same choices behind the same indices.
"""

from __future__ import annotations

import random
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
        for base, choices in zip(self.seed.predictors, self.predictors):
            demo_set = choices.demo_sets[params[f"{base.name}.demo_set"]] if choices.demo_sets else ()
            predictors.append(
                PredictorSpec(
                    name=base.name,
                    signature=base.signature,
                    module=base.module,
                    instructions=choices.instructions[params[f"{base.name}.instruction"]],
                    demo_ids=tuple(demo_set[: params[f"{base.name}.n_demos"]]),
                )
            )
        return CandidateSpec(predictors=tuple(predictors), format=params["format"])

    def seed_params(self) -> dict[str, Any] | None:
        if self.seed.format not in self.formats:
            return None
        params: dict[str, Any] = {"format": self.seed.format}
        for base in self.seed.predictors:
            params.update({f"{base.name}.instruction": 0, f"{base.name}.demo_set": 0, f"{base.name}.n_demos": 0})
        return params


def make_demo_sets(
    preferred: list[str], others: list[str], *, num_sets: int, size: int, rng: random.Random
) -> tuple[tuple[str, ...], ...]:
    """Demo sets of ``size`` ids: the first leads with ``preferred`` (bootstrapped) demos, the rest are shuffles."""
    pool = preferred + others
    if not pool or size == 0:
        return ()
    size = min(size, len(pool))
    first = tuple((rng.sample(preferred, len(preferred)) + rng.sample(others, len(others)))[:size])
    sets = [first]
    for _ in range(num_sets - 1):
        sets.append(tuple(rng.sample(pool, size)))
    return tuple(dict.fromkeys(sets))  # drop repeats, keep order
