"""The node-kind contract and the registry every kind is resolved from by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from agentsearch._registry import Registry

if TYPE_CHECKING:
    import dspy

    from agentsearch.search_space._space import ModuleSpaceConfig, SearchSpace, Trial
    from agentsearch.search_space._spec import PredictorSpec

Demos = Mapping[str, Mapping[str, Any]]
Params = dict[str, Any]

KINDS: Registry[NodeKind] = Registry("module kind")


class NodeKind:
    """One kind of node. Subclass it with a unique ``name`` and it is registered.

    Instances are stateless and shared by every thread and program of a process; a kind's module
    may import DSPy only inside ``build`` (reading specs from the store must stay light).
    ``order`` fixes the kind's place in the space's choices (which samplers' seeds depend on), and
    ``lift_rank`` its place among a staged search's lifts (None: no lift).
    """

    name: ClassVar[str]
    order: ClassVar[int]
    options: ClassVar[tuple[str, ...]] = ()
    """PredictorSpec fields the kind owns: on any other kind they must keep their defaults."""
    fixed_demos: ClassVar[bool] = True
    """``demo_ids`` are fixed task-example demos of its predictors (searched as demo sets)."""
    default: ClassVar[bool] = True
    """Among ``search.modules.kinds`` when the task file does not list them."""
    lift_rank: ClassVar[float | None] = None
    wraps_predictors: ClassVar[bool] = False
    """Can run in place of one predictor of your own program (``program.module``): built from that
    predictor's signature, instructions and demos, it answers the same fields, so your ``forward``
    does not change."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        KINDS.add(cls())

    def check(self, spec: PredictorSpec) -> None:
        """Raise ValueError when a node of this kind is inconsistent (beyond its options' types)."""

    def check_config(self, config: ModuleSpaceConfig) -> None:
        """Raise ValueError when ``search.modules`` cannot build this kind (a tool-less react)."""

    def build(self, spec: PredictorSpec, signature: dspy.Signature, demos: Demos, base_dir: Path | None) -> dspy.Module:
        raise NotImplementedError

    def fits(self, signature: str) -> bool:
        """Whether a node over ``signature`` (``"a, b -> c"``) can be of this kind (one that adds a
        reasoning field cannot wrap a signature that has one)."""
        return True

    def available(self, space: SearchSpace) -> bool:
        """Whether the run's space can offer the kind (retrieval needs a train pool)."""
        return True

    def suggest(self, space: SearchSpace, trial: Trial, node: str) -> Params:
        """The kind's own options of node ``node``, asked of the trial (define-by-run)."""
        return {}

    def configurations(self, space: SearchSpace) -> int:
        """How many distinct option settings ``suggest`` can return."""
        return 1

    def lift(self, space: SearchSpace, prompt: Params) -> Params:
        """The kind's option params (names relative to the node) of a lift of prompt-level params ``prompt``."""
        return {}


node_kind = KINDS.get
kind_names = KINDS.names


def demo_kinds() -> tuple[str, ...]:
    return tuple(name for name in kind_names() if node_kind(name).fixed_demos)
