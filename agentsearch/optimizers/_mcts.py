"""A tree search over agent designs (AFlow, Zhang et al., 2024), run in the sandbox like every design.

The tree is the store's lineage: its root is one hand-written design (the few-shot one, the
simplest that a small model can follow), and every design the search writes is a child of the node
it was written from (``parents[0]``). Each ``ask``:

1. **Backs up** the scores (from the store, so every worker and a resumed process see the same
   tree): a node's value is the mean dev score over its subtree, itself and every descendant, a
   design that would not run counting 0 (expanding there did not help).
2. **Selects** a node to expand by AFlow's soft mixed probability, over the ``top_k`` nodes by value
   plus the root: ``p_i = lambda / n + (1 - lambda) * softmax(alpha * 100 * v_i)``, ``lambda = 0.3``
   (the uniform share: exploration), ``alpha = 0.2`` (sharpness on scores in percent); AFlow's
   constants. Only nodes with a complete dev score can be chosen.
3. **Expands** it: the proposer LM is shown the node's code and score, and its experience: how the
   node came from its parent (the modification and the score change), its siblings' modifications
   and changes, and what was already tried from it (its children's modifications and changes, or
   their errors), with the known patterns as operators it may use; it writes one modified design
   (``templates/mcts_expand.j2``). A design that will not run is not repaired: it stays in the tree
   as a failed child, its error shown in the next prompts that show that node.
4. After each evaluation, **stops** on convergence (AFlow's rule): with Y_i the mean dev score of
   the top ``top_k`` designs among the first i scored, the search ends once Y has not risen for
   ``patience`` designs in a row (checked from ``top_k + 1`` designs on).

A design whose LM calls sample is run ``search.agent.repeats`` times on each example and scored by
the mean (the evaluator's rounds, as AFlow repeats its evaluations); a deterministic design runs
once, since the task LM at temperature 0 answers a repeat from the cache.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dspy

from agentsearch.lm import Usage
from agentsearch.optimizers._base import BaseOptimizer, Outcome, Proposal
from agentsearch.optimizers._meta_agent import (
    MIN_DESIGN_TOKENS,
    DesignTask,
    parse_design,
    seed_designs,
)
from agentsearch.optimizers._proposer import ask_proposer
from agentsearch.optimizers._templates import render
from agentsearch.search_space import DesignSpec

ROOT = "few-shot answer"
"""The name of the hand-written design the tree grows from (another if the templates lack it)."""
LAMBDA = 0.3
ALPHA = 0.2


@dataclass(frozen=True)
class TreeNode:
    """An agent-level candidate of the tree, read from the store."""

    candidate_id: int
    number: int
    parent: int | None
    """Its parent's candidate id (None for the root)."""
    spec: DesignSpec
    score: float | None
    """Dev score; None while unscored or when the design would not run."""
    error: str | None = None
    calls: float = 0.0


def backed_up(nodes: Sequence[TreeNode]) -> dict[int, tuple[float, int]]:
    """Candidate id -> (mean score over its subtree, nodes counted), for nodes with a score; failed
    designs count 0, unscored ones are left out."""
    children: dict[int, list[TreeNode]] = {}
    for node in nodes:
        if node.parent is not None:
            children.setdefault(node.parent, []).append(node)

    def total(node: TreeNode) -> tuple[float, int]:
        if node.score is None and node.error is None:
            return 0.0, 0
        found, count = (node.score or 0.0), 1
        for child in children.get(node.candidate_id, []):
            more, extra = total(child)
            found, count = found + more, count + extra
        return found, count

    values = {}
    for node in nodes:
        if node.score is not None:
            found, count = total(node)
            values[node.candidate_id] = (found / count, count)
    return values


def selection_probabilities(values: Sequence[float], *, lam: float = LAMBDA, alpha: float = ALPHA) -> list[float]:
    """AFlow's mixed distribution over values in [0, 1]: uniform with weight ``lam``, a softmax of the
    values in percent with weight ``1 - lam``."""
    top = max(values)
    weights = [math.exp(alpha * 100 * (value - top)) for value in values]
    total = sum(weights)
    return [lam / len(values) + (1 - lam) * weight / total for weight in weights]


def converged(scores: Sequence[float], *, top_k: int, patience: int) -> bool:
    """Whether the mean of the top ``top_k`` scores, taken over the first i scores for each i, has not
    risen for the last ``patience`` steps (AFlow's rule with z = 0)."""
    if len(scores) < top_k + 1:
        return False
    still = 0
    previous = None
    for i in range(1, len(scores) + 1):
        current = sum(sorted(scores[:i], reverse=True)[:top_k]) / min(top_k, i)
        if previous is not None:
            still = still + 1 if current <= previous else 0
        previous = current
    return still >= patience


