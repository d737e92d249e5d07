"""Prompt-level search driven by an Optuna sampler (TPE or random), its study kept in the run's database."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from agentsearch.optimizers._base import BaseOptimizer, Proposal
from agentsearch.optimizers._prompt_space import PromptSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def prompt_distributions(space: PromptSpace) -> dict[str, BaseDistribution]:
    """Per predictor: which instruction, which demo set, how many of its demos, which prompt format."""
    distributions: dict[str, BaseDistribution] = {}
    for base, choices in zip(space.seed.predictors, space.predictors, strict=True):
        distributions[f"{base.name}.format"] = CategoricalDistribution(list(space.formats))
        distributions[f"{base.name}.instruction"] = CategoricalDistribution(list(range(len(choices.instructions))))
        distributions[f"{base.name}.demo_set"] = CategoricalDistribution(list(range(max(1, len(choices.demo_sets)))))
        distributions[f"{base.name}.n_demos"] = IntDistribution(0, space.max_demos)
    return distributions


def make_sampler(name: str, *, seed: int, max_candidates: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(10, max(3, max_candidates // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


class OptunaPromptOptimizer(BaseOptimizer):
    """Ask/tell over a PromptSpace. Every proposal derives from the seed candidate (its parent)."""

    def __init__(self, space: PromptSpace, *, study: optuna.Study, name: str, seed_candidate_id: int) -> None:
        self.space = space
        self.study = study
        self.name = name
        self.seed_candidate_id = seed_candidate_id
        self.distributions = prompt_distributions(space)

    def record_known(self, params: dict[str, Any], score: float) -> None:
        """Teach the sampler a result it did not propose (the seed program's score)."""
        self.study.add_trial(
            optuna.trial.create_trial(params=params, distributions=self.distributions, value=score)
        )

    def ask(self) -> Proposal:
        trial = self.study.ask(self.distributions)
        return Proposal(self.space.spec(trial.params), (self.seed_candidate_id,), trial.number)

    def tell(self, proposal: Proposal, score: float | None) -> None:
        if proposal.trial_number is None:
            return
        if score is None:
            self.study.tell(proposal.trial_number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            self.study.tell(proposal.trial_number, score, skip_if_finished=True)
