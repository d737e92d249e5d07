"""Module recombination and evolution by the proposer LM (AgentSquare): drafts checked against the space
(repaired or rejected, and told to the proposer), screened by a similarity-weighted predictor, and a
search through the run loop that stores its lineage and books every proposer call."""

from __future__ import annotations

from typing import Any

import dspy
import pytest

import agentsearch
from agentsearch.optimizers import (
    RecombineOptimizer,
    ScoredCandidate,
    predict_score,
    spec_settings,
)
from agentsearch.optimizers._recombine import Rejected, _ScriptedTrial, parse_draft
from agentsearch.search_space import CandidateSpec, PredictorSpec, parse_spec
from agentsearch.store import get_storage
from tests.test_space import enumerate_space, small_space


class Scripted(dspy.BaseLM):
    """A proposer that answers from a script, in order, and keeps the prompts."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(model="scripted")
        self.replies, self.prompts = list(replies), []

    def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
        self.prompts.append(messages[0]["content"])
        return [self.replies.pop(0) if self.replies else ""]


def single(instructions: str, fmt: str = "chat", demos: tuple[str, ...] = (), module: str = "predict") -> CandidateSpec:
    return CandidateSpec(predictors=(PredictorSpec(name="answer", signature="sentence -> label", module=module,
                                                   instructions=instructions, format=fmt, demo_ids=demos),))


SEED = ScoredCandidate(10, single("Classify."), {0: 0.0, 1: 1.0}, number=0)
FEW_SHOT = ScoredCandidate(11, single("Say positive or negative.", "completion", ("a", "b")), {0: 1.0, 1: 1.0},
                           number=1)


def optimizer(replies: list[str], archive: list[ScoredCandidate], **kwargs: Any) -> RecombineOptimizer:
    spent: list[Any] = []
    made = RecombineOptimizer(
        small_space(topologies=["single", "ensemble", "debate"]), Scripted(replies), population=lambda: archive,
        known=lambda: {entry.spec.hash: entry.number for entry in archive}, asked=lambda: 0,
        failures=lambda cid, rng: [], spend=spent.append, seed=0, minibatch=2, **kwargs)
    made.spent = spent  # type: ignore[attr-defined]
    return made


def test_a_specs_settings_rebuild_its_shape_through_the_space():
    """``spec_settings`` is the inverse of the space's ``suggest`` for every shape (prompts aside)."""
    space = small_space(topologies=["single", "pipeline", "ensemble", "debate", "reflect"])
    specs = enumerate_space(space)
    assert len(specs) > 1000
    for spec in specs:
        trial = _ScriptedTrial({key: str(value) for key, value in spec_settings(spec).items()}, lambda name: None)
        rebuilt = space.suggest(trial)
        assert trial.notes == []
        assert (rebuilt.topology, rebuilt.rounds, rebuilt.aggregator) == (spec.topology, spec.rounds, spec.aggregator)
        shape = [(n.name, n.module, n.format, n.samples, n.retrieve_k, len(n.demo_ids)) for n in spec.predictors]
        assert [(n.name, n.module, n.format, n.samples, n.retrieve_k, len(n.demo_ids))
                for n in rebuilt.predictors] == shape


def test_a_draft_is_repaired_against_the_space_and_fills_the_rest_from_parent_and_donor():
    made = optimizer([], [SEED, FEW_SHOT])
    draft = parse_draft("topology: ensemble\nensemble.members: 3\nmember_1.module: self_consistancy\n"
                        "member_1.samples: 9\nmember_2.from: #1\nmember_3.from: 7\nfoo.bar: 2\npredicted score: 0.9",
                        SEED, operator="recombine")
    assert draft.predicted == 0.9 and draft.donors == {"member_2": 1, "member_3": 7}
    realized = made.realize(draft, [SEED, FEW_SHOT], known={SEED.spec.hash: 0, FEW_SHOT.spec.hash: 1})
    spec = realized.spec
    assert spec.topology == "ensemble" and spec.aggregator == "vote"
    first, second = spec.predictors  # max_members is 2 in this space: clamped
    # member_1: the kind repaired by spelling, samples clamped to max_samples, its prompt the parent's node's
    assert (first.module, first.samples, first.format, first.instructions, first.demo_ids) == \
        ("self_consistency", 3, "chat", "Classify.", ())
    # member_2: everything from the donor #1 (kind, format, instructions, demos)
    assert (second.module, second.format, second.instructions, second.demo_ids) == \
        ("predict", "completion", "Say positive or negative.", ("a", "b"))
    assert realized.parents == (10, 11)
    assert realized.notes == (
        "member_3.from: #7 is not a scored candidate; ignored",
        "ensemble.members: 3 is outside 2 to 2",
        "member_1.module: 'self_consistancy' is not one of predict, self_consistency, retrieve_demos; "
        "took self_consistency",
        "member_1.samples: 9 is outside 2 to 3",
        "foo.bar: not a setting of this program; ignored",
    )


def test_drafts_that_say_nothing_or_repeat_a_candidate_are_rejected():
    made = optimizer([], [SEED, FEW_SHOT])
    known = {SEED.spec.hash: 0, FEW_SHOT.spec.hash: 1}
    with pytest.raises(Rejected, match="no setting"):
        made.realize(parse_draft("It should be better.", SEED, operator="recombine"), [SEED, FEW_SHOT], known)
    with pytest.raises(Rejected, match="candidate #1 again"):  # the seed's shape with #1's prompt is #1
        made.realize(parse_draft("answer.from: 1", SEED, operator="recombine"), [SEED, FEW_SHOT], known)
    # an evolve reply: bare names are the node's; its instructions and demo count are taken
    draft = parse_draft("module: predict\ninstructions: Answer positive or negative.\nn_demos: 1", FEW_SHOT,
                        operator="evolve", node="answer")
    node = made.realize(draft, [SEED, FEW_SHOT], known).spec.predictors[0]
    assert (node.instructions, node.demo_ids, node.format) == ("Answer positive or negative.", ("a",), "completion")


