"""Optimizers: propose candidates, learn from scores (ask/tell)."""

from __future__ import annotations

from agentsearch.optimizers._base import BaseOptimizer, Proposal
from agentsearch.optimizers._optuna import OptunaPromptOptimizer, make_sampler, optuna_storage
from agentsearch.optimizers._prompt_space import PromptSpace
from agentsearch.optimizers._proposer import build_prompt_space, propose_instructions, summarize_data

__all__ = [
    "BaseOptimizer",
    "OptunaPromptOptimizer",
    "PromptSpace",
    "Proposal",
    "build_prompt_space",
    "make_sampler",
    "optuna_storage",
    "propose_instructions",
    "summarize_data",
]
