"""Module kinds and topologies: each compiles, runs on the fake LM, and survives a save/load round trip."""

from __future__ import annotations

import os

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from pydantic import ValidationError

from agentsearch import load_program, save_program
from agentsearch.evaluators import run_python
from agentsearch.lm import build_lm
from agentsearch.search_space import (
    CandidateSpec,
    PredictorSpec,
    SpecProgram,
    node_signature,
)
from agentsearch.task import LMConfig
from tests import toolbox
from tests.conftest import sentiment_rows

TASK = "sentence -> label"
DEMOS = {f"train:{i}": row for i, row in enumerate(sentiment_rows(500))}
SENTENCES = ["a wonderful film 1", "a dull film 2", "pure joy to watch 3", "awful acting 4"]


@pytest.fixture
def lm(fake_lm):
    return build_lm(LMConfig(model="fake/keyword", num_retries=0))


def node(name: str = "answer", role: str = "answer", **options) -> PredictorSpec:
    return PredictorSpec(name=name, signature=node_signature(TASK, role), instructions="Classify.", **options)


KIND_SPECS = {
    "predict": node(),
    "chain_of_thought": node(module="chain_of_thought"),
    "self_consistency": node(module="self_consistency", samples=3),
    "best_of_n_lm": node(module="best_of_n", samples=3, judge="lm"),
    "best_of_n_reward": node(module="best_of_n", samples=2, judge="tests.toolbox:prefers_negative"),
    "program_of_thought": node(module="program_of_thought"),
    "react": node(module="react", tools=("tests.toolbox:word_count",), max_iters=2),
    "retrieve_demos": node(module="retrieve_demos", format="completion", demo_ids=tuple(DEMOS), retrieve_k=3),
}

TOPOLOGY_SPECS = {
    "single": CandidateSpec(predictors=(node(),)),
    "pipeline": CandidateSpec(topology="pipeline", predictors=(
        node("analyze", "analyze"), node("respond", "respond", module="chain_of_thought"))),
    "ensemble_vote": CandidateSpec(topology="ensemble", predictors=(
        node("member_1", "member"), node("member_2", "member", module="chain_of_thought"),
        node("member_3", "member", format="completion", demo_ids=("train:0", "train:1")))),
    "ensemble_lm": CandidateSpec(topology="ensemble", aggregator="lm", predictors=(
        node("member_1", "member"), node("member_2", "member"), node("aggregate", "aggregate"))),
    "debate": CandidateSpec(topology="debate", rounds=2, predictors=(
        node("agent_1", "agent"), node("agent_2", "agent", module="chain_of_thought"), node("judge", "judge"))),
    "reflect": CandidateSpec(topology="reflect", rounds=2, predictors=(
        node(), node("critique", "critique"), node("revise", "revise"))),
}


def _predictions(program) -> list[dict]:
    return [dict(program(sentence=sentence).items()) for sentence in SENTENCES]


@pytest.mark.parametrize("spec", [CandidateSpec(predictors=(s,)) for s in KIND_SPECS.values()]
                         + list(TOPOLOGY_SPECS.values()), ids=[*KIND_SPECS, *TOPOLOGY_SPECS])
def test_compiles_runs_and_round_trips_with_identical_predictions(spec, lm, tmp_path):
    program = SpecProgram(spec, DEMOS, lm)
    predictions = _predictions(program)
    assert all(p["label"] in ("positive", "negative") for p in predictions)
    path = save_program(program, tmp_path / "program.json")
    loaded = load_program(path, lm=lm)
    assert loaded.spec == spec
    assert _predictions(loaded) == predictions


def test_self_consistency_samples_distinct_calls_and_votes(fake_lm, lm):
    program = SpecProgram(CandidateSpec(predictors=(KIND_SPECS["self_consistency"],)), {}, lm)
    program(sentence="fine 1")
    assert fake_lm.calls == 3  # three samples, each its own cache entry (rollout_id)
    assert fake_lm.last_params.get("temperature") == pytest.approx(0.7)


def test_majority_vote_picks_the_most_common_answer():
    from agentsearch.search_space._nodes import majority

    votes = [dspy.Prediction(label=label) for label in ("negative", "Positive", "positive ")]
    assert majority(votes, ["label"]).label == "Positive"


