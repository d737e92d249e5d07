"""The topology contract and the registry every topology is resolved from by name."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from agentsearch._registry import Registry

if TYPE_CHECKING:
    import dspy

    from agentsearch.search_space._program import SpecProgram
    from agentsearch.search_space._space import SearchSpace, Trial
    from agentsearch.search_space._spec import CandidateSpec

Params = dict[str, Any]

TOPOLOGIES: Registry[Topology] = Registry("topology")
_ROLES: dict[str, Role] = {}


@dataclass(frozen=True)
class Role:
    """What a node playing this role reads besides the task's inputs, and what it writes."""

    reads: tuple[str, ...] = ()
    writes: str | None = None
    """Its own output field; None: the task's outputs."""
    instructions: str | None = None
    """Fixed instructions of a node that only wires the topology; None: a task node, whose
    instructions, demos, kind and format the search varies."""


class Topology:
    """One way to wire nodes. Subclass it with a unique ``name`` and it is registered.

    Instances are stateless and shared by every thread and program of a process; a topology's
    module may import DSPy only inside ``run`` (reading specs from the store must stay light).
    Nodes are named after their role (``answer``), numbered when several play it (``member_2``).
    ``order`` fixes the topology's place in the space's choices (which samplers' seeds depend on),
    ``lift_rank`` its place among a staged search's lifts (None: no lift). A role two topologies
    share (``answer``) must be declared the same by both.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    roles: ClassVar[Mapping[str, Role]] = {}
    options: ClassVar[tuple[str, ...]] = ()
    """CandidateSpec fields the topology owns (``rounds``, ``aggregator``): others keep their defaults."""
    default: ClassVar[bool] = True
    """Among ``search.modules.topologies`` when the task file does not list them."""
    lift_rank: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in TOPOLOGIES.names():
            raise ValueError(f"topology {cls.name!r} is registered twice")
        for role, declared in cls.roles.items():
            if _ROLES.get(role, declared) != declared:
                raise ValueError(f"topology {cls.name!r} declares role {role!r} unlike another topology")
        _ROLES.update(cls.roles)
        TOPOLOGIES.add(cls())

    def check(self, spec: CandidateSpec) -> None:
        """Raise ValueError when the spec's nodes cannot be wired this way (their count, say)."""

    def build(self, spec: CandidateSpec, demos: Mapping[str, Mapping[str, Any]], lm: dspy.BaseLM | None, *,
              base_dir: Path | None, pin_lm: bool) -> dspy.Module | None:
        """A program of this topology built its own way; None: a ``SpecProgram`` of nodes that ``run`` wires."""
        return None

    def run(self, program: SpecProgram, inputs: dict[str, Any]) -> dspy.Prediction:
        """The program's answer to ``inputs``: its nodes are ``program.nodes``, in the spec's order."""
        raise NotImplementedError

    def suggest(self, space: SearchSpace, trial: Trial) -> CandidateSpec:
        """A spec of this topology, its nodes made by ``space.task_node`` and ``space.wiring_node``."""
        raise NotImplementedError

    def size(self, space: SearchSpace, node: int, wiring: int) -> int:
        """How many distinct specs ``suggest`` can return, given how many a task node and a wiring node can be."""
        raise NotImplementedError

    def shape_params(self, spec: CandidateSpec) -> Params:
        """The trial params of the topology's own choices (``ensemble.members``) that ``suggest``
        would need to return the shape of ``spec``; its nodes' params are named after the nodes."""
        return {}

    def lift_prompts(self, space: SearchSpace) -> int:
        """How many of the best prompt-level trials its lift takes (it is left out when fewer exist)."""
        return 1

    def lift(self, space: SearchSpace, prompts: Sequence[Params]) -> Params:
        """The trial params that put the prompt-level params ``prompts`` (best first) into this topology."""
        raise NotImplementedError

    def prompt_level(self, spec: CandidateSpec) -> bool:
        """Whether the spec varies only prompts (instructions, demos, format), not the modules: the
        candidate's level in the store. Only a single Predict node, by default."""
        return False

    def task_nodes(self, spec: CandidateSpec) -> list[int]:
        """Positions of the nodes whose prompts the search varies (not those that only wire)."""
        return [i for i, node in enumerate(spec.predictors)
                if (role := _ROLES.get(node_role(node.name))) is not None and role.instructions is None]


def node_role(name: str) -> str:
    """The role a node of this name plays: ``member_2`` plays ``member``."""
    return re.sub(r"_\d+$", "", name)


def role(name: str) -> Role:
    try:
        return _ROLES[name]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; known: {', '.join(sorted(_ROLES))}") from None


topology = TOPOLOGIES.get
topology_names = TOPOLOGIES.names


def forget(name: str) -> None:
    """Unregister a topology and the roles only it plays (a test's own, when the test ends)."""
    roles = set(TOPOLOGIES.get(name).roles)
    TOPOLOGIES.remove(name)
    for other in topology_names():
        roles -= set(TOPOLOGIES.get(other).roles)
    for role_name in roles:
        del _ROLES[role_name]


# trial params of a lift ---------------------------------------------------------------------------
NODE_OPTIONS = ("instruction", "n_demos", "demo_set", "format")
"""The prompt-level choices of a task node, copied from a prompt-level trial onto lifted nodes."""


def node_params(prompt: Params, name: str, module: str, **extra: Any) -> Params:
    """A task node called ``name`` with the prompt choices of the trial ``prompt`` (whose node is ``answer``)."""
    copied = {f"{name}.{option}": prompt[f"answer.{option}"] for option in NODE_OPTIONS if f"answer.{option}" in prompt}
    return {f"{name}.module": module, **copied, **{f"{name}.{key}": value for key, value in extra.items()}}


def numbered_params(prompts: Sequence[Params], role: str) -> Params:
    """Task nodes ``role_1``, ``role_2``... each with one prompt's choices, as Predict."""
    return {key: value for i, prompt in enumerate(prompts, 1)
            for key, value in node_params(prompt, f"{role}_{i}", "predict").items()}


def wiring_params(role: str, prompt: Params) -> Params:
    """A wiring node in the best prompt's format: a weak LM may answer in that format only."""
    return {f"{role}.module": "predict", f"{role}.format": prompt.get("answer.format", "chat")}
