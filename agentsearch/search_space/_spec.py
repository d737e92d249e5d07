"""Candidate specs: a program described as data, so it can be hashed, stored, diffed and rebuilt.

A spec holds what the search varies and nothing else (no LM, no scores, no lineage): two candidates
with the same spec are the same program, and the hash says so. A program is a small graph: a
``topology`` says how its nodes are wired, each node is one reasoning module (``module``) over a
DSPy signature, with its own instructions, demos and prompt format.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentsearch.search_space.kinds import node_kind
from agentsearch.search_space.kinds._base import KINDS
from agentsearch.search_space.topologies import topology
from agentsearch.search_space.topologies._base import TOPOLOGIES

PromptFormat = Literal["chat", "json", "xml", "completion"]


class PredictorSpec(BaseModel):
    """One node. Options that belong to another module kind must stay at their defaults (one spec per program)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "predict"
    signature: str
    instructions: str = ""
    module: str = "predict"
    """Its node kind (``search_space.kinds``)."""
    demo_ids: tuple[str, ...] = ()
    """Fixed demos; for ``retrieve_demos``, the pool the nearest ``retrieve_k`` are drawn from per input."""
    format: PromptFormat = "chat"
    """How the node's prompts are written and its answers parsed (its DSPy adapter)."""
    samples: int = Field(default=1, ge=1, le=32)
    """Samples drawn by ``self_consistency`` (majority vote) and ``best_of_n`` (best by the judge)."""
    judge: str | None = None
    """How ``best_of_n`` scores a sample: ``lm`` (an LM verdict) or a ``package.module:function`` reward
    ``fn(inputs: dict, outputs: dict) -> float``. Never the task metric: it needs the gold answer."""
    tools: tuple[str, ...] = ()
    """``package.module:function`` references a ``react`` node may call."""
    max_iters: int = Field(default=1, ge=1, le=20)
    """Tool-use steps of a ``react`` node."""
    retrieve_k: int = Field(default=1, ge=1, le=64)
    """Demos a ``retrieve_demos`` node puts in each prompt."""

    @field_validator("module")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        node_kind(value)
        return value

    @model_validator(mode="after")
    def _options_match_module(self) -> PredictorSpec:
        defaults = type(self).model_fields
        kind = node_kind(self.module)
        for option in KINDS.all_options():
            if option not in kind.options and getattr(self, option) != defaults[option].default:
                raise ValueError(f"{option} applies only to module {' or '.join(KINDS.owners(option))}, not {self.module}")
        kind.check(self)
        return self


class CandidateSpec(BaseModel):
    """Nodes wired by a topology (``search_space.topologies``); the last node (or the vote) gives the
    task's outputs. ``rounds`` and ``aggregator`` belong to the topologies that declare them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topology: str = "single"
    predictors: tuple[PredictorSpec, ...] = Field(min_length=1)
    rounds: int = Field(default=1, ge=1, le=10)
    """Rounds of a ``debate``, revisions of a ``reflect`` loop."""
    aggregator: Literal["vote", "lm"] = "vote"
    """How an ``ensemble`` combines its members: the majority answer, or a last node's."""
    program: str | None = None
    """The user's program a ``program`` spec configures (a ``package.module:function`` reference)."""

    @field_validator("topology")
    @classmethod
    def _known_topology(cls, value: str) -> str:
        topology(value)
        return value

    @model_validator(mode="after")
    def _wiring(self) -> CandidateSpec:
        defaults = type(self).model_fields
        wiring = topology(self.topology)
        for option in TOPOLOGIES.all_options():
            if option not in wiring.options and getattr(self, option) != defaults[option].default:
                owned = " or ".join(TOPOLOGIES.owners(option))
                raise ValueError(f"{option} applies only to topology {owned}, not {self.topology}")
        wiring.check(self)
        return self

    def canonical_json(self) -> str:
        """Defaults left out, so adding an option with a default keeps every earlier hash."""
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def demo_ids(self) -> set[str]:
        return {demo for predictor in self.predictors for demo in predictor.demo_ids}

    def modules(self) -> set[str]:
        return {predictor.module for predictor in self.predictors}

    def structure(self) -> str:
        """``topology: kinds`` in one line, e.g. ``debate x2: chain_of_thought,predict``."""
        rounds = f" x{self.rounds}" if self.rounds > 1 else ""
        kinds = ",".join(dict.fromkeys(predictor.module for predictor in self.predictors))
        return f"{self.topology}{rounds}: {kinds}"


class DesignSpec(BaseModel):
    """An agent-level candidate: a whole agent program as Python source, written by the meta agent.

    ``code`` defines ``forward(inputs: dict, lm) -> dict`` over the task signature; ``lm(prompt or
    messages, **options)`` is its only way to an LM, and it only ever runs in the sandbox. The name
    and rationale are the meta agent's words about the design: kept, shown, but not hashed, so the
    same code under another name is the same program.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["design"] = "design"
    signature: str
    name: str = Field(min_length=1, max_length=200)
    rationale: str = ""
    code: str

    topology: ClassVar[str] = "agent"

    def canonical_json(self) -> str:
        return json.dumps({"kind": self.kind, "signature": self.signature, "code": self.code}, sort_keys=True,
                          separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def demo_ids(self) -> set[str]:
        return set()

    def modules(self) -> set[str]:
        return {"design"}

    def structure(self) -> str:
        return f"agent: {self.name}"


AnySpec = CandidateSpec | DesignSpec


def level_of(spec: AnySpec) -> Any:
    """The level a spec is searched at (``store.Level``): an agent design; a prompt-level spec (only
    prompts vary, as its topology says); else the module level."""
    from agentsearch.store._base import Level

    if isinstance(spec, DesignSpec):
        return Level.AGENT
    return Level.PROMPT if topology(spec.topology).prompt_level(spec) else Level.MODULE


def parse_spec(data: Any) -> AnySpec:
    """A stored or saved spec, of either level: agent designs say ``kind: design``."""
    if isinstance(data, dict) and data.get("kind") == "design":
        return DesignSpec.model_validate(data)
    return CandidateSpec.model_validate(data)