def test_best_of_n_returns_the_sample_the_reward_prefers():
    answers = [{"reasoning": "r", "label": "positive"}, {"reasoning": "r", "label": "negative"},
               {"reasoning": "r", "label": "positive"}]
    spec = CandidateSpec(predictors=(node(module="best_of_n", samples=3, judge="tests.toolbox:prefers_negative"),))
    assert SpecProgram(spec, {}, DummyLM(answers))(sentence="x").label == "negative"


def test_program_of_thought_runs_its_code_in_another_process(lm):
    program = SpecProgram(CandidateSpec(predictors=(KIND_SPECS["program_of_thought"],)), {}, lm)
    prediction = program(sentence="a wonderful film")
    assert prediction.code_output == "positive sandboxed"  # the code compares its pid with the test's
    assert "/proc/self/stat" in prediction.python_code


def test_react_calls_the_declared_tool(lm):
    toolbox.CALLS.clear()
    program = SpecProgram(CandidateSpec(predictors=(KIND_SPECS["react"],)), {}, lm)
    prediction = program(sentence="three word sentence")
    assert toolbox.CALLS == ["three word sentence"]
    assert prediction.trajectory["observation_0"] == 3


def test_retrieval_puts_the_nearest_examples_in_the_prompt(fake_lm, lm):
    program = SpecProgram(CandidateSpec(predictors=(KIND_SPECS["retrieve_demos"],)), DEMOS, lm)
    nearest = program.nodes[0].module.nearest({"sentence": "brilliant acting"})
    assert "brilliant acting" in nearest[-1]["sentence"]
    assert program(sentence="a stale story").label == "negative"  # the fake needs demos to be right
    assert "Sentence: stale story" in fake_lm.prompts[-1]


def test_debate_runs_every_agent_every_round_then_the_judge(fake_lm, lm):
    SpecProgram(TOPOLOGY_SPECS["debate"], {}, lm)(sentence="fine 9")
    assert fake_lm.calls == 2 * 2 + 1
    assert "Round 2:" in fake_lm.prompts[-1]


def test_reflect_stops_when_a_revision_changes_nothing(fake_lm, lm):
    SpecProgram(TOPOLOGY_SPECS["reflect"], {}, lm)(sentence="fine 10")
    assert fake_lm.calls == 3  # answer, critique, revise (unchanged): the second round is not run


def test_ensemble_survives_a_failing_member(lm):
    spec = CandidateSpec(topology="ensemble", predictors=(
        node("member_1", "member", format="json"), node("member_2", "member")))
    assert SpecProgram(spec, {}, lm)(sentence="fine 11").label == "positive"  # the fake cannot write JSON


@pytest.mark.parametrize(("changes", "message"), [
    ({"topology": "single", "predictors": (node(), node())}, "one node"),
    ({"topology": "debate", "predictors": (node(), node())}, "two agents and a judge"),
    ({"topology": "pipeline", "rounds": 2, "predictors": (node(), node())}, "rounds applies"),
])
def test_wiring_is_validated(changes, message):
    with pytest.raises(ValidationError, match=message):
        CandidateSpec(**changes)


def test_options_of_another_kind_are_refused():
    with pytest.raises(ValidationError, match="samples applies only"):
        node(samples=3)
    with pytest.raises(ValidationError, match="needs a judge"):
        node(module="best_of_n", samples=3)


def test_sandbox_confines_the_code():
    assert run_python("print(sum(range(10)))").summary() == "45"
    network = run_python("import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)").summary()
    assert "import of 'socket' is not allowed in the sandbox" in network
    # reached around the import guard, the kernel refuses the socket itself
    raw = run_python("import random\nct = random._os.sys.modules['ctypes']\nprint(ct.CDLL(None).socket(2, 1, 0))")
    assert raw.summary() == "-1"
    assert run_python("while True: pass", timeout_s=1).returncode is None
    assert run_python("open('/tmp/agentsearch-sandbox-escape', 'w').write('x')").ok  # a private /tmp
    assert not os.path.exists("/tmp/agentsearch-sandbox-escape")
    assert "FileNotFoundError" in run_python(f"open({os.path.abspath(__file__)!r}, 'a').write('x')").summary()
    bomb = run_python("import random\nfor _ in range(200):\n    random._os.fork()\n", timeout_s=5)
    assert bomb.summary() == "error: PermissionError: os.fork is not allowed in the sandbox"
    assert run_python("import random; print(random._os.getuid(), random._os.getpid())").summary() == "65534 1"
