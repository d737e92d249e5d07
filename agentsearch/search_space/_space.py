"""The search space: prompt choices (instructions, demos, formats) and module choices (kinds, topologies).

The space is define-by-run: ``suggest`` asks a trial for the topology first, then for each node it
creates, its module kind, then only the options that kind has. Optuna's TPE (with ``group=True``)
models such conditional spaces; a fixed list of distributions could not (a debate's third agent
exists only when the debate has three agents). The space is built once per run, since its
instructions and demos cost LM calls, and kept as JSON with the run so a resumed run sees the same
choices behind the same indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from optuna.distributions import CategoricalDistribution, IntDistribution
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentsearch.search_space._program import node_signature
from agentsearch.search_space._spec import CandidateSpec, PredictorSpec
from agentsearch.search_space.kinds import kind_names, node_kind
from agentsearch.search_space.topologies import node_role, topology, topology_names
from agentsearch.search_space.topologies._base import role

AUX_KINDS = ("predict", "chain_of_thought")
"""Kinds a wiring node (analyze, aggregate, judge, critique, revise) may take."""


class ModuleSpaceConfig(BaseModel):
    """``search.modules`` in task.yaml: which module kinds and topologies the module level may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[str] = Field(default_factory=lambda: [k for k in kind_names() if node_kind(k).default], min_length=1,
                             description="node kinds (search_space/kinds)")
    topologies: list[str] = Field(default_factory=lambda: [t for t in topology_names() if topology(t).default],
                                  min_length=1, description="topologies (search_space/topologies)")
    max_samples: int = Field(default=5, ge=2, le=32, description="samples of self_consistency and best_of_n")
    max_members: int = Field(default=3, ge=2, le=8, description="ensemble members and debate agents")
    max_rounds: int = Field(default=2, ge=1, le=10, description="debate rounds and reflect revisions")
    tools: list[str] = Field(default=[], description="'package.module:function' tools of react nodes")
    max_iters: int = Field(default=3, ge=1, le=20, description="tool-use steps of a react node")
    reward: str | None = Field(default=None, description="'package.module:function' best_of_n may judge with")

    @field_validator("kinds", "topologies")
    @classmethod
    def _registered(cls, names: list[str], info: ValidationInfo) -> list[str]:
        resolve = node_kind if info.field_name == "kinds" else topology
        for name in names:
            resolve(name)
        return names

    @model_validator(mode="after")
    def _consistent(self) -> ModuleSpaceConfig:
        for kind in self.kinds:
            node_kind(kind).check_config(self)
        if self.tools and "react" not in self.kinds:
            raise ValueError("tools: listed, but react is not among search.modules.kinds")
        return self

    def retrieves(self, levels: Sequence[str], max_demos: int) -> bool:
        """Whether a run needs the train pool a retrieve_demos node draws from."""
        return "module" in levels and "retrieve_demos" in self.kinds and max_demos > 0


