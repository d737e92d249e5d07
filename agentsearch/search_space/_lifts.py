"""Lifts: module-level candidates built around the best prompt-level configurations.

A staged search (as MASS does for multi-agent systems: prompts first, topology next) spends its
first trials on single Predict programs, where a weak LM is cheap to search, then opens the module
level. Sampling multi-node programs from scratch at that point wastes most trials on members whose
prompts were never tuned. A lift instead keeps the best prompts found so far and changes only the
module around them: the best prompt reasoning first (chain of thought), sampled and voted
(self-consistency), with its demos retrieved per input, the top prompts as ensemble members or
debate agents, and so on. Each lift is a full set of trial parameters, so it is enqueued into the
same Optuna study and the sampler learns from it as from any trial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from agentsearch.search_space._space import SearchSpace
from agentsearch.search_space._spec import CandidateSpec
from agentsearch.search_space.kinds import NodeKind, kind_names, node_kind
from agentsearch.search_space.topologies import topology, topology_names
from agentsearch.search_space.topologies._base import Params, node_params

PROMPT_LEVEL: Params = {"topology": "single", "answer.module": "predict"}
"""The module choices that make a trial a prompt-level one: a single Predict node."""


def prompt_level(space: SearchSpace) -> Params:
    """The module choices that make a trial of ``space`` a prompt-level one: a single Predict node, or
    every predictor of your program as written."""
    if space.program is not None:
        return {f"{node['name']}.module": "predict" for node in space.program["nodes"]}
    return PROMPT_LEVEL


def stages_prompt_first(space: SearchSpace) -> bool:
    """Whether the space has both a prompt level to search first and module choices to lift into."""
    if "prompt" not in space.levels:
        return False
    if space.program is not None:  # your program: some predictor may run as another kind
        return any(len(space.kinds_for(node["signature"])) > 1 for node in space.program["nodes"])
    has_modules = len(space.topologies) > 1 or len(space.kinds) > 1
    return has_modules and "single" in space.topologies and "predict" in space.kinds


class _ParamsTrial:
    """Answers ``suggest`` from fixed params, refusing a missing or out-of-range one (Optuna's FixedTrial only warns)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.asked: Params = {}

    def _value(self, name: str, allowed: Callable[[Any], bool]) -> Any:
        if name not in self.params or not allowed(self.params[name]):
            raise ValueError(name)
        self.asked[name] = self.params[name]
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._value(name, lambda value: value in choices)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._value(name, lambda value: isinstance(value, int) and low <= value <= high)


def suggest_fixed(space: SearchSpace, params: Params) -> tuple[CandidateSpec, Params] | None:
    """The candidate ``params`` select in ``space`` and the params it asked for, or None if they do not fit."""
    trial = _ParamsTrial(params)
    try:
        return space.suggest(trial), trial.asked
    except ValueError:
        return None


def bootstrap_params(space: SearchSpace, seed_params: Params, count: int) -> list[Params]:
    """The seed's own choices with each of its predictors given one demo set in full, for the first
    ``count`` demo sets: the programs DSPy's BootstrapFewShotWithRandomSearch scores (your
    instructions and format, demo sets of bootstrapped traces and labelled examples). The first set
    leads with the passing traces, so the first is BootstrapFewShot's program. Empty when the space
    searches no demos for the seed.

    A search enqueues them right after the seed. Its sampler starts from random points, and with
    a few trials those mostly pair proposed instructions (a small proposer's are often worse than
    the user's) or other formats with partial demo sets, leaving the demo sets themselves, which
    decide most of a small model's score, hardly compared.
    """
    counts = [name for name in seed_params if name.endswith(".n_demos")]
    trials: list[Params] = []
    for index, demo_set in enumerate(space.demo_sets[:max(0, count)]):
        size = min(space.max_demos, len(demo_set))
        if not counts or size == 0:
            break
        params = {**seed_params, **{name: size for name in counts},
                  **{name.removesuffix(".n_demos") + ".demo_set": index for name in counts}}
        fitted = suggest_fixed(space, params)
        if fitted is not None:
            trials.append(fitted[1])
    return trials


@dataclass(frozen=True)
class Lift:
    params: Params
    """Exactly the trial params the lifted candidate asks for."""
    sources: tuple[int, ...]
    """Positions, in the ranking it was built from, of the prompt-level params it reuses."""


def _lift_rules(space: SearchSpace) -> list[tuple[str, int, Callable[[Sequence[Params]], Params]]]:
    """(the kind or topology a lift needs, how many of the best prompts it takes, how it is built), in trial order.

    Each topology and each node kind declares its own lift (``lift``, ``lift_rank``)."""
    ranked: list[tuple[float, str, int, Callable[[Sequence[Params]], Params]]] = []
    for name in topology_names():
        wiring = topology(name)
        if wiring.lift_rank is not None:
            ranked.append((wiring.lift_rank, name, wiring.lift_prompts(space), partial(wiring.lift, space)))

    def lift_into(kind: NodeKind) -> Callable[[Sequence[Params]], Params]:
        return lambda ps: {"topology": "single", **node_params(ps[0], "answer", kind.name, **kind.lift(space, ps[0]))}

    for name in kind_names():
        kind = node_kind(name)
        if kind.lift_rank is not None:
            ranked.append((kind.lift_rank, name, 1, lift_into(kind)))
    return [(needs, count, build) for _, needs, count, build in sorted(ranked, key=lambda rule: rule[0])]


def module_lifts(space: SearchSpace, ranked: Sequence[Params]) -> list[Lift]:
    """Module-level candidates around ``ranked`` prompt-level trial params (best first).

    Only lifts the space allows are returned, each once; each is checked by the space's own
    ``suggest``, so an enqueued lift is always a candidate the space could have sampled. Lifts
    that need two prompts (an ensemble, a debate) are left out when there is only one.
    """
    if space.program is not None:
        return _program_lifts(space, ranked)
    lifts, seen = [], set()
    for needs, count, build in _lift_rules(space):
        prompts = ranked[:count]
        if needs not in {*space.topologies, *space.kinds} or not prompts:
            continue
        fitted = suggest_fixed(space, build(prompts))
        if fitted is not None and fitted[0].hash not in seen:
            seen.add(fitted[0].hash)
            lifts.append(Lift(fitted[1], tuple(range(len(prompts)))))
    return lifts


def _program_lifts(space: SearchSpace, ranked: Sequence[Params]) -> list[Lift]:
    """Your program's lifts: the best prompt configuration with one predictor at a time run as another
    kind, cheapest kind first (chain of thought before the sampling kinds, which multiply a
    predictor's calls by their samples), then every predictor that fits it at once."""
    if not ranked:
        return []
    best = ranked[0]
    nodes = space.program["nodes"] if space.program is not None else []
    lifts, seen = [], set()
    liftable = [node_kind(name) for name in space.kinds if node_kind(name).lift_rank is not None]
    for kind in sorted(liftable, key=lambda k: float(k.lift_rank or 0)):
        options = kind.lift(space, {})
        fitting = [node["name"] for node in nodes if kind.name in space.kinds_for(node["signature"])]
        groups = [[name] for name in fitting] + ([fitting] if len(fitting) > 1 else [])
        for group in groups:
            params = {**best, **{key: value for name in group
                                 for key, value in {f"{name}.module": kind.name,
                                                    **{f"{name}.{k}": v for k, v in options.items()}}.items()}}
            fitted = suggest_fixed(space, params)
            if fitted is not None and fitted[0].hash not in seen:
                seen.add(fitted[0].hash)
                lifts.append(Lift(fitted[1], (0,)))
    return lifts
