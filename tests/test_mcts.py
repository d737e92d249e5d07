"""The tree search over agent designs (AFlow): backup, selection, expansion with the node's experience,
the convergence stop, and a search through the run loop that grows one tree in the store."""

from __future__ import annotations

import math
import random

import pytest

import agentsearch
from agentsearch.optimizers import (
    MCTSOptimizer,
    TreeNode,
    backed_up,
    converged,
    selection_probabilities,
)
from agentsearch.search_space import DesignSpec
from agentsearch.store import get_storage
from tests.test_agent_level import SIGNATURE, design_task


def design(name: str, rationale: str = "") -> DesignSpec:
    return DesignSpec(signature=SIGNATURE, name=name, rationale=rationale, code=f"# {name}\n")


def test_backup_averages_each_subtree_and_counts_a_failed_design_as_zero():
    nodes = [TreeNode(1, 1, None, design("root"), 0.5), TreeNode(2, 2, 1, design("a"), 0.7),
             TreeNode(3, 3, 2, design("c"), None, error="SyntaxError"), TreeNode(4, 4, 1, design("b"), 0.4),
             TreeNode(5, 5, 4, design("d"), None)]  # d: not scored yet, left out
    assert backed_up(nodes) == {1: (pytest.approx((0.5 + 0.7 + 0 + 0.4) / 4), 4), 2: (pytest.approx(0.35), 2),
                                4: (pytest.approx(0.4), 1)}


def test_selection_mixes_a_uniform_share_with_a_softmax_of_scores_in_percent():
    # lambda 0.3, alpha 0.2: softmax of 0.2 * (60, 50) = weights 1 and e^-2
    soft = 1 / (1 + math.exp(-2))
    assert selection_probabilities([0.6, 0.5]) == pytest.approx([0.15 + 0.7 * soft, 0.15 + 0.7 * (1 - soft)])
    assert selection_probabilities([0.5, 0.5, 0.5]) == pytest.approx([1 / 3] * 3)


def test_the_search_converges_when_the_top_k_mean_has_not_risen_for_patience_designs():
    flat = [0.5, 0.6, 0.4, 0.4, 0.4, 0.4, 0.4]
    # top-3 means: 0.5, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5: five steps without a rise after the second
    assert converged(flat, top_k=3, patience=5)
    assert not converged(flat[:6], top_k=3, patience=5)
    assert not converged([*flat[:6], 0.9], top_k=3, patience=5)  # 0.9 lifts the mean: the count restarts
    assert not converged([0.1, 0.1, 0.1], top_k=3, patience=1)  # fewer than top_k + 1 designs: too early


class Proposer:
    kwargs: dict = {}

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, messages, **options):
        self.prompts.append(messages[0]["content"])
        return ["NAME: voted\nRATIONALE: vote over three samples.\n```python\ndef forward(inputs, lm):\n"
                "    return {'label': 'positive'}\n```"]


