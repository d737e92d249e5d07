"""Optimizers are built by name from one registry: an optimizer registered in one place is accepted by
the task file and driven by the run loop, which tells it every outcome, duplicates included."""

from __future__ import annotations

import pytest

import agentsearch
from agentsearch.exceptions import TaskSpecError
from agentsearch.optimizers import BaseOptimizer, Outcome, Proposal, RunView, register
from agentsearch.optimizers._factory import _ENTRIES
from agentsearch.store import get_storage


class _Formats(BaseOptimizer):
    """The seed in each format, then the first again (a duplicate) for ever."""

    told: list[tuple[Proposal, Outcome]] = []

    def __init__(self, view: RunView) -> None:
        assert view.space is not None
        self.view = view
        self.seed = next(c for c in view.candidates() if c.number == 0)
        self.asked = 0

    def ask(self) -> Proposal:
        from agentsearch.search_space import parse_spec

        spec = parse_spec(self.seed.spec)
        formats = [f for f in self.view.space.formats if f != "chat"]
        node = spec.predictors[0].model_copy(update={"format": formats[min(self.asked, len(formats) - 1)]})
        self.asked += 1
        return Proposal(spec.model_copy(update={"predictors": (node,)}), (self.seed.id,))

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        _Formats.told.append((proposal, outcome))


@pytest.fixture
def formats_optimizer():
    register("test_formats", levels=("prompt", "module"))(_Formats)
    _Formats.told = []
    yield
    del _ENTRIES["test_formats"]


def test_a_registered_optimizer_is_driven_by_the_loop(formats_optimizer, write_task, sqlite_url, fake_lm):
    path = write_task(**{"search.optimizer": "test_formats", "search.max_candidates": 4,
                         "search.formats": ["chat", "completion", "json"]})
    result = agentsearch.optimize(path, storage=sqlite_url)
    candidates = get_storage(sqlite_url).list_candidates(result.run.id)
    assert [c.optimizer for c in candidates] == ["seed", "test_formats", "test_formats"]
    assert result.run.stop_reason.startswith("search space exhausted (50 proposals")
    scored = [outcome for _, outcome in _Formats.told if not outcome.duplicate]
    duplicates = [outcome for _, outcome in _Formats.told if outcome.duplicate]
    assert len(scored) == 2 and all(o.score is not None for o in scored)
    assert len(duplicates) == 50 and {o.candidate_id for o in duplicates} == {candidates[2].id}


def test_a_task_naming_an_unknown_or_agent_level_optimizer_is_refused(write_task):
    for name in ("annealing", "meta_agent"):
        with pytest.raises(TaskSpecError, match="search.optimizer"):
            agentsearch.load_task(write_task(**{"search.optimizer": name}))