class Trial(Protocol):
    """The part of ``optuna.Trial`` the space uses."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


@dataclass(frozen=True)
class SearchSpace:
    signature: str
    instructions: tuple[str, ...]
    """Instruction variants of the task's nodes; index 0 is the seed program's."""
    demo_sets: tuple[tuple[str, ...], ...]
    retrieval_pool: tuple[str, ...]
    """Train examples a retrieve_demos node picks its demos from."""
    demos: dict[str, dict[str, Any]]
    """Texts of every demo id above."""
    formats: tuple[str, ...]
    max_demos: int
    levels: tuple[str, ...]
    modules: ModuleSpaceConfig
    program: dict[str, Any] | None = None
    """For a task's own program (``program.module``): its reference and, per named predictor, its
    signature and instruction variants (``{"reference": ..., "nodes": [{"name", "signature",
    "instructions"}]}``); demo texts are keyed ``<predictor>:<train example id>``."""

    # persistence --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modules"] = self.modules.model_dump(mode="json")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(
            signature=data["signature"], instructions=tuple(data["instructions"]),
            demo_sets=tuple(tuple(s) for s in data["demo_sets"]), retrieval_pool=tuple(data["retrieval_pool"]),
            demos=data["demos"], formats=tuple(data["formats"]), max_demos=int(data["max_demos"]),
            levels=tuple(data["levels"]), modules=ModuleSpaceConfig.model_validate(data["modules"]),
            program=data.get("program"),
        )

    # choices ------------------------------------------------------------------------------------
    @property
    def topologies(self) -> tuple[str, ...]:
        if self.program is not None:
            return ("program",)
        return tuple(self.modules.topologies) if "module" in self.levels else ("single",)

    @property
    def kinds(self) -> tuple[str, ...]:
        kinds = tuple(self.modules.kinds) if "module" in self.levels else ("predict",)
        if self.program is not None:  # your program's predictors: kinds that can stand in for one
            kinds = tuple(k for k in kinds if node_kind(k).wraps_predictors)
        return tuple(k for k in kinds if node_kind(k).available(self))

    def kinds_for(self, signature: str) -> tuple[str, ...]:
        """The kinds a node over ``signature`` may be (``predict`` always: the node as written)."""
        return tuple(k for k in dict.fromkeys(("predict", *self.kinds)) if node_kind(k).fits(signature))

    @property
    def aux_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in AUX_KINDS if k in self.kinds) or ("predict",)

    @property
    def judges(self) -> tuple[str, ...]:
        return ("lm",) + ((self.modules.reward,) if self.modules.reward else ())

    def node_demos(self, node: str, example_ids: Sequence[str]) -> tuple[str, ...]:
        """The demo ids of node ``node`` for train examples ``example_ids`` (a demo set's): the
        examples themselves, or for your own program, that predictor's step in their traces."""
        if self.program is None:
            return tuple(example_ids)
        return tuple(f"{node}:{e}" for e in example_ids if f"{node}:{e}" in self.demos)

    def _searches_demos(self, kind: str) -> bool:
        return "prompt" in self.levels and node_kind(kind).fixed_demos and bool(self.demo_sets)

    # define-by-run ------------------------------------------------------------------------------
    @staticmethod
    def choose(trial: Trial, name: str, choices: tuple[Any, ...]) -> Any:
        """The only choice, or the trial's pick (a choice of one is not asked: it would be a useless parameter)."""
        return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))

    def task_node(self, trial: Trial, name: str) -> PredictorSpec:
        """A node whose prompt and kind the search varies, playing the role its name says (``member_2``)."""
        kind = self.choose(trial, f"{name}.module", self.kinds)
        options: dict[str, Any] = {"instructions": self.instructions[0]}
        if "prompt" in self.levels:
            options["instructions"] = self.instructions[
                self.choose(trial, f"{name}.instruction", tuple(range(len(self.instructions))))
            ]
        if self._searches_demos(kind) and self.max_demos:
            count = trial.suggest_int(f"{name}.n_demos", 0, self.max_demos)
            if count:
                demo_set = self.choose(trial, f"{name}.demo_set", tuple(range(len(self.demo_sets))))
                options["demo_ids"] = self.demo_sets[demo_set][:count]
        options.update(node_kind(kind).suggest(self, trial, name))
        return PredictorSpec(
            name=name, signature=node_signature(self.signature, node_role(name)), module=kind,
            format=self.choose(trial, f"{name}.format", self.formats), **options,
        )

    def wiring_node(self, trial: Trial, name: str) -> PredictorSpec:
        """A node that only wires its topology: its role's fixed instructions, a plain kind and a format."""
        played = node_role(name)
        return PredictorSpec(
            name=name, signature=node_signature(self.signature, played), instructions=role(played).instructions or "",
            module=self.choose(trial, f"{name}.module", self.aux_kinds),
            format=self.choose(trial, f"{name}.format", self.formats),
        )

    def suggest(self, trial: Trial) -> CandidateSpec:
        return topology(self.choose(trial, "topology", self.topologies)).suggest(self, trial)

    # size ---------------------------------------------------------------------------------------
    def _task_node_count(self) -> int:
        count = 0
        for kind in self.kinds:
            choices = len(self.formats) * (len(self.instructions) if "prompt" in self.levels else 1)
            if self._searches_demos(kind) and self.max_demos:
                choices *= 1 + self.max_demos * len(self.demo_sets)
            count += choices * node_kind(kind).configurations(self)
        return count

    def size(self) -> int:
        """How many distinct configurations ``suggest`` can return (the conditional tree's leaves)."""
        node, wiring = self._task_node_count(), len(self.aux_kinds) * len(self.formats)
        return sum(topology(name).size(self, node, wiring) for name in self.topologies)


class _DefaultTrial:
    """Answers every question with the seed program's choice, and records what was asked."""

    PREFERRED = {"module": "predict", "format": "chat", "instruction": 0, "n_demos": 0, "topology": "single"}

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.distributions: dict[str, Any] = {}

    def _preferred(self, name: str, default: Any) -> Any:
        return self.PREFERRED.get(name.rsplit(".", 1)[-1], default)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        value = self._preferred(name, choices[0])
        value = value if value in choices else choices[0]
        self.params[name], self.distributions[name] = value, CategoricalDistribution(choices)
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = min(max(self._preferred(name, low), low), high)
        self.params[name], self.distributions[name] = value, IntDistribution(low, high)
        return value


def seed_trial(space: SearchSpace, seed: CandidateSpec) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Params and distributions under which ``suggest`` returns the seed, or None if the space lacks it."""
    trial = _DefaultTrial()
    if space.suggest(trial) != seed:
        return None
    return trial.params, trial.distributions
