"""The joint prompt/module space: conditional, sized correctly, and searched in one study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import agentsearch
from agentsearch.search_space import (
    CandidateSpec,
    ModuleSpaceConfig,
    PredictorSpec,
    SearchSpace,
    seed_trial,
)
from agentsearch.store import get_storage


class _PathTrial:
    """Follows a path of choice indices and records each question's number of choices (for enumeration)."""

    def __init__(self, path: list[list[int]]) -> None:
        self.path, self.position = path, 0
        self.names: list[str] = []

    def _pick(self, name: str, choices: list) -> object:
        if self.position == len(self.path):
            self.path.append([0, len(choices)])
        index = self.path[self.position][0]
        self.position += 1
        self.names.append(name)
        return choices[index]

    def suggest_categorical(self, name, choices):
        return self._pick(name, list(choices))

    def suggest_int(self, name, low, high):
        return self._pick(name, list(range(low, high + 1)))


def enumerate_space(space: SearchSpace) -> list[CandidateSpec]:
    specs, path = [], []
    while True:
        trial = _PathTrial(path)
        specs.append(space.suggest(trial))
        path = trial.path[: trial.position]
        while path and path[-1][0] + 1 >= path[-1][1]:
            path.pop()
        if not path:
            return specs
        path[-1][0] += 1


def small_space(**modules) -> SearchSpace:
    return SearchSpace(
        signature="sentence -> label", instructions=("Classify.", "Say positive or negative."),
        demo_sets=(("a", "b"),), retrieval_pool=("a", "b"), demos={"a": {}, "b": {}},
        formats=("chat", "completion"), max_demos=2, levels=("prompt", "module"),
        modules=ModuleSpaceConfig(**{"kinds": ["predict", "self_consistency", "retrieve_demos"], "max_samples": 3,
                                     "max_members": 2, "max_rounds": 2, **modules}),
    )


@pytest.mark.parametrize("topologies", [["single"], ["pipeline"], ["ensemble"], ["debate"], ["reflect"],
                                        ["single", "pipeline", "ensemble", "debate", "reflect"]])
def test_size_counts_every_distinct_program_the_space_can_return(topologies):
    space = small_space(topologies=topologies)
    specs = enumerate_space(space)
    assert len(specs) == space.size()
    assert len({spec.hash for spec in specs}) == len(specs)


def test_size_counts_the_options_of_every_kind():
    space = small_space(topologies=["single", "pipeline"], max_iters=2, reward="tests.toolbox:prefers_negative",
                        tools=["tests.toolbox:word_count"],
                        kinds=["predict", "chain_of_thought", "best_of_n", "react", "program_of_thought"])
    specs = enumerate_space(space)
    assert {kind for spec in specs for kind in spec.modules()} == set(space.kinds)
    assert len(specs) == space.size()
    assert len({spec.hash for spec in specs}) == len(specs)


def test_the_space_is_conditional():
    space = small_space()
    single = optuna.trial.FixedTrial({"topology": "single", "answer.module": "predict", "answer.format": "chat",
                                      "answer.instruction": 1, "answer.n_demos": 0})
    spec = space.suggest(single)
    assert spec.topology == "single" and spec.predictors[0].instructions == "Say positive or negative."
    # a debate asks for agents and rounds, and for each agent's own choices; a single node never does
    trial = _PathTrial([[3, 5]])
    debate = space.suggest(trial)
    assert debate.topology == "debate"
    assert {"debate.agents", "debate.rounds", "agent_2.module", "judge.format"} <= set(trial.names)
    assert not any(name.startswith(("debate", "agent")) for name in _names(space, "single"))
    # options belong to their kind: samples only when the kind samples
    sampled = _PathTrial([[0, 5], [1, 3]])
    assert space.suggest(sampled).predictors[0].module == "self_consistency" and "answer.samples" in sampled.names
    assert "answer.samples" not in _names(space, "single")


def _names(space: SearchSpace, topology: str) -> list[str]:
    index = space.topologies.index(topology)
    trial = _PathTrial([[index, len(space.topologies)]])
    space.suggest(trial)
    return trial.names


def test_prompt_only_space_keeps_the_seed_structure():
    space = SearchSpace(
        signature="sentence -> label", instructions=("Classify.",), demo_sets=(), retrieval_pool=(), demos={},
        formats=("chat",), max_demos=0, levels=("prompt",), modules=ModuleSpaceConfig(),
    )
    assert space.topologies == ("single",) and space.kinds == ("predict",) and space.size() == 1
    seed = CandidateSpec(predictors=(PredictorSpec(name="answer", signature="sentence -> label",
                                                   instructions="Classify."),))
    assert seed_trial(space, seed) == ({}, {})


