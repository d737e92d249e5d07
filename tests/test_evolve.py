"""Reflective evolution: parents from the per-example Pareto front, reflection on stored failures,
minibatch acceptance against the parent's stored scores, merges of complementary parents."""

from __future__ import annotations

import agentsearch
from agentsearch.optimizers import EvolveOptimizer, ScoredCandidate
from agentsearch.optimizers._base import Proposal
from agentsearch.optimizers._evolve import pareto_front
from agentsearch.search_space import CandidateSpec, PredictorSpec, parse_spec
from agentsearch.store import get_storage
from tests.test_space import small_space


def scored(cid: int, scores: list[float], instructions: str = "Classify.", fmt: str = "chat",
           demos: tuple[str, ...] = ()) -> ScoredCandidate:
    spec = CandidateSpec(predictors=(PredictorSpec(name="answer", signature="sentence -> label",
                                                   instructions=instructions, format=fmt, demo_ids=demos),))
    return ScoredCandidate(cid, spec, dict(enumerate(scores)))


def test_the_front_keeps_every_candidate_that_leads_on_some_example():
    population = [scored(1, [1, 1, 0, 0]), scored(2, [0, 1, 1, 0]), scored(3, [0, 0, 0, 0]), scored(4, [1, 0, 0, 0])]
    # 3 never leads (example 3 is tied at 0 by all: everyone shares it)
    assert pareto_front(population) == {1: 3, 2: 3, 3: 1, 4: 2}
    assert pareto_front([scored(1, [1, 1]), scored(2, [0, 1])]) == {1: 2, 2: 1}


def _optimizer(population, asked=0, **kwargs) -> EvolveOptimizer:
    return EvolveOptimizer(small_space(), proposer=None, population=lambda: population,
                           failures=lambda cid, rng: [], asked=lambda: asked, spend=lambda usage: None, seed=0,
                           minibatch=2, **kwargs)


def test_merging_takes_one_parents_instructions_and_the_others_demos_and_format():
    a = scored(1, [1, 1, 0], instructions="Say positive or negative.", fmt="chat")
    b = scored(2, [0, 0, 1], instructions="Classify.", fmt="completion", demos=("a", "b"))
    proposal = _optimizer([a, b], asked=4, merge_every=5).ask()  # the 5th proposal is a merge
    assert proposal.parents == (1, 2)
    child = proposal.spec.predictors[0]
    assert (child.instructions, child.format, child.demo_ids) == ("Say positive or negative.", "completion", ("a", "b"))


def test_a_child_goes_on_only_if_it_beats_its_parent_on_the_minibatch():
    parent = scored(1, [1, 0, 1, 0])
    optimizer = _optimizer([parent])
    child = Proposal(scored(9, [], instructions="new").spec, (1,))
    optimizer.report(child, {1: 1.0, 3: 0.0})  # parent: 0 + 0 on these examples
    assert not optimizer.should_prune(child)
    optimizer.report(child, {0: 1.0, 1: 0.0})  # parent: 1 + 0: a tie is not an improvement
    assert optimizer.should_prune(child)
    optimizer.report(child, {0: 0.0, 1: 0.0, 2: 0.0})  # past the first minibatch: no longer judged
    assert not optimizer.should_prune(child)


def test_mutations_change_one_prompt_choice_of_a_front_parent():
    parent = scored(1, [1, 0], instructions="Classify.", fmt="chat")
    specs = [_optimizer([parent], asked=n).ask().spec.predictors[0] for n in range(8) if n % 5 != 4]
    for child in specs:
        changed = [child.format != "chat", child.demo_ids != (), child.instructions != "Classify."]
        # one choice changes; a switch to the few-shot completion format brings demos with it
        assert sum(changed) <= 1 or (child.format == "completion" and child.demo_ids and sum(changed) == 2)
    assert any(c.format == "completion" for c in specs) and any(c.demo_ids for c in specs)


def test_evolve_search_reflects_on_stored_failures_and_keeps_only_improving_children(
        write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.optimizer": "evolve", "search.max_candidates": 14, "search.minibatch": 4})
    result = agentsearch.optimize(path, storage=sqlite_url)
    storage = get_storage(sqlite_url)
    candidates = storage.list_candidates(result.run.id)
    children = [c for c in candidates if c.optimizer == "evolve"]
    assert len(children) == 13
    dev = {e.candidate_id: e for e in storage.list_evaluations(run_id=result.run.id) if e.split == "dev"}
    rejected = [c for c in children if c.status == "pruned"]
    accepted = [c for c in children if c.status == "complete"]
    assert rejected and accepted
    assert all("minibatch acceptance" in dev[c.id].note and dev[c.id].n == 4 for c in rejected)
    # every parent was fully scored on dev before it was chosen (it is on the front of complete candidates)
    complete = {c.id for c in candidates if c.status == "complete"}
    assert all(set(c.parents) <= complete for c in children)
    # reflection saw failures read from the store: the parent's predictions and the expected answers
    reflections = [p for p in fake_lm.prompts if p.startswith("You are improving the instruction")
                   and "Model's answer:" in p]
    assert reflections and all("Expected: label:" in p for p in reflections)
    assert result.best.dev_score > result.seed.dev_score
    # nothing ran outside stored evaluations: the LM calls the fake saw are the stored ones plus the proposer's
    usage = storage.run_usage(result.run.id)
    assert fake_lm.calls == usage.lm_calls


def test_evolve_mutates_the_instructions_inside_module_level_candidates():
    space = small_space()
    ensemble = CandidateSpec(topology="ensemble", predictors=tuple(
        PredictorSpec(name=f"member_{i}", signature="sentence -> label", instructions="Classify.") for i in (1, 2)))
    parent = ScoredCandidate(1, ensemble, {0: 1.0, 1: 0.0})
    optimizer = EvolveOptimizer(space, proposer=None, population=lambda: [parent], failures=lambda cid, rng: [],
                                asked=lambda: 0, spend=lambda usage: None, seed=0, minibatch=2)
    for number in range(4):
        optimizer.asked = lambda n=number: n
        child = optimizer.ask().spec
        assert child.topology == "ensemble" and len(child.predictors) == 2
        assert sum(a != b for a, b in zip(child.predictors, ensemble.predictors)) <= 1
    assert parse_spec(child.model_dump(mode="json")) == child


def test_repeated_asks_at_the_same_point_propose_something_new():
    """A proposal that repeats a known candidate creates none; asking again must not repeat it (nor the merge)."""
    a = scored(1, [1, 1, 0], instructions="Say positive or negative.", fmt="chat")
    b = scored(2, [0, 0, 1], instructions="Classify.", fmt="completion", demos=("a", "b"))
    optimizer = _optimizer([a, b], asked=4, merge_every=5)
    specs = [optimizer.ask().spec.hash for _ in range(12)]
    assert len(set(specs)) >= 4


def test_a_parent_whose_answers_do_not_parse_changes_format_not_instructions():
    from agentsearch.optimizers import Failure

    parent = scored(1, [0, 0, 0], fmt="chat")
    unparsed = [Failure({"sentence": "x"}, "(none)", {"label": "positive"}, "AdapterParseError: ...", unparsed=True)]
    optimizer = EvolveOptimizer(small_space(), proposer=None, population=lambda: [parent],
                                failures=lambda cid, rng: unparsed * 3, asked=lambda: 0, spend=lambda usage: None,
                                seed=0, minibatch=2)
    for number in (0, 1, 2, 3):  # not the merge turn
        optimizer.asked = lambda n=number: n
        child = optimizer.ask().spec.predictors[0]
        assert child.format != "chat" and child.instructions == "Classify."
