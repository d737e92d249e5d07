"""Optimizers: propose candidates, learn from scores (ask/tell)."""

from __future__ import annotations

from agentsearch.optimizers._base import BaseOptimizer, Proposal
from agentsearch.optimizers._optuna import (
    OptunaOptimizer,
    make_pruner,
    make_sampler,
    optuna_storage,
)
from agentsearch.optimizers._proposer import (
    build_space,
    propose_instructions,
    summarize_data,
)

__all__ = [
    "BaseOptimizer",
    "OptunaOptimizer",
    "Proposal",
    "build_space",
    "make_pruner",
    "make_sampler",
    "optuna_storage",
    "propose_instructions",
    "summarize_data",
]
