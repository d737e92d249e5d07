"""Topologies come from one registry: a topology declared in one class in this file reaches the spec
(its wiring check and its options), the search space (choices and size), the staged search's lifts,
the built program, and evolve's choice of which nodes to mutate, with no other file naming it."""

from __future__ import annotations

from typing import Any

import pytest
from dspy.utils import DummyLM

from agentsearch.optimizers import EvolveOptimizer, ScoredCandidate
from agentsearch.search_space import (
    CandidateSpec,
    PredictorSpec,
    build_program,
    module_lifts,
    node_signature,
    topology,
    topology_names,
)
from agentsearch.search_space._nodes import render_answer
from agentsearch.search_space.topologies import Role, Topology
from agentsearch.search_space.topologies._base import (
    _ROLES,
    forget,
    node_params,
    wiring_params,
)
from tests.test_space import enumerate_space, small_space


@pytest.fixture
def relay():
    class Relay(Topology):
        """A draft, then a checker that reads it and gives the answer."""

        name = "test_relay"
        order = 99
        default = False
        lift_rank = 0.5
        roles = {"draft": Role(), "checker": Role(reads=("draft_answer",), instructions="Check the draft; answer.")}

        def check(self, spec: Any) -> None:
            if len(spec.predictors) != 2:
                raise ValueError("a relay has a draft and a checker")

        def run(self, program: Any, inputs: dict[str, Any]) -> Any:
            draft, checker = program.nodes
            return checker(**inputs, draft_answer=render_answer(draft(**inputs), program.outputs))

        def suggest(self, space: Any, trial: Any) -> Any:
            return CandidateSpec(topology=self.name, predictors=(space.task_node(trial, "draft"),
                                                                 space.wiring_node(trial, "checker")))

        def size(self, space: Any, node: int, wiring: int) -> int:
            return node * wiring

        def lift(self, space: Any, prompts: Any) -> dict[str, Any]:
            return {"topology": self.name, **node_params(prompts[0], "draft", "predict"),
                    **wiring_params("checker", prompts[0])}

    yield topology("test_relay")
    forget("test_relay")
    assert "draft" not in _ROLES and "answer" in _ROLES  # its own roles go with it, shared ones stay


def _relay_spec(**options: Any) -> CandidateSpec:
    return CandidateSpec(topology="test_relay", **options, predictors=(
        PredictorSpec(name="draft", signature=node_signature("sentence -> label", "draft")),
        PredictorSpec(name="checker", signature=node_signature("sentence -> label", "checker"))))


def test_the_registry_holds_every_topology_in_its_fixed_order():
    assert topology_names()[:5] == ("single", "pipeline", "ensemble", "debate", "reflect")
    with pytest.raises(ValueError, match="unknown topology 'ring'"):
        CandidateSpec(topology="ring", predictors=(PredictorSpec(signature="a -> b"),))
    with pytest.raises(ValueError, match="registered twice"):
        type("Again", (Topology,), {"name": "single", "order": 0})
    with pytest.raises(ValueError, match="declares role 'answer' unlike"):
        type("Clash", (Topology,), {"name": "test_clash", "order": 98, "roles": {"answer": Role(writes="x")}})
    assert "test_clash" not in topology_names()


def test_a_topology_declared_in_one_class_is_checked_searched_lifted_built_and_evolved(relay):
    assert topology("test_relay") is relay
    assert node_signature("sentence -> label", "checker") == "sentence, draft_answer -> label"
    with pytest.raises(ValueError, match="a draft and a checker"):
        CandidateSpec(topology="test_relay", predictors=(PredictorSpec(name="draft", signature="sentence -> label"),))
    with pytest.raises(ValueError, match="rounds applies only to topology debate or reflect, not test_relay"):
        _relay_spec(rounds=2)

    space = small_space(topologies=["single", "test_relay"])
    single = small_space(topologies=["single"])
    specs = enumerate_space(space)
    relays = [s for s in specs if s.topology == "test_relay"]
    wiring = len(space.aux_kinds) * len(space.formats)
    assert len(relays) == single.size() * wiring and space.size() == len(specs) == single.size() * (1 + wiring)
    assert {s.predictors[1].instructions for s in relays} == {"Check the draft; answer."}  # the role's fixed words

    prompt = {"topology": "single", "answer.module": "predict", "answer.instruction": 1, "answer.format": "completion",
              "answer.n_demos": 0}
    lifts = module_lifts(space, [prompt])
    # ranked 0.5: after the ensemble's (0, which needs two prompts), before every kind's
    assert [lift.params["topology"] for lift in lifts] == ["test_relay", "single", "single"]
    assert lifts[0].params["draft.instruction"] == 1 and lifts[0].params["checker.format"] == "completion"

    lm = DummyLM([{"label": "positive"}, {"label": "negative"}])
    program = build_program(_relay_spec(), {}, lm)
    assert program(sentence="fine").label == "negative" and len(lm.history) == 2
    assert "label: positive" in str(lm.history[1]["messages"])  # the checker read the draft

    assert relay.task_nodes(_relay_spec()) == [0]
    parent = ScoredCandidate(1, _relay_spec(), {0: 1.0, 1: 0.0})
    optimizer = EvolveOptimizer(space, proposer=None, population=lambda: [parent], failures=lambda cid, rng: [],
                                asked=lambda: 0, spend=lambda usage: None, seed=0, minibatch=2)
    children = []
    for number in range(4):
        optimizer.asked = lambda n=number: n
        children.append(optimizer.ask().spec)
    assert all(c.topology == "test_relay" and c.predictors[1] == parent.spec.predictors[1] for c in children)
    assert any(c.predictors[0] != parent.spec.predictors[0] for c in children)  # the draft is what evolves
