"""Search driven by an Optuna study (TPE or random sampler), kept in the run's own database.

One study covers both levels: ``SearchSpace.suggest`` asks the trial define-by-run, so prompt and
module choices are sampled jointly. With ``objectives: [score, cost]`` the study has two directions
and its sampler looks for the score/cost Pareto front. Single-objective studies also prune: dev
scores are reported per example (the step is the example's position in dev) and Optuna's
``WilcoxonPruner`` stops a candidate once it is significantly worse than the best on the same
examples.

With both levels on, the search is staged (``prompt_trials``): the first trials are held to the
prompt level, then module-level *lifts* of the best prompts are enqueued (see
``search_space._lifts``), then the sampler has the whole space.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from agentsearch.optimizers._base import BaseOptimizer, Proposal
from agentsearch.search_space import PROMPT_LEVEL, SearchSpace, module_lifts

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The pruner and multivariate TPE are marked experimental; that is Optuna's note to itself, not the user's.
warnings.filterwarnings("ignore", category=ExperimentalWarning)

PRUNE_P_THRESHOLD = 0.1
LIFTED = "agentsearch:lifted"
"""Study attribute set once the module-level lifts are enqueued: the prompt stage is over."""
LIFTED_FROM = "agentsearch:lifted_from"
"""Trial attribute of a lift: the trial numbers of the prompt-level trials it was built from."""


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

    prune_reason = "significantly below the best candidate's on the same examples (Wilcoxon signed-rank test)"

    def __init__(self, space: SearchSpace, *, study: optuna.Study, name: str, seed_candidate_id: int,
                 sampler_for: Callable[[int], optuna.samplers.BaseSampler], prompt_trials: int = 0,
                 candidate_of: Callable[[int], int | None] = lambda trial_number: None) -> None:
        """``sampler_for(n)`` makes the sampler that proposes trial ``n``.

        A fresh sampler seeded by the trial number makes each proposal a function of the study's
        history alone, so a run resumed in a new process proposes what the uninterrupted run would.
        The first ``prompt_trials`` trials (0: none) are held to the prompt level. ``candidate_of``
        maps a trial number to its candidate id, so a lift names the candidates it came from.
        """
        self.space = space
        self.study = study
        self.sampler_for = sampler_for
        self.name = name
        self.seed_candidate_id = seed_candidate_id
        self.prompt_trials = prompt_trials
        self.candidate_of = candidate_of
        self.multi_objective = len(study.directions) > 1
        self.prunes = not self.multi_objective and not isinstance(study.pruner, optuna.pruners.NopPruner)

    def record_known(self, params: dict[str, Any], distributions: dict[str, Any], values: list[float],
                     example_scores: dict[int, float]) -> None:
        """Teach the sampler a result it did not propose (the seed program's), with its per-example scores."""
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values,
            intermediate_values={} if self.multi_objective else example_scores,
        ))

    def _prompt_level_ranking(self) -> list[optuna.trial.FrozenTrial]:
        """Finished prompt-level trials, best first, one per distinct configuration."""
        ranked, seen = [], set()
        finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in sorted(finished, key=lambda t: (-t.values[0], t.number)):
            key = tuple(sorted(trial.params.items()))
            if key not in seen and all(trial.params.get(k, v) == v for k, v in PROMPT_LEVEL.items()):
                seen.add(key)
                ranked.append(trial)
        return ranked

    def _enqueue_lifts(self) -> None:
        ranked = self._prompt_level_ranking()
        for lift in module_lifts(self.space, [trial.params for trial in ranked]):
            self.study.enqueue_trial(lift.params, user_attrs={LIFTED_FROM: [ranked[i].number for i in lift.sources]})
        self.study.set_user_attr(LIFTED, True)

    def ask(self) -> Proposal:
        count = len(self.study.trials)
        sampler = self.sampler_for(count)
        lifted = bool(self.study.user_attrs.get(LIFTED))
        if self.prompt_trials and not lifted:
            if count < self.prompt_trials:
                sampler = optuna.samplers.PartialFixedSampler(PROMPT_LEVEL, sampler)
            else:
                self._enqueue_lifts()
        self.study.sampler = sampler
        trial = self.study.ask()
        sources = [self.candidate_of(number) for number in trial.user_attrs.get(LIFTED_FROM, [])]
        parents = tuple(dict.fromkeys(c for c in sources if c is not None)) or (self.seed_candidate_id,)
        return Proposal(self.space.suggest(trial), parents, trial.number)

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
