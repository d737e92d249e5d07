"""Staged search: the prompt level first, then module-level lifts of the best prompts, then the whole space."""

from __future__ import annotations

import agentsearch
from agentsearch.search_space import CandidateSpec, module_lifts
from agentsearch.store import get_storage
from tests.test_space import enumerate_space, small_space

BEST = {"topology": "single", "answer.module": "predict", "answer.instruction": 1, "answer.n_demos": 2,
        "answer.demo_set": 0, "answer.format": "completion"}
SECOND = {"topology": "single", "answer.module": "predict", "answer.instruction": 0, "answer.n_demos": 0,
          "answer.format": "chat"}


def _lifted_specs(space, ranked) -> list[CandidateSpec]:
    from agentsearch.search_space._lifts import suggest_fixed

    return [suggest_fixed(space, lift.params)[0] for lift in module_lifts(space, ranked)]


def test_lifts_keep_the_best_prompts_and_change_only_the_module():
    space = small_space(kinds=["predict", "chain_of_thought", "self_consistency", "retrieve_demos"])
    specs = _lifted_specs(space, [BEST, SECOND])
    in_space = {spec.hash for spec in enumerate_space(space)}
    assert all(spec.hash in in_space for spec in specs)
    by_shape = {(spec.topology, spec.predictors[0].module): spec for spec in specs}
    assert set(by_shape) == {("ensemble", "predict"), ("single", "chain_of_thought"), ("single", "self_consistency"),
                             ("single", "retrieve_demos"), ("pipeline", "predict"), ("reflect", "predict"),
                             ("debate", "predict")}
    cot = by_shape["single", "chain_of_thought"].predictors[0]
    assert (cot.instructions, cot.demo_ids, cot.format) == ("Say positive or negative.", ("a", "b"), "completion")
    assert by_shape["single", "self_consistency"].predictors[0].samples == space.modules.max_samples
    retrieve = by_shape["single", "retrieve_demos"].predictors[0]
    assert retrieve.retrieve_k == 2 and retrieve.demo_ids == space.retrieval_pool
    members = by_shape["ensemble", "predict"].predictors
    assert [(m.instructions, m.format) for m in members] == [("Say positive or negative.", "completion"),
                                                            ("Classify.", "chat")]
    assert by_shape["ensemble", "predict"].aggregator == "vote"
    # wiring nodes speak the best prompt's format: a weak LM may answer in that one only
    assert {p.format for p in by_shape["reflect", "predict"].predictors} == {"completion"}


def test_lifts_follow_the_declared_space():
    space = small_space(kinds=["predict", "self_consistency"], topologies=["single", "ensemble"])
    shapes = {(s.topology, s.predictors[0].module) for s in _lifted_specs(space, [BEST, SECOND])}
    assert shapes == {("ensemble", "predict"), ("single", "self_consistency")}
    # an ensemble needs two different prompts; with one there is none
    assert [(s.topology, s.predictors[0].module) for s in _lifted_specs(space, [BEST])] == [
        ("single", "self_consistency")]
    assert module_lifts(space, []) == []


def _candidates(url: str, run) -> list:
    return [c for c in get_storage(url).list_candidates(run.id) if c.number > 0]


def test_staged_search_lifts_the_best_prompts_after_the_prompt_stage(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.levels": ["prompt", "module"], "search.max_candidates": 16,
                         "search.modules": {"kinds": ["predict", "chain_of_thought", "self_consistency"],
                                            "topologies": ["single", "ensemble", "reflect"], "max_samples": 2}})
    result = agentsearch.optimize(path, storage=sqlite_url)
    storage = get_storage(sqlite_url)
    candidates = _candidates(sqlite_url, result.run)
    specs = [CandidateSpec.model_validate(c.spec) for c in candidates]
    # trials 0..7 are the prompt stage (the seed's is trial 0): candidates 1..7 are single Predict nodes
    assert [c.level for c in candidates[:7]] == ["prompt"] * 7
    lifts = candidates[7:11]
    assert {(s.topology, s.predictors[0].module) for s in specs[7:11]} == {
        ("ensemble", "predict"), ("single", "chain_of_thought"), ("single", "self_consistency"),
        ("reflect", "predict")}
    # each lift names the prompt-level candidates it reuses, and reuses the best one's prompt
    scores = {e.candidate_id: e.score for e in storage.list_evaluations(run_id=result.run.id)
              if e.split == "dev" and e.status == "complete"}
    prompt_level = [c for c in get_storage(sqlite_url).list_candidates(result.run.id) if c.level == "prompt"]
    best_prompt = max(prompt_level, key=lambda c: (scores.get(c.id, -1), -c.number))
    for lift in lifts:
        assert lift.parents and lift.parents[0] == best_prompt.id
        first = CandidateSpec.model_validate(lift.spec).predictors[0]
        assert first.instructions == CandidateSpec.model_validate(best_prompt.spec).predictors[0].instructions
    ensemble = next(c for c, s in zip(lifts, specs[7:11]) if s.topology == "ensemble")
    assert len(ensemble.parents) == 3  # the top max_members (3 by default) prompts
    assert len(candidates) == 15


def test_prompt_share_zero_searches_both_levels_from_the_start(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.levels": ["prompt", "module"], "search.max_candidates": 8,
                         "search.prompt_share": 0})
    result = agentsearch.optimize(path, storage=sqlite_url)
    assert "module" in {c.level for c in _candidates(sqlite_url, result.run)[:4]}


def test_the_lifts_build_on_the_demo_set_trials_of_a_short_prompt_stage(write_task, sqlite_url, fake_lm):
    """With a prompt stage of three trials (the seed's included), the seed's demo-set trials fill it,
    and the lifts are built once they are scored: the best of them, not the seed alone, is lifted.
    Counting the enqueued demo-set trials as asked once ended the stage before any of them ran."""
    fake_lm.chat_demos_help = True  # demos help this fake: a demo-set trial beats the seed
    path = write_task(**{"search.levels": ["prompt", "module"], "search.max_candidates": 6})
    result = agentsearch.optimize(path, storage=sqlite_url)
    candidates = sorted(_candidates(sqlite_url, result.run), key=lambda c: c.number)
    assert [CandidateSpec.model_validate(c.spec).predictors[0].demo_ids != () for c in candidates[:2]] == [True, True]
    lifts = [c for c in candidates if c.level == "module"]
    assert lifts and all(lift.parents[0] in {candidates[0].id, candidates[1].id} for lift in lifts)
