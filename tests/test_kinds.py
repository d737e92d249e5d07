"""Node kinds come from one registry: a kind declared in one class reaches the spec, the search space
(its options, its configuration count), the staged search's lifts and the built program, with no
other file naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.utils import DummyLM

from agentsearch.search_space import (
    PredictorSpec,
    build_program,
    kind_names,
    module_lifts,
)
from agentsearch.search_space._spec import CandidateSpec
from agentsearch.search_space.kinds import NodeKind, node_kind
from agentsearch.search_space.kinds._base import KINDS
from tests.test_space import enumerate_space, small_space


class _Twice(dspy.Module):
    """Asks twice, answers with the second (a kind any test can count the calls of)."""

    def __init__(self, signature: Any, rounds: int) -> None:
        super().__init__()
        self.predict = dspy.Predict(signature)
        self.rounds = rounds

    def forward(self, **inputs: Any) -> dspy.Prediction:
        prediction = None
        for _ in range(self.rounds):
            prediction = self.predict(**inputs)
        return prediction


@pytest.fixture
def twice():
    class Twice(NodeKind):
        name = "test_twice"
        order = 99
        default = False
        lift_rank = 1.5

        def build(self, spec: Any, signature: Any, demos: Any, base_dir: Path | None) -> Any:
            return _Twice(signature, 2)

        def configurations(self, space: Any) -> int:
            return 1

    yield node_kind("test_twice")
    KINDS.remove("test_twice")


def test_the_registry_holds_every_kind_in_its_fixed_order():
    assert kind_names()[:7] == ("predict", "chain_of_thought", "self_consistency", "best_of_n",
                                "program_of_thought", "react", "retrieve_demos")
    with pytest.raises(ValueError, match="unknown module kind 'nope'"):
        PredictorSpec(signature="a -> b", module="nope")
    with pytest.raises(ValueError, match="samples applies only to module self_consistency or best_of_n"):
        PredictorSpec(signature="a -> b", module="predict", samples=3)
    with pytest.raises(ValueError, match="module kind 'predict' is registered twice"):
        type("Again", (NodeKind,), {"name": "predict", "order": 0})


def test_a_kind_declared_in_one_class_is_searched_lifted_and_built(twice):
    spec = PredictorSpec(name="answer", signature="sentence -> label", module="test_twice")
    assert node_kind(spec.module) is twice
    space = small_space(kinds=["predict", "test_twice"], topologies=["single"])
    predict_only = small_space(kinds=["predict"], topologies=["single"])
    specs = enumerate_space(space)
    assert space.size() == len(specs) == 2 * predict_only.size()  # its configurations are counted
    assert {s.predictors[0].module for s in specs} == {"predict", "test_twice"}
    prompt = {"topology": "single", "answer.module": "predict", "answer.instruction": 1, "answer.format": "chat",
              "answer.n_demos": 0}
    lifts = module_lifts(space, [prompt])
    assert [lift.params["answer.module"] for lift in lifts] == ["test_twice"]
    assert lifts[0].params["answer.instruction"] == 1  # the best prompt's own choices, lifted
    lm = DummyLM([{"label": "positive"}, {"label": "negative"}])
    program = build_program(CandidateSpec(predictors=(spec,)), {}, lm)
    assert program(sentence="fine").label == "negative" and len(lm.history) == 2