class MCTSOptimizer(BaseOptimizer):
    """Ask/tell over agent designs; see the module docstring. Its state is the store: ``tree()`` reads
    every agent-level candidate with its score or error, ``known()`` every design's hash."""

    name = "mcts"

    def __init__(self, task: DesignTask, proposer: dspy.BaseLM, *, tree: Callable[[], list[TreeNode]],
                 known: Callable[[], set[str]], spend: Callable[[Usage], None], seed_candidate_id: int, seed: int,
                 top_k: int = 3, patience: int = 5) -> None:
        self.task, self.proposer = task, proposer
        self.tree, self.known, self.spend = tree, known, spend
        self.seed_candidate_id, self.seed = seed_candidate_id, seed
        self.top_k, self.patience = top_k, patience
        seeds = seed_designs(task)
        self.patterns = seeds
        self.root = next((s for s in seeds if s.name.lower() == ROOT), seeds[0])
        self._last: int | None = None
        self._repeats = 0
        self.last_selection: list[tuple[int, float, float]] = []
        """The last ask's choice: (candidate id, value, probability) of each node it could expand."""

    def finished(self) -> str | None:
        nodes = self.tree()
        root = next((node for node in nodes if node.spec.hash == self.root.hash), None)
        if root is not None and root.error is not None and all(node.score is None for node in nodes):
            return f"the tree search has nothing to expand: its root design did not run ({root.error[:200]})"
        scores = [node.score for node in sorted(nodes, key=lambda n: n.number)
                  if node.score is not None or node.error is not None]
        if converged([score or 0.0 for score in scores], top_k=self.top_k, patience=self.patience):
            return (f"the tree search converged: the mean of the top {self.top_k} designs did not rise "
                    f"for {self.patience} designs")
        return None

    def ask(self) -> Proposal:
        nodes = self.tree()
        if self.root.hash not in self.known():
            return Proposal(self.root, (self.seed_candidate_id,), origin="archive")
        number = len(nodes)
        self._repeats = self._repeats + 1 if number == self._last else 0
        self._last = number
        rng = random.Random((self.seed * 1_000_003 + number) * 1_009 + self._repeats)
        chosen = self.select(nodes, rng)
        prompt = render("mcts_expand.j2", **self.task.context(), node=self._describe(chosen, nodes),
                        patterns=[{"name": p.name, "rationale": p.rationale} for p in self.patterns])
        reply, usage = ask_proposer(self.proposer, prompt, rollout=number * 1_000 + self._repeats,
                                    min_tokens=MIN_DESIGN_TOKENS)
        self.spend(usage)
        spec = parse_design(reply or "# the proposer LM gave no design\n", self.task.signature,
                            default_name=f"design {number}")
        return Proposal(spec, (chosen.candidate_id,))

    def select(self, nodes: Sequence[TreeNode], rng: random.Random) -> TreeNode:
        """The node to expand: the top ``top_k`` by backed-up value, and the root, drawn by AFlow's mix."""
        values = backed_up(nodes)
        by_id = {node.candidate_id: node for node in nodes}
        ranked = sorted(values, key=lambda cid: (-values[cid][0], by_id[cid].number))
        pool = ranked[:self.top_k]
        root = next((n.candidate_id for n in nodes if n.spec.hash == self.root.hash), None)
        if root is not None and root in values and root not in pool:
            pool.append(root)
        if not pool:  # the root is still being scored (by another worker): expand it meanwhile
            self.last_selection = []
            return next(node for node in nodes if node.spec.hash == self.root.hash)
        probabilities = selection_probabilities([values[cid][0] for cid in pool])
        self.last_selection = [(cid, values[cid][0], p) for cid, p in zip(pool, probabilities)]
        return by_id[rng.choices(pool, weights=probabilities)[0]]

    def _describe(self, node: TreeNode, nodes: Sequence[TreeNode]) -> dict:
        by_id = {n.candidate_id: n for n in nodes}

        def change(child: TreeNode, parent: TreeNode | None) -> dict:
            outcome = (f"failed: {child.error[:200]}" if child.error else
                       "not scored yet" if child.score is None else
                       f"{child.score:.2f}" + (f" ({child.score - parent.score:+.2f} from its parent)"
                                               if parent is not None and parent.score is not None else ""))
            return {"name": child.spec.name, "modification": child.spec.rationale or "(not stated)",
                    "outcome": outcome}

        parent = by_id.get(node.parent) if node.parent is not None else None
        siblings = [n for n in nodes if parent is not None and n.parent == parent.candidate_id
                    and n.candidate_id != node.candidate_id]
        children = [n for n in nodes if n.parent == node.candidate_id]
        return {"name": node.spec.name, "code": node.spec.code, "score": node.score, "calls": node.calls,
                "origin": change(node, parent) if parent is not None else None,
                "siblings": [change(n, parent) for n in siblings],
                "children": [change(n, node) for n in children]}

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Nothing to keep: the tree, its scores and errors are read from the run."""