def test_module_search_stores_several_kinds_and_topologies(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.levels": ["prompt", "module"], "search.max_candidates": 24,
                         "search.modules": {"max_samples": 3, "max_rounds": 2}})
    result = agentsearch.optimize(path, storage=sqlite_url)
    candidates = get_storage(sqlite_url).list_candidates(result.run.id)
    specs = [CandidateSpec.model_validate(c.spec) for c in candidates]
    assert len({s.topology for s in specs}) >= 3
    assert len(set().union(*(s.modules() for s in specs))) >= 4
    assert {c.level for c in candidates} == {"prompt", "module"}
    assert result.best.dev_score >= result.seed.dev_score
    assert result.best_program(sentence="a wonderful film").label in ("positive", "negative")


SHARED_BBH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbh" / "web_of_lies.jsonl"


@pytest.mark.skipif(not SHARED_BBH.is_file(), reason="needs ../shared/data beside the project root")
def test_bbh_web_of_lies_module_search_completes_on_the_fake_lm(tmp_path, sqlite_url, fake_lm):
    task = agentsearch.Task.model_validate({
        "name": "web-of-lies", "base_dir": tmp_path,
        "program": {"signature": "input -> target", "instructions": "Answer Yes or No."},
        "data": {"file": str(SHARED_BBH), "split": {"train": 30, "dev": 20, "test": 20}},
        "lm": {"model": "fake/keyword", "num_retries": 0},
        "search": {"levels": ["prompt", "module"], "max_candidates": 16, "num_instructions": 2, "max_demos": 3,
                   "bootstrap_examples": 4, "modules": {"max_samples": 3}},
    })
    result = agentsearch.optimize(task, storage=sqlite_url)
    assert result.run.status == "finished"
    specs = [CandidateSpec.model_validate(c.spec) for c in get_storage(sqlite_url).list_candidates(result.run.id)]
    assert len(specs) == 16
    assert len({s.topology for s in specs}) >= 3
    assert len(set().union(*(s.modules() for s in specs))) >= 4
    assert result.best.test is not None and result.best.test.n == 20


def _first_trials(url: str, run) -> tuple[SearchSpace, list[CandidateSpec]]:
    storage = get_storage(url)
    space = SearchSpace.from_dict(storage.get_run(run.id).space)
    candidates = sorted(storage.list_candidates(run.id), key=lambda c: c.number)
    return space, [CandidateSpec.model_validate(c.spec) for c in candidates]


@pytest.mark.parametrize("optimizer", ["tpe", "random"])
def test_the_first_candidates_after_the_seed_are_the_seed_with_each_demo_set(
        write_task, sqlite_url, fake_lm, optimizer):
    """The programs DSPy's BootstrapFewShotWithRandomSearch compares (the seed's instructions and
    format, one demo set each, in full; the first set led by the bootstrapped traces) are scored
    first, a third of the candidates: with few trials a sampler's random start would mostly pair
    proposed instructions and other formats with partial demo sets."""
    path = write_task(**{"search.optimizer": optimizer, "search.max_candidates": 7, "search.num_instructions": 4,
                         "search.formats": ["chat", "completion"]})
    result = agentsearch.optimize(path, storage=sqlite_url)
    space, specs = _first_trials(sqlite_url, result.run)
    seed = specs[0].predictors[0]
    assert len(space.demo_sets) == 3 and len(space.instructions) == 4
    for index in range(2):  # 7 // 3 of them
        node = specs[1 + index].predictors[0]
        assert (node.instructions, node.format, node.module) == (seed.instructions, seed.format, seed.module)
        assert node.demo_ids == space.demo_sets[index][:4] and len(node.demo_ids) == 4
    study = optuna.load_study(study_name=f"agentsearch:{result.run.name}", storage=sqlite_url)
    assert [t.user_attrs.get("agentsearch:bootstrap") for t in study.trials[:4]] == [None, 0, 1, None]


def test_no_bootstrapped_candidate_where_the_space_searches_no_demos(write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.max_candidates": 3, "search.max_demos": 0})
    result = agentsearch.optimize(path, storage=sqlite_url)
    study = optuna.load_study(study_name=f"agentsearch:{result.run.name}", storage=sqlite_url)
    assert all("agentsearch:bootstrap" not in t.user_attrs for t in study.trials)
