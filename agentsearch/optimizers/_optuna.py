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

The seed program is trial 0 and, where the space searches demos, the next trials (a third of the
study's) are the seed with each demo set in full (``bootstrap_params``): the programs DSPy's
BootstrapFewShotWithRandomSearch compares, the first of them BootstrapFewShot's. A sampler's random
start would seldom try them when a budget buys only a few trials, and the sampler learns from them
as from its own.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import TrialState

from agentsearch.optimizers._base import BaseOptimizer, Outcome, Proposal, RunView
from agentsearch.search_space import (
    CandidateSpec,
    SearchSpace,
    bootstrap_params,
    module_lifts,
    parse_spec,
    prompt_level,
    seed_trial,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The pruner and multivariate TPE are marked experimental; that is Optuna's note to itself, not the user's.
warnings.filterwarnings("ignore", category=ExperimentalWarning)

PRUNE_P_THRESHOLD = 0.1
LIFTED = "agentsearch:lifted"
"""Study attribute set once the module-level lifts are enqueued: the prompt stage is over."""
LIFTED_FROM = "agentsearch:lifted_from"
"""Trial attribute of a lift: the trial numbers of the prompt-level trials it was built from."""
BOOTSTRAP = "agentsearch:bootstrap"
"""Trial attribute of trials 1..k when the space searches demos: the index of the demo set the seed
is given in full (``search_space.bootstrap_params``), enqueued with the seed's trial."""


def demo_set_trials(task: Any) -> int:
    """How many trials after the seed give it one demo set each: a third of the study's candidates,
    at least one (BootstrapFewShot's program), at most one per demo set (``create`` keeps them
    within a staged search's prompt stage as well)."""
    return min(task.search.num_demo_sets, max(1, task.search.space_candidates // 3))
INSTRUCTION_CHARS = 300
"""Instructions longer than this are cut in a trial's attributes (the candidate's spec has them whole)."""


def trial_attributes(spec: CandidateSpec, candidate_id: int | None, number: int | None, *,
                     duplicate: bool = False, note: str | None = None) -> dict[str, Any]:
    """What a trial stands for, readable where its params are indices into the run's space
    (``answer.instruction: 1``): the candidate it made (or repeats), its level and modules, and per
    node its kind, format, instructions and demo count. Shown by optuna-dashboard as user attributes."""
    from agentsearch.search_space import level_of

    attrs: dict[str, Any] = {
        "level": str(level_of(spec)),
        "structure": spec.structure(),
    }
    if candidate_id is not None:
        prefix = "duplicate_of_" if duplicate else ""
        attrs[f"{prefix}candidate_id"] = candidate_id
        if number is not None:
            attrs[f"{prefix}candidate_number"] = number
    if duplicate:
        attrs["duplicate"] = True  # a repeated proposal: no candidate of its own, its twin's score told
    if note:
        attrs["note"] = note[:INSTRUCTION_CHARS]
    for node in spec.predictors:
        attrs[f"{node.name}.module"] = node.module
        attrs[f"{node.name}.format"] = node.format
        text = node.instructions
        attrs[f"{node.name}.instructions"] = text if len(text) <= INSTRUCTION_CHARS else text[:INSTRUCTION_CHARS] + "…"
        attrs[f"{node.name}.demos"] = len(node.demo_ids)
    return attrs


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
    from sqlalchemy.pool import NullPool

    from agentsearch.store._rdb.storage import (
        CONNECT_PATIENCE_S,
        database_failure,
        patient_connections,
        server_full,
    )

    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    # A study is read and written a few times per candidate: a connection per use, none held between,
    # leaves a PostgreSQL server's connection slots to the workers' own stores.
    deadline = time.monotonic() + CONNECT_PATIENCE_S
    while True:
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})
            break
        except Exception as exc:  # noqa: BLE001 - Optuna wraps the driver's error in its own
            # Besides a full server: workers opening a new database at once race to create Optuna's
            # tables and its version row (an "already exists" error, or a StorageInternalError); the
            # loser finds them made when it tries again.
            racing = "already exists" in str(exc) or isinstance(exc, optuna.exceptions.StorageInternalError)
            if not (server_full(exc) or racing) or time.monotonic() > deadline:
                raise database_failure(exc, "the run's Optuna study") or exc from None
            time.sleep(0.5)
    patient_connections(storage.engine)
    return storage


class OptunaOptimizer(BaseOptimizer):
    """Ask/tell over a SearchSpace. Every proposal derives from the seed candidate (its parent)."""

    prune_reason = "significantly below the best candidate's on the same examples (Wilcoxon signed-rank test)"

    def __init__(self, space: SearchSpace, *, study: optuna.Study, name: str, seed_candidate_id: int,
                 sampler_for: Callable[[int], optuna.samplers.BaseSampler], prompt_trials: int = 0,
                 candidate_of: Callable[[int], int | None] = lambda trial_number: None,
                 number_of: Callable[[int], int | None] = lambda candidate_id: None) -> None:
        """``sampler_for(n)`` makes the sampler that proposes trial ``n``.

        A fresh sampler seeded by the trial number makes each proposal a function of the study's
        history alone, so a run resumed in a new process proposes what the uninterrupted run would.
        The first ``prompt_trials`` trials (0: none) are held to the prompt level. ``candidate_of``
        maps a trial number to its candidate id, so a lift names the candidates it came from;
        ``number_of`` a candidate id to its number, for the trial's attributes.
        """
        self.space = space
        self.study = study
        self.sampler_for = sampler_for
        self.name = name
        self.seed_candidate_id = seed_candidate_id
        self.prompt_trials = prompt_trials
        self.candidate_of = candidate_of
        self.number_of = number_of
        self.multi_objective = len(study.directions) > 1
        self.prunes = not self.multi_objective and not isinstance(study.pruner, optuna.pruners.NopPruner)

    def record_known(self, params: dict[str, Any], distributions: dict[str, Any], values: list[float],
                     example_scores: dict[int, float], user_attrs: dict[str, Any] | None = None) -> None:
        """Teach the sampler a result it did not propose (the seed program's), with its per-example scores."""
        self.study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values,
            intermediate_values={} if self.multi_objective else example_scores, user_attrs=user_attrs,
        ))

    def _prompt_level_ranking(self) -> list[optuna.trial.FrozenTrial]:
        """Finished prompt-level trials, best first, one per distinct configuration."""
        ranked, seen = [], set()
        finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in sorted(finished, key=lambda t: (-t.values[0], t.number)):
            key = tuple(sorted(trial.params.items()))
            if key not in seen and all(trial.params.get(k, v) == v for k, v in prompt_level(self.space).items()):
                seen.add(key)
                ranked.append(trial)
        return ranked

    def _enqueue_lifts(self) -> None:
        ranked = self._prompt_level_ranking()
        for lift in module_lifts(self.space, [trial.params for trial in ranked]):
            self.study.enqueue_trial(lift.params, user_attrs={LIFTED_FROM: [ranked[i].number for i in lift.sources]})
        self.study.set_user_attr(LIFTED, True)

    def ask(self) -> Proposal:
        # a count, not every trial with its params read back (Optuna's ``study.trials``), on each ask
        count = self.study._storage.get_n_trials(self.study._study_id)
        sampler = self.sampler_for(count)
        lifted = bool(self.study.user_attrs.get(LIFTED))
        if self.prompt_trials and not lifted:
            # trials asked so far: enqueued ones (the seed's demo-set trials) are not, until asked
            asked = count - self.study._storage.get_n_trials(self.study._study_id, TrialState.WAITING)
            if asked < self.prompt_trials:
                sampler = optuna.samplers.PartialFixedSampler(prompt_level(self.space), sampler)
            else:
                self._enqueue_lifts()
        self.study.sampler = sampler
        trial = self.study.ask()
        sources = [self.candidate_of(number) for number in trial.user_attrs.get(LIFTED_FROM, [])]
        parents = tuple(dict.fromkeys(c for c in sources if c is not None)) or (self.seed_candidate_id,)
        return Proposal(self.space.suggest(trial), parents, trial.number)

    def _trial(self, proposal: Proposal) -> optuna.Trial:
        if proposal.trial_number is None:
            raise ValueError("a proposal without an Optuna trial has nothing to report to")
        trial_id = self.study._storage.get_trial_id_from_study_id_trial_number(
            self.study._study_id, proposal.trial_number
        )
        return optuna.Trial(self.study, trial_id)

    def report(self, proposal: Proposal, scores: dict[int, float]) -> None:
        if not self.prunes or proposal.trial_number is None:
            return
        trial = self._trial(proposal)
        known = self.study._storage.get_trial(trial._trial_id).intermediate_values
        with contextlib.suppress(UpdateFinishedTrialError):  # told already, by another worker
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

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """A duplicate's trial gets its twin's values (the sampler learns the point again, at no cost)."""
        if proposal.trial_number is None:
            return
        # Another worker may tell the same trial at the same moment (one that took over a candidate
        # from a worker presumed dead): the first answer stands.
        with contextlib.suppress(UpdateFinishedTrialError):
            if isinstance(proposal.spec, CandidateSpec):
                trial_id = self._trial(proposal)._trial_id
                number = None if outcome.candidate_id is None else self.number_of(outcome.candidate_id)
                attrs = trial_attributes(proposal.spec, outcome.candidate_id, number, duplicate=outcome.duplicate,
                                         note=outcome.error)
                for key, value in attrs.items():
                    self.study._storage.set_trial_user_attr(trial_id, key, value)
            if outcome.pruned:
                self.study.tell(proposal.trial_number, state=TrialState.PRUNED, skip_if_finished=True)
            elif outcome.score is None:
                self.study.tell(proposal.trial_number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                cost = outcome.cost if outcome.cost is not None else 0.0
                values = [outcome.score, cost] if self.multi_objective else outcome.score
                self.study.tell(proposal.trial_number, values, skip_if_finished=True)

    @classmethod
    def create(cls, view: RunView, name: str) -> OptunaOptimizer:
        """The run's study (created by the first worker, loaded by the rest), with the seed program as
        trial 0 when the space can express it.

        Each worker's sampler for trial ``n`` is seeded by the task seed and ``n`` (and, past the
        first worker, its ordinal), so a single worker, or a resumed one, proposes what an
        uninterrupted run would, and racing workers do not propose the same point."""
        from agentsearch.lm import cost_measure

        task, space = view.task, view.space
        assert space is not None, "an Optuna study searches the run's space"
        search = task.search
        cost_aware = "cost" in search.objectives
        study = optuna.create_study(
            storage=optuna_storage(view.storage_url), study_name=f"agentsearch:{view.run_name}",
            directions=["maximize", "minimize"] if cost_aware else ["maximize"],
            sampler=make_sampler(name, seed=task.seed, max_candidates=search.max_candidates),
            pruner=make_pruner(search.pruner), load_if_exists=True,
        )
        def sampler_for(trials: int) -> optuna.samplers.BaseSampler:
            seed = (task.seed + trials + 1_000_003 * view.worker) % 2**32
            return make_sampler(name, seed=seed, max_candidates=search.max_candidates)

        def candidate_of(trial_number: int) -> int | None:
            found = next((c.id for c in view.candidates() if c.trial_number == trial_number), None)
            # Trial 0 with no candidate of its own is the seed's, which record_known added.
            return view.seed_candidate_id if found is None and trial_number == 0 else found

        def number_of(candidate_id: int) -> int | None:
            return next((c.number for c in view.candidates() if c.id == candidate_id), None)

        seed_dev = view.dev_evaluation(view.seed_candidate_id)
        seed_calls = None if seed_dev is None else view.program_calls(view.seed_candidate_id) * seed_dev.n
        optimizer = cls(space, study=study, name=name, seed_candidate_id=view.seed_candidate_id,
                        sampler_for=sampler_for, prompt_trials=prompt_trials(task, space, seed_calls),
                        candidate_of=candidate_of, number_of=number_of)
        seed = next(c for c in view.candidates() if c.id == view.seed_candidate_id)
        spec = parse_spec(seed.spec)
        known = seed_trial(space, spec) if isinstance(spec, CandidateSpec) else None
        scores = view.dev_scores(view.seed_candidate_id)
        score = view.dev_score(view.seed_candidate_id)
        if known is not None and scores is not None and score is not None and not study.get_trials(deepcopy=False):
            if view.once("optuna:seed-trial"):
                assert isinstance(spec, CandidateSpec)  # only a CandidateSpec has a seed trial
                cost = _cost(view, view.seed_candidate_id, cost_measure(task.lm.model))
                params, distributions = known
                optimizer.record_known(params, distributions, values=[score, cost] if cost_aware else [score],
                                       example_scores=scores, user_attrs=trial_attributes(spec, seed.id, seed.number))
                view.mark_trial(seed.id, 0)  # trial 0 is the seed's, in the store as in the study
                # trials 1..k: the seed with each of the first k demo sets (a third of the study's trials)
                # in a staged search they stay within the prompt stage, so the lifts build on them
                count = demo_set_trials(task) if not optimizer.prompt_trials else min(
                    demo_set_trials(task), optimizer.prompt_trials - 1)
                for index, trial_params in enumerate(bootstrap_params(space, params, count)):
                    study.enqueue_trial(trial_params, user_attrs={BOOTSTRAP: index})
            else:  # another worker is adding it: trial 0 must be the seed's for every worker
                view.wait_for(lambda: bool(study.get_trials(deepcopy=False)), "the seed's Optuna trial")
        return optimizer


def _cost(view: RunView, candidate_id: int, measure: str) -> float:
    from agentsearch._report import cost_per_example

    evaluation = view.dev_evaluation(candidate_id)
    return 0.0 if evaluation is None else cost_per_example(evaluation, measure)


def prompt_trials(task: Any, space: SearchSpace, calls_per_candidate: float | None = None) -> int:
    """How many trials (the seed's included) a staged search holds to the prompt level; 0 when not staged.

    ``search.prompt_share`` of the candidates, and, under ``budget.max_lm_calls``, no more than that
    share of the budget buys at ``calls_per_candidate`` (the seed's dev pass: a prompt-level
    candidate costs about as much), so the module-level lifts are still compared before the budget
    ends rather than crowded out by it. Both figures are fixed when the run starts, so a resumed run
    stages as the uninterrupted one."""
    from agentsearch.search_space import stages_prompt_first

    if not stages_prompt_first(space):
        return 0
    trials = round(task.search.space_candidates * task.search.prompt_share)
    budget = task.budget.max_lm_calls
    if budget and calls_per_candidate:
        trials = min(trials, 1 + max(1, math.floor(budget * task.search.prompt_share / calls_per_candidate)))
    return trials
