"""Optimizers: propose candidates, learn from scores (ask/tell), built by name (``_factory``)."""

from __future__ import annotations

from agentsearch._lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {
    "agentsearch.optimizers._base": ("BaseOptimizer", "Outcome", "Proposal", "RunView"),
    "agentsearch.optimizers._demo_sets": ("make_demo_sets",),
    "agentsearch.optimizers._evolve": ("EvolveOptimizer", "Failure", "ScoredCandidate"),
    "agentsearch.optimizers._factory": ("OptimizerEntry", "make_optimizer", "optimizer_entry", "optimizer_names",
                                        "register"),
    "agentsearch.optimizers._meta_agent": ("ArchiveEntry", "DesignTask", "MetaAgentOptimizer", "parse_design",
                                           "seed_designs"),
    "agentsearch.optimizers._mcts": ("MCTSOptimizer", "TreeNode", "backed_up", "converged",
                                     "selection_probabilities"),
    "agentsearch.optimizers._optuna": ("OptunaOptimizer", "make_pruner", "make_sampler", "optuna_storage",
                                       "prompt_trials"),
    "agentsearch.optimizers._recombine": ("Draft", "RecombineOptimizer", "predict_score", "spec_settings"),
    "agentsearch.optimizers._proposer": ("build_space", "propose_instructions", "summarize_data"),
})