def test_expansion_selects_among_the_top_k_and_the_root_and_shows_the_nodes_experience():
    task = design_task()
    optimizer = MCTSOptimizer(task, Proposer(), tree=lambda: [], known=lambda: set(), spend=lambda usage: None,
                              seed_candidate_id=99, seed=0, top_k=2)
    first = optimizer.ask()  # the tree starts from the few-shot design
    assert first.spec.name == "Few-shot answer" and first.parents == (99,) and first.origin == "archive"
    root = TreeNode(1, 1, None, optimizer.root, 0.3, calls=1.0)
    nodes = [root,
             TreeNode(2, 2, 1, design("cot", "think step by step first."), 0.6, calls=2.0),
             TreeNode(3, 3, 1, design("short", "a shorter prompt."), 0.2),
             TreeNode(4, 4, 2, design("vote", "vote over samples."), 0.8),
             TreeNode(5, 5, 2, design("broken", "call a tool."), None, error="ImportError: os"),
             TreeNode(6, 6, 4, design("more votes", "five samples."), 0.7)]
    optimizer.tree, optimizer.known = (lambda: nodes), (lambda: {n.spec.hash for n in nodes})
    # values: 4: (0.8 + 0.7) / 2 = 0.75; 6: 0.7; 2: (0.6 + 0.8 + 0 + 0.7) / 4 = 0.525; root: 2.6 / 6; 3: 0.2
    chosen = optimizer.select(nodes, random.Random(0))
    pool = [(cid, value) for cid, value, _ in optimizer.last_selection]
    assert pool == [(4, pytest.approx(0.75)), (6, pytest.approx(0.7)), (1, pytest.approx(2.6 / 6))]
    assert [p for _, _, p in optimizer.last_selection] == pytest.approx(selection_probabilities([0.75, 0.7, 2.6 / 6]))
    assert chosen.candidate_id in (1, 4, 6)
    # expanding node 2: its origin, its sibling and its children with their score changes or errors
    optimizer.select = lambda nodes, rng: nodes[1]
    proposal = optimizer.ask()
    prompt = optimizer.proposer.prompts[-1]
    assert proposal.parents == (2,) and proposal.spec.name == "voted"
    assert "How it was made from its parent: think step by step first. -> 0.60 (+0.30 from its parent)" in prompt
    assert "Other modifications of its parent:\n- a shorter prompt. -> 0.20 (-0.10 from its parent)" in prompt
    assert "- vote over samples. -> 0.80 (+0.20 from its parent)" in prompt
    assert "- call a tool. -> failed: ImportError: os" in prompt
    assert "# cot" in prompt and "dev score 0.60, 2.0 LM calls per input" in prompt


@pytest.fixture
def mcts_task(write_task):
    def write(**agent):
        return write_task(**{"search.levels": ["agent"], "search.max_candidates": 12,
                             "search.agent": {"optimizer": "mcts", **agent}})
    return write


def test_a_tree_search_grows_one_tree_in_the_store_and_stops_on_convergence(mcts_task, sqlite_url, fake_lm):
    result = agentsearch.optimize(mcts_task(top_k=1, patience=3), storage=sqlite_url)
    storage = get_storage(sqlite_url)
    designs = [c for c in storage.list_candidates(result.run.id) if c.level == "agent"]
    root, grown = designs[0], designs[1:]
    assert root.optimizer == "archive" and root.spec["name"] == "Few-shot answer"
    assert grown and all(c.optimizer == "mcts" for c in grown)  # no repairs: a failed design stays a leaf
    ids = {c.id for c in designs}
    assert all(len(c.parents) == 1 and c.parents[0] in ids for c in grown)  # one tree, rooted at the few-shot
    failed = [c for c in grown if c.status == "failed"]
    assert failed and all(c.note for c in failed)
    assert all(c.parents[0] not in {f.id for f in failed} for c in grown)  # only scored designs are expanded
    # the fake's designs all score the same: the top-1 mean never rises, so the search stops early
    assert len(designs) < 11 and "converged" in result.run.stop_reason
    prompts = [p for p in fake_lm.prompts if p.startswith("You design agents")]
    assert len(prompts) == len(grown) and all("Make one modification that should raise the score" in p for p in prompts)
    assert fake_lm.calls == storage.run_usage(result.run.id).lm_calls


def test_an_unknown_agent_optimizer_is_refused_by_name(write_task):
    from agentsearch.exceptions import TaskSpecError

    with pytest.raises(TaskSpecError, match="search.agent.optimizer"):
        agentsearch.load_task(write_task(**{"search.levels": ["agent"], "search.agent": {"optimizer": "tpe"}}))


def test_a_root_still_being_scored_is_expanded_and_a_root_that_failed_ends_the_search():
    optimizer = MCTSOptimizer(design_task(), Proposer(), tree=lambda: [], known=lambda: set(),
                              spend=lambda usage: None, seed_candidate_id=99, seed=0)
    pending = [TreeNode(1, 1, None, optimizer.root, None)]  # another worker is scoring it
    optimizer.tree, optimizer.known = (lambda: pending), (lambda: {optimizer.root.hash})
    assert optimizer.ask().parents == (1,) and "(not scored yet)" in optimizer.proposer.prompts[-1]
    assert optimizer.finished() is None
    failed = [TreeNode(1, 1, None, optimizer.root, None, error="NameError: x")]
    optimizer.tree = lambda: failed
    assert optimizer.finished() == "the tree search has nothing to expand: its root design did not run (NameError: x)"
