"""Search driven by an Optuna study (TPE or random sampler), kept in the run's own database.

One study covers both levels: ``SearchSpace.suggest`` asks the trial define-by-run, so prompt and
module choices are sampled jointly. With ``objectives: [score, cost]`` the study has two directions
and its sampler looks for the score/cost Pareto front. Single-objective studies also prune: dev
scores are reported per example (the step is the example's position in dev) and Optuna's
``WilcoxonPruner`` stops a candidate once it is significantly worse than the best on the same
examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from agentsearch.optimizers._base import BaseOptimizer, Proposal
from agentsearch.search_space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

PRUNE_P_THRESHOLD = 0.1


def make_sampler(name: str, *, seed: int, max_candidates: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(10, max(3, max_candidates // 3))
    # group=True: TPE models each conditional branch of the space (each topology, each kind) on its own.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=PRUNE_P_THRESHOLD, n_startup_steps=5)
    return optuna.pruners.NopPruner()


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


class OptunaOptimizer(BaseOptimizer):
    """Ask/tell over a SearchSpace. Every proposal derives from the seed candidate (its parent)."""

    def __init__(self, space: SearchSpace, *, study: optuna.Study, name: str, seed_candidate_id: int,
                 sampler_for: Callable[[int], optuna.samplers.BaseSampler]) -> None:
        """``sampler_for(n)`` makes the sampler that proposes trial ``n``.

        A fresh sampler seeded by the trial number makes each proposal a function of the study's
        history alone, so a run resumed in a new process proposes what the uninterrupted run would.
        """
        self.space = space
        self.study = study
        self.sampler_for = sampler_for
        self.name = name
        self.seed_candidate_id = seed_candidate_id
        self.multi_objective = len(study.directions) > 1
        self.prunes = not self.multi_objective and not isinstance(study.pruner, optuna.pruners.NopPruner)

    def record_known(self, params: dict[str, Any], distributions: dict[str, Any], values: list[float],
                     example_scores: dict[int, float]) -> None:
        """Teach the sampler a result it did not propose (the seed program's), with its per-example scores."""
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values,
            intermediate_values={} if self.multi_objective else example_scores,
        ))

    def ask(self) -> Proposal:
        self.study.sampler = self.sampler_for(len(self.study.trials))
        trial = self.study.ask()
        return Proposal(self.space.suggest(trial), (self.seed_candidate_id,), trial.number)

    def _trial(self, proposal: Proposal) -> optuna.Trial:
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(
            self.study._study_id, proposal.trial_number
        )
        return optuna.Trial(self.study, trial_id)

    def report(self, proposal: Proposal, scores: dict[int, float]) -> None:
        if not self.prunes or proposal.trial_number is None:
            return
        trial = self._trial(proposal)
        known = self.study._storage.get_trial(trial._trial_id).intermediate_values
        for step, score in scores.items():
            if step not in known:
                trial.report(score, step)

    def should_prune(self, proposal: Proposal) -> bool:
        if not self.prunes or proposal.trial_number is None:
            return False
        try:
            if self.study.best_trial.number == proposal.trial_number:
                return False
        except ValueError:  # no finished trial to compare with
            return False
        return self._trial(proposal).should_prune()

    def tell(self, proposal: Proposal, score: float | None, *, cost: float | None = None, pruned: bool = False) -> None:
        if proposal.trial_number is None:
            return
        if pruned:
            self.study.tell(proposal.trial_number, state=TrialState.PRUNED, skip_if_finished=True)
        elif score is None:
            self.study.tell(proposal.trial_number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            values = [score, cost if cost is not None else 0.0] if self.multi_objective else score
            self.study.tell(proposal.trial_number, values, skip_if_finished=True)
