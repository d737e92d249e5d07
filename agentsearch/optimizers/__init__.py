"""Optimizers: propose candidates, learn from scores (ask/tell)."""

from __future__ import annotations

from agentsearch.optimizers._base import BaseOptimizer, Outcome, Proposal, RunView
from agentsearch.optimizers._demo_sets import make_demo_sets
from agentsearch.optimizers._evolve import EvolveOptimizer, Failure, ScoredCandidate
from agentsearch.optimizers._factory import make_optimizer, optimizer_names, register
from agentsearch.optimizers._meta_agent import (
    ArchiveEntry,
    DesignTask,
    MetaAgentOptimizer,
    parse_design,
    seed_designs,
)
from agentsearch.optimizers._optuna import (
    OptunaOptimizer,
    make_pruner,
    make_sampler,
    optuna_storage,
    prompt_trials,
)
from agentsearch.optimizers._proposer import (
    build_space,
    propose_instructions,
    summarize_data,
)

__all__ = [
    "ArchiveEntry",
    "BaseOptimizer",
    "DesignTask",
    "EvolveOptimizer",
    "Failure",
    "MetaAgentOptimizer",
    "OptunaOptimizer",
    "Outcome",
    "Proposal",
    "RunView",
    "ScoredCandidate",
    "build_space",
    "make_demo_sets",
    "make_optimizer",
    "make_pruner",
    "make_sampler",
    "optimizer_names",
    "optuna_storage",
    "parse_design",
    "prompt_trials",
    "propose_instructions",
    "register",
    "seed_designs",
    "summarize_data",
]