def test_the_predictor_is_the_similarity_weighted_score_of_the_nearest_candidates():
    query = single("Classify.", "completion")
    # features: topology, rounds, aggregator + the node's kind, format, demo count, samples, instructions (8 each)
    # query vs SEED: 7 shared of 9 (format differs); vs FEW_SHOT: 6 shared of 10 (demos and instructions differ)
    assert predict_score(query, [SEED, FEW_SHOT]) == pytest.approx((7 / 9 * 0.5 + 6 / 10 * 1.0) / (7 / 9 + 6 / 10))
    assert predict_score(query, [SEED, FEW_SHOT], neighbours=1) == pytest.approx(0.5)
    assert predict_score(query, []) is None


def test_the_draft_predicted_best_is_evaluated_and_the_rejected_one_is_told_to_the_proposer():
    replies = ["answer.format: completion\nanswer.from: 0",  # recombine: #1's shape, the seed's prompt
               "module: predict\ninstructions: Brand new words here.",  # evolve #1's node
               "I cannot say."]  # recombine: rejected
    made = optimizer(replies, [SEED, FEW_SHOT])
    proposal = made.ask()
    first, second, third = made.last_screen
    assert [draft.operator for draft, _, _ in made.last_screen] == ["recombine", "evolve", "recombine"]
    # by hand: the first is single/predict/completion/no demos/"Classify." (see the predictor test)
    assert first[2] == pytest.approx((7 / 9 * 0.5 + 6 / 10 * 1.0) / (7 / 9 + 6 / 10))
    # the second shares 7 of 9 features with #1 (all but the instructions) and 5 of 11 with the seed
    assert second[2] == pytest.approx((7 / 9 * 1.0 + 5 / 11 * 0.5) / (7 / 9 + 5 / 11))
    assert third[1] == "no setting, 'from' or instructions found in the reply" and third[2] is None
    assert proposal.spec.predictors[0].instructions == "Brand new words here." and proposal.parents == (11,)
    assert len(made.spent) == 3  # every draft's call is booked
    made.proposer.replies = ["x", "y", "z"]
    made.ask()
    assert "Notes on your earlier proposals:\n- recombine draft rejected: no setting" in made.proposer.prompts[3]


def test_when_every_draft_is_rejected_a_recombination_without_the_lm_is_proposed():
    made = optimizer(["", "", ""], [SEED, FEW_SHOT])
    known = {SEED.spec.hash, FEW_SHOT.spec.hash}
    for number in range(6):
        made.asked = lambda n=number: n
        proposal = made.ask()
        assert proposal.spec.hash not in known and set(proposal.parents) <= {10, 11}
        assert made.last_screen[-1][0].operator == "crossover"
        assert parse_spec(proposal.spec.model_dump(mode="json")) == proposal.spec


def test_a_recombine_search_stores_its_lineage_and_books_every_proposer_call(write_task, sqlite_url, fake_lm):
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    path = write_task(**{"search.optimizer": "recombine", "search.levels": ["prompt", "module"],
                         "search.max_candidates": 8, "search.minibatch": 4})
    result = agentsearch.optimize(path, storage=sqlite_url)
    storage = get_storage(sqlite_url)
    candidates = storage.list_candidates(result.run.id)
    children = [c for c in candidates if c.optimizer == "recombine"]
    assert len(children) == 7 and len({c.spec_hash for c in candidates}) == 8
    by_id = {c.id: c for c in candidates}
    # parents were scored on all of dev before they were shown: complete, and created earlier
    assert all(c.parents and all(by_id[p].status == "complete" and by_id[p].number < c.number for p in c.parents)
               for c in children)
    assert {c.level for c in children} == {"prompt", "module"}
    # the first draft of the fake proposer: the few-shot completion prompt, which wins on the fake LM
    first = parse_spec(children[0].spec)
    assert (first.predictors[0].format, len(first.predictors[0].demo_ids)) == ("completion", 3)
    assert result.best.dev_score == 1.0 > result.seed.dev_score
    prompts = fake_lm.prompts
    assert any(p.startswith("You design programs built from modules") for p in prompts)
    assert any(p.startswith("You are improving one module") for p in prompts)
    assert any("Notes on your earlier proposals" in p for p in prompts)
    assert fake_lm.calls == storage.run_usage(result.run.id).lm_calls  # proposer calls included


def test_answers_that_do_not_parse_move_an_evolved_node_to_another_format_and_ties_go_to_the_cheaper():
    from agentsearch.optimizers import Failure

    unparsed = [Failure({"sentence": "x"}, "(none)", {"label": "positive"}, "AdapterParseError", unparsed=True)]
    replies = ["topology: ensemble\nmember_1.module: predict\nmember_2.module: predict",  # 2 calls per example
               "module: predict\ninstructions: Answer with one word."]  # evolve the seed's node
    made = optimizer(replies, [SEED], drafts=2)
    made.failures = lambda cid, rng: unparsed
    proposal = made.ask()
    (_, ensemble, p1), (_, evolved, p2) = made.last_screen
    assert p1 == p2  # one scored candidate: the predictor says the same for both
    node = proposal.spec.predictors[0]
    assert proposal.spec.topology == "single" and (node.format, node.demo_ids) == ("completion", ("a", "b"))
    assert node.instructions == "Answer with one word."
    assert any("did not parse; tried completion" in hint for hint in made.hints)
