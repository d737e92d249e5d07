"""One search run: seed, bootstrap, propose, ask/evaluate/tell, then a single test evaluation.

Everything a run learns is written to the store as soon as it exists (each example result, each
candidate, the search space, Optuna's trials), so a run killed at any point resumes where it stopped
and never pays twice for a finished evaluation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import optuna

from agentsearch._budget import Budget
from agentsearch._callbacks import SearchCallback
from agentsearch._report import (
    CandidateResult,
    PruningSummary,
    best_candidate,
    cost_per_example,
    pruning_summary,
    score_intervals,
)
from agentsearch._stats import Estimate
from agentsearch.data import LabelledExample, load_split
from agentsearch.evaluators import AgentLimits, Evaluator, ExampleOutcome
from agentsearch.exceptions import AgentSearchError, LMUnavailableError
from agentsearch.lm import (
    Usage,
    UsageMeter,
    _failures,
    build_lm,
    cost_measure,
    redact_secrets,
    redact_tree,
)
from agentsearch.metrics import task_metric
from agentsearch.optimizers import (
    ArchiveEntry,
    BaseOptimizer,
    DesignTask,
    EvolveOptimizer,
    Failure,
    MetaAgentOptimizer,
    OptunaOptimizer,
    Proposal,
    ScoredCandidate,
    build_space,
    make_demo_sets,
    make_pruner,
    make_sampler,
    optuna_storage,
    propose_instructions,
    summarize_data,
)
from agentsearch.search_space import (
    AnySpec,
    CandidateSpec,
    PredictorSpec,
    Program,
    SearchSpace,
    build_program,
    node_signature,
    parse_spec,
    save_program,
    seed_trial,
    stages_prompt_first,
)
from agentsearch.store import (
    BaseStorage,
    CandidateRecord,
    EvaluationRecord,
    ExampleResultRecord,
    RunRecord,
    RunStatus,
    RunUsage,
    get_storage,
)
from agentsearch.store._base import HEARTBEAT_S, resolve_storage_url
from agentsearch.task import SPLITS, Task, as_task

MAX_DUPLICATE_STREAK = 50
MAX_UNSCORED_STREAK = 5
"""Examples in a row an LM outage leaves unscored before the run stops (status failed, resumable)."""
UNSCORED_PASSES = 3
"""Passes over an evaluation's unscored examples (each call already retried) before the run stops."""


@dataclass(frozen=True)
class OptimizeResult:
    run: RunRecord
    seed: CandidateResult
    best: CandidateResult
    best_program: Program
    usage: RunUsage
    wall_s: float
    task: Task
    intervals: dict[str, Estimate]
    """Bootstrap 95% intervals: ``best_dev``, ``best_test``, and ``best_minus_seed_dev``/``_test`` (paired)."""
    pruning: PruningSummary

    @property
    def stop_reason(self) -> str | None:
        return self.run.stop_reason

    def save(self, path: str | Path) -> Path:
        """Write the best program as a self-contained JSON file (``agentsearch.load_program`` reads it);
        credentials in the LM's URL are masked, as everywhere agentsearch writes."""
        return save_program(self.best_program, path, lm=redact_tree(self.task.lm.model_dump(mode="json")),
                            metadata=program_metadata(self.run, self.best))


def program_metadata(run: RunRecord, result: CandidateResult) -> dict[str, Any]:
    return {"run": run.name, "task": run.task_name, "candidate_id": result.candidate.id,
            "candidate_number": result.candidate.number, "dev_score": result.dev_score, "test_score": result.test_score}


def seed_spec(task: Task) -> CandidateSpec:
    """The program as the user wrote it: one Predict with the task's instructions, DSPy's chat format."""
    return CandidateSpec(predictors=(PredictorSpec(name="answer", signature=node_signature(task.program.signature, "answer"),
                                                   instructions=task.program.instructions, format="chat"),))


def planned_space(task: Task, *, train_size: int) -> SearchSpace:
    """The shape of the space a run of the task would search, before any LM call makes its contents.

    Instructions and demo sets are placeholders; counts are upper bounds (repeated demo sets are dropped).
    """
    search = task.search
    prompt = "prompt" in search.space_levels
    demo_sets = tuple((f"demo{i}",) * min(search.max_demos, train_size) for i in range(search.num_demo_sets))
    return SearchSpace(
        signature=node_signature(task.program.signature, "answer"),
        instructions=tuple(f"instruction {i}" for i in range(search.num_instructions if prompt else 1)),
        demo_sets=demo_sets if search.max_demos and train_size else (),
        retrieval_pool=("pool",) if search.modules.retrieves(search.space_levels, search.max_demos) and train_size else (),
        demos={}, formats=tuple(search.formats), max_demos=min(search.max_demos, train_size),
        levels=tuple(search.space_levels), modules=search.modules,
    )


def prompt_trials(task: Task, space: SearchSpace) -> int:
    """How many trials (the seed's included) a staged search holds to the prompt level; 0 when not staged."""
    if not stages_prompt_first(space):
        return 0
    return round(task.search.space_candidates * task.search.prompt_share)


RESUMABLE_CHANGES = {"budget", "concurrency", "storage", "search.max_candidates"}
"""Task fields a continued run may change; any other change would compare candidates on different terms."""


def _changed_field(stored: Any, current: Any, prefix: str = "") -> str | None:
    if prefix in RESUMABLE_CHANGES:
        return None
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in sorted(set(stored) | set(current)):
            changed = _changed_field(stored.get(key), current.get(key), f"{prefix}.{key}" if prefix else key)
            if changed:
                return changed
        return None
    return None if stored == current else prefix


def stored_task(task: Task) -> dict[str, Any]:
    """The task as the store keeps it: secrets (URL passwords, keys) masked."""
    return redact_tree(task.model_dump(mode="json"))


def _continue_run(run: RunRecord, task: Task) -> RunRecord:
    if run.task_name != task.name:
        raise AgentSearchError(f"run {run.name!r} belongs to task {run.task_name!r}, not {task.name!r}")
    if run.status == RunStatus.RUNNING and not run.lost:
        raise AgentSearchError(f"run {run.name!r} is running in another process (last seen "
                               f"{run.seconds_since_heartbeat():.0f} s ago); stop it first")
    changed = _changed_field(run.task, stored_task(task))
    if changed:
        raise AgentSearchError(f"task field {changed} differs from the one run {run.name!r} started with; "
                               f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change when a run is continued")
    return run


def _open_run(storage: BaseStorage, task: Task, run_name: str | None, resume: bool) -> RunRecord:
    if run_name:
        run = storage.get_run(run_name)
        if run is not None:
            return _continue_run(run, task)
        return storage.create_run(run_name, task.name, stored_task(task))
    if resume:
        unfinished = [run for run in storage.list_runs() if run.task_name == task.name and run.status != "finished"]
        if not unfinished:
            raise AgentSearchError(f"no unfinished run of task {task.name!r} in {storage.display_url} to resume")
        return _continue_run(unfinished[-1], task)
    return storage.create_run(f"{task.name}-{dt.datetime.now():%Y%m%d-%H%M%S}", task.name, stored_task(task),
                              unique=True)


def _describe_failure(result: ExampleResultRecord, item: LabelledExample) -> str:
    """One dev example a design got wrong, as the meta agent is shown it."""
    inputs = ", ".join(f"{k}={v!r}" for k, v in item.example.inputs().items())
    expected = ", ".join(f"{k}={v!r}" for k, v in item.example.labels().items())
    got = f"error {result.error}" if result.error else f"answered {result.prediction}"
    return f"{inputs}: {got}; expected {expected}"[:400]


def _proposal(candidate: CandidateRecord) -> Proposal:
    """The proposal a stored candidate came from, as its optimizer is told about it."""
    return Proposal(parse_spec(candidate.spec), candidate.parents, candidate.trial_number)


class _Stopped(AgentSearchError):
    """A budget ran out before the seed was scored: the run is ``stopped`` (not failed) and resumable."""


class Terminated(BaseException):
    """SIGTERM: raised in the main thread by the CLI's handler, handled like Ctrl-C (status interrupted)."""


class _Outage:
    """Watches outcomes for an LM outage: a failure that cannot heal, or too many unscored in a row."""

    def __init__(self) -> None:
        self.streak = 0
        self.last: Any = None
        self.tripped = False

    def observe(self, outcomes: Sequence[ExampleOutcome]) -> None:
        for outcome in outcomes:
            if outcome.failure is None:
                self.streak = 0
                continue
            self.streak += 1
            self.last = outcome.failure
            if not outcome.failure.kind.retryable or self.streak >= MAX_UNSCORED_STREAK:
                self.tripped = True

    def error(self, unscored: int) -> LMUnavailableError:
        return LMUnavailableError(self.last, unscored=unscored)


class _Heartbeat:
    """Writes the run's heartbeat every HEARTBEAT_S from a daemon thread, so ``runs`` can tell a
    live run from one whose process died."""

    def __init__(self, storage: BaseStorage, run_id: int) -> None:
        self.storage, self.run_id = storage, run_id
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="agentsearch-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            with contextlib.suppress(AgentSearchError):  # a missed beat is no reason to stop a search
                self.storage.heartbeat(self.run_id)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.thread.start()
        try:
            yield
        finally:
            self.stopping.set()


PREFLIGHT_PROMPT = "Reply with the word OK."


def preflight(config: Any, spend: Any, cancelled: threading.Event | None = None) -> None:
    """One uncached call to the LM before anything is scored: a missing key, a wrong model or a
    server that is down stops the run here, in seconds, naming the model and the cause."""
    lm = build_lm(config, cancelled=cancelled)
    meter = UsageMeter()
    try:
        with dspy.context(usage_tracker=meter):
            lm(PREFLIGHT_PROMPT, max_tokens=8, cache=False)
    except LMUnavailableError:
        raise
    except Exception:  # noqa: BLE001 - the LM answered (even oddly): it is reachable
        pass
    finally:
        spend(meter.usage)


class _Search:
    def __init__(self, task: Task, storage: BaseStorage, run: RunRecord, callback: SearchCallback) -> None:
        self.task = task
        self.storage = storage
        self.run = run
        self.callback = callback
        self.cancelled = threading.Event()
        """Set when the run stops (signal, outage, error): its LM calls in flight start no new attempt."""
        self.lm = build_lm(task.lm, cancelled=self.cancelled)
        self.budget = Budget(task.budget, storage.run_usage(run.id))
        self.splits = {split: load_split(task, split) for split in ("train", "dev")}
        self.evaluator = Evaluator(task_metric(task, self.splits), concurrency=task.concurrency,
                                   metric_name=task.metric)
        # Minibatches for pruning are prefixes of dev, so dev is shuffled once (by the task seed) to make
        # every prefix a fair sample; each example's position is its step in the Optuna study.
        random.Random(task.seed).shuffle(self.splits["dev"])
        self.dev_step = {item.id: step for step, item in enumerate(self.splits["dev"])}
        self.cost_measure = cost_measure(task.lm.model)
        agent = task.search.agent
        self.limits = AgentLimits(cpu_s=agent.cpu_s, wall_s=agent.wall_s, memory_mb=agent.memory_mb,
                                  max_lm_calls=agent.max_lm_calls, max_tokens=agent.max_tokens,
                                  max_prompt_chars=agent.max_prompt_chars)
        self.demos: dict[str, dict[str, Any]] = {}
        dev_scores = [e.score for e in storage.list_evaluations(run_id=run.id)
                      if e.split == "dev" and e.status == "complete" and e.score is not None]
        self.best_dev: float | None = max(dev_scores, default=None)
        self.stop_reason: str | None = None
        """Why the search ended early: a budget (the run is 'stopped' and can be resumed with a larger one)."""
        self.end_note: str | None = None
        """Why the search ended before max_candidates without a budget (the space ran out)."""

    def keep_examples(self) -> None:
        """Store every split's examples with the run (once), so the database alone can show a failure."""
        for split in SPLITS:
            if self.task.data_path(split) is None:
                continue
            if split not in self.splits:
                self.splits[split] = load_split(self.task, split)
            self.storage.add_examples(self.run.id, split, [
                (item.id, dict(item.example.inputs().items()), dict(item.example.labels().items()))
                for item in self.splits[split]])

    # evaluation --------------------------------------------------------------------------------
    def _minibatches(self, examples: Sequence[LabelledExample], done: set[str],
                     offset: int = 0) -> list[list[LabelledExample]]:
        """The examples not yet scored, from ``offset`` on (wrapping), cut where pruning is checked:
        after 1, 3, 7, ... minibatches."""
        offset %= max(len(examples), 1)
        examples = [*examples[offset:], *examples[:offset]]
        batches, start, size = [], 0, self.task.search.minibatch
        while start < len(examples):
            batch = [item for item in examples[start:start + size] if item.id not in done]
            if batch:
                batches.append(batch)
            start, size = start + size, size * 2
        return batches

    def evaluate(self, candidate: CandidateRecord, split: str, examples: Sequence[LabelledExample],
                 optimizer: BaseOptimizer | None = None) -> EvaluationRecord:
        """Score the candidate on the examples not yet stored.

        The record stays 'running' if a budget cut it short. With an optimizer that prunes, dev is
        scored in growing minibatches and the evaluation ends 'pruned' when the optimizer says so.
        An LM outage stores nothing for the examples it hit and raises LMUnavailableError once it
        persists; a metric that raises stops the run with MetricError.
        """
        evaluation = self.storage.get_or_create_evaluation(candidate.id, split)
        if evaluation.status in ("complete", "pruned"):
            return evaluation
        done = {result.example_id: result.score for result in self.storage.list_example_results(evaluation.id)}
        todo = [item for item in examples if item.id not in done]
        self.callback.on_evaluation_start(candidate, split, len(examples), len(examples) - len(todo))
        proposal = _proposal(candidate)
        program = build_program(proposal.spec, self.demos, self.lm, base_dir=self.task.base_dir, limits=self.limits)
        pruner = optimizer if optimizer is not None and optimizer.prunes and split == "dev" else None
        batches = self._minibatches(examples, set(done), pruner.minibatch_offset(proposal)) if pruner else [todo]
        started = time.perf_counter()
        for batch in batches:
            finished = self._score(program, evaluation, batch, done, split)
            if pruner:  # all stored scores: those a crash kept from being reported are reported now
                pruner.report(proposal, {self.dev_step[example_id]: score for example_id, score in done.items()})
            if not finished:
                self.stop_reason = self.budget.exhausted()
                return evaluation
            if pruner and len(done) < len(examples) and pruner.should_prune(proposal):
                mean = sum(done.values()) / len(done)
                reason = f"pruned after {len(done)} of {len(examples)} dev examples: score {mean:.3f}, {pruner.prune_reason}"
                evaluation = self.storage.complete_evaluation(evaluation.id, time.perf_counter() - started,
                                                              pruned_because=reason)
                self.callback.on_evaluation_end(candidate, evaluation, self.best_dev)
                return evaluation
        evaluation = self.storage.complete_evaluation(evaluation.id, time.perf_counter() - started)
        if split == "dev" and evaluation.score is not None:
            self.best_dev = evaluation.score if self.best_dev is None else max(self.best_dev, evaluation.score)
        self.callback.on_evaluation_end(candidate, evaluation, self.best_dev)
        return evaluation

    def _score(self, program: Program, evaluation: EvaluationRecord, batch: Sequence[LabelledExample],
               done: dict[str, float], split: str) -> bool:
        """Score and store the batch's examples; False when a budget stopped it first.

        Examples an LM outage left unscored get up to UNSCORED_PASSES passes (their calls were
        already retried); an outage that outlasts them, or MAX_UNSCORED_STREAK unscored examples
        in a row, or a failure that cannot heal (a bad key), raises LMUnavailableError.
        """
        outage = _Outage()
        for number in range(UNSCORED_PASSES):
            if number and outage.last is not None:  # give the provider a moment before the next pass
                self.cancelled.wait(_failures.backoff_s(number + 1, outage.last))
            todo = [item for item in batch if item.id not in done]
            if not todo:
                return True
            outage = _Outage()
            runs = self.evaluator.run(program, todo, account=self._spend,
                                      should_stop=lambda: outage.tripped or self.budget.exhausted() is not None)
            with contextlib.closing(runs):
                for outcomes in runs:
                    scored = [outcome for outcome in outcomes if outcome.scored]
                    self.storage.add_example_results(evaluation.id, scored)
                    for outcome in scored:
                        done[outcome.example_id] = outcome.score
                        self.callback.on_example(outcome, self.budget.as_usage())
                    lost = [outcome for outcome in outcomes if outcome.failure is not None]
                    if lost:
                        self.storage.add_unscored_usage(self.run.id, sum(o.usage.lm_calls for o in lost),
                                                        sum(o.usage.tokens for o in lost))
                    error = self.evaluator.unscored_error((o for o in outcomes if o.metric_error), split)
                    if error is not None:  # a task error stops the run; an outage is the Outage's to judge
                        raise error
                    outage.observe(outcomes)
            if outage.tripped:
                raise outage.error(len([item for item in batch if item.id not in done]))
            if self.budget.exhausted() is not None:
                return all(item.id in done for item in batch)
            if outage.last is not None and any(item.id not in done for item in batch):
                self.callback.on_phase(f"{sum(item.id not in done for item in batch)} examples left unscored by "
                                       f"the LM ({outage.last.describe()}); trying them again")
        missing = [item for item in batch if item.id not in done]
        if missing:
            raise outage.error(len(missing))
        return True

    def _spend(self, outcomes: list[ExampleOutcome]) -> None:
        for outcome in outcomes:
            self.budget.spend(outcome.usage)

    # stages ------------------------------------------------------------------------------------
    def seed_candidate(self) -> CandidateRecord:
        existing = [c for c in self.storage.list_candidates(self.run.id) if c.number == 0]
        if existing:
            return existing[0]
        spec = seed_spec(self.task)
        return self.storage.create_candidate(self.run.id, spec.model_dump(mode="json"), spec.hash,
                                             level="prompt", optimizer="seed")

    def space(self, seed: CandidateRecord, seed_dev: EvaluationRecord) -> SearchSpace | None:
        if self.run.space is not None:
            if "signature" not in self.run.space:
                raise AgentSearchError(f"run {self.run.name} was started by an older agentsearch whose search space "
                                       f"this version cannot read; start a new run")
            return SearchSpace.from_dict(self.run.space)
        search = self.task.search
        rng = random.Random(self.task.seed)
        train = self.splits["train"]
        bootstrapped: dict[str, dict[str, Any]] = {}
        if search.bootstrap_examples and search.max_demos:
            # A seed none of whose dev answers could be parsed (a small LM and the chat format) would
            # bootstrap no demos from train either: those calls are better spent on candidates.
            if seed_dev.n_errors == seed_dev.n:
                self.callback.on_phase("no bootstrapping: the seed's every dev answer failed to parse")
            else:
                self.callback.on_phase("bootstrapping demos: seed program on train")
                subset = rng.sample(train, min(search.bootstrap_examples, len(train)))
                evaluation = self.evaluate(seed, "train", subset)
                if evaluation.status != "complete":
                    return None
                inputs = {item.id: dict(item.example.inputs().items()) for item in train}
                bootstrapped = {
                    result.example_id: {**inputs[result.example_id], **result.prediction}
                    for result in self.storage.list_example_results(evaluation.id)
                    if result.error is None and result.score >= 1.0 and result.prediction and result.example_id in inputs
                }
        instructions: list[str] = []
        # evolve writes its own instructions, from failures, so it needs no proposals up front
        if search.num_instructions > 1 and "prompt" in search.space_levels and search.optimizer != "evolve":
            self.callback.on_phase(f"proposing {search.num_instructions - 1} instructions")
            proposer = build_lm(self.task.effective_proposer_lm, cancelled=self.cancelled)
            instructions, usage = propose_instructions(
                proposer, seed_spec(self.task), train, count=search.num_instructions - 1, rng=rng
            )
            self.storage.add_proposer_usage(self.run.id, usage.lm_calls, usage.tokens, usage.cost_usd)
            self.budget.spend(usage)
        space = build_space(
            seed_spec(self.task), train=train, bootstrapped=bootstrapped, instructions=instructions,
            formats=search.formats, num_demo_sets=search.num_demo_sets, max_demos=search.max_demos,
            levels=search.space_levels, modules=search.modules, rng=rng,
        )
        self.storage.set_run_space(self.run.id, space.to_dict())
        return space

    def _spend_proposer(self, usage: Usage) -> None:
        self.storage.add_proposer_usage(self.run.id, usage.lm_calls, usage.tokens, usage.cost_usd)
        self.budget.spend(usage)

    def evolver(self, space: SearchSpace) -> EvolveOptimizer:
        return EvolveOptimizer(
            space, build_lm(self.task.effective_proposer_lm, cancelled=self.cancelled),
            population=self._population, failures=self._failures,
            asked=lambda: sum(c.optimizer == "evolve" for c in self.storage.list_candidates(self.run.id)),
            spend=self._spend_proposer, seed=self.task.seed, minibatch=self.task.search.minibatch,
        )

    def _population(self) -> list[ScoredCandidate]:
        """Candidates of the Optuna-space levels scored on all of dev, with their per-example scores."""
        complete = {e.candidate_id: e for e in self.storage.list_evaluations(run_id=self.run.id)
                    if e.split == "dev" and e.status == "complete"}
        population = []
        for candidate in self.storage.list_candidates(self.run.id):
            if candidate.id in complete and candidate.level != "agent":
                scores = {self.dev_step[r.example_id]: r.score
                          for r in self.storage.list_example_results(complete[candidate.id].id)
                          if r.example_id in self.dev_step}
                population.append(ScoredCandidate(candidate.id, parse_spec(candidate.spec), scores))
        return population

    def _failures(self, candidate_id: int, rng: random.Random, count: int = 4) -> list[Failure]:
        evaluation = next(e for e in self.storage.list_evaluations(candidate_id=candidate_id) if e.split == "dev")
        examples = {item.id: item for item in self.splits["dev"]}
        wrong = [r for r in self.storage.list_example_results(evaluation.id) if r.score < 1.0 and r.example_id in examples]
        failures = []
        for result in rng.sample(wrong, min(count, len(wrong))):
            item = examples[result.example_id]
            expected = {k: str(v) for k, v in item.example.labels().items()}
            feedback = result.error or "wrong answer: expected " + "; ".join(f"{k} {v!r}" for k, v in expected.items())
            failures.append(Failure({k: str(v) for k, v in item.example.inputs().items()},
                                    "; ".join(f"{k}: {v}" for k, v in (result.prediction or {}).items()) or "(none)",
                                    expected, feedback, unparsed=result.prediction is None))
        return failures

    def optimizer(self, space: SearchSpace, seed: CandidateRecord, seed_dev: EvaluationRecord) -> BaseOptimizer:
        search = self.task.search
        if search.optimizer == "evolve":
            return self.evolver(space)
        cost_aware = "cost" in search.objectives
        study = optuna.create_study(
            storage=optuna_storage(self.storage.url),
            study_name=f"agentsearch:{self.run.name}",
            directions=["maximize", "minimize"] if cost_aware else ["maximize"],
            sampler=make_sampler(search.optimizer, seed=self.task.seed, max_candidates=search.max_candidates),
            pruner=make_pruner(search.pruner),
            load_if_exists=True,
        )
        optimizer = OptunaOptimizer(
            space, study=study, name=search.optimizer, seed_candidate_id=seed.id,
            sampler_for=lambda trials: make_sampler(search.optimizer, seed=self.task.seed + trials,
                                                    max_candidates=search.max_candidates),
            prompt_trials=prompt_trials(self.task, space), candidate_of=self._candidate_of_trial,
        )
        known = seed_trial(space, seed_spec(self.task))
        if not study.trials and known is not None and seed_dev.score is not None:
            values = [seed_dev.score, cost_per_example(seed_dev, self.cost_measure)] if cost_aware else [seed_dev.score]
            steps = {self.dev_step[r.example_id]: r.score for r in self.storage.list_example_results(seed_dev.id)
                     if r.example_id in self.dev_step}
            optimizer.record_known(*known, values=values, example_scores=steps)
        return optimizer

    def _candidate_of_trial(self, trial_number: int) -> int | None:
        found = next((c.id for c in self.storage.list_candidates(self.run.id) if c.trial_number == trial_number), None)
        # Trial 0 with no candidate of its own is the seed's, which record_known added.
        return self.seed_candidate().id if found is None and trial_number == 0 else found

    def _level(self, spec: AnySpec) -> str:
        plain = spec.topology == "single" and spec.modules() == {"predict"}
        return "prompt" if plain else "module"

    def search(self, optimizer: BaseOptimizer) -> None:
        dev = self.splits["dev"]
        candidates = [c for c in self.storage.list_candidates(self.run.id) if c.level != "agent"]
        known = {c.spec_hash: c for c in candidates}
        ids = {c.id for c in candidates}
        scores = {e.candidate_id: e.score for e in self.storage.list_evaluations(run_id=self.run.id)
                  if e.split == "dev" and e.status in ("complete", "pruned") and e.candidate_id in ids}
        # Candidates a killed process left unfinished are finished first, with their own trials.
        for candidate in candidates:
            if candidate.number > 0 and candidate.status == "pending":
                evaluation = self.evaluate(candidate, "dev", dev, optimizer)
                if evaluation.status == "running":
                    return
                self._finish(candidate, evaluation, optimizer, scores)
        duplicates = 0
        while len(scores) < self.task.search.space_candidates:
            self.stop_reason = self.budget.exhausted()
            if self.stop_reason:
                return
            proposal = optimizer.ask()
            twin = known.get(proposal.spec.hash)
            if twin is not None:
                twin_dev = [e for e in self.storage.list_evaluations(candidate_id=twin.id) if e.split == "dev"]
                self._tell(optimizer, proposal, twin_dev[0] if twin_dev else None)
                duplicates += 1
                if duplicates >= MAX_DUPLICATE_STREAK:
                    self.end_note = f"search space exhausted ({duplicates} proposals in a row were already evaluated)"
                    return
                continue
            duplicates = 0
            candidate = self.storage.create_candidate(
                self.run.id, proposal.spec.model_dump(mode="json"), proposal.spec.hash,
                level=self._level(proposal.spec), optimizer=optimizer.name, parents=proposal.parents,
                trial_number=proposal.trial_number,
            )
            known[candidate.spec_hash] = candidate
            evaluation = self.evaluate(candidate, "dev", dev, optimizer)
            if evaluation.status == "running":
                return
            self._finish(candidate, evaluation, optimizer, scores)

    def _tell(self, optimizer: BaseOptimizer, proposal: Proposal, evaluation: EvaluationRecord | None) -> None:
        if evaluation is None or evaluation.status not in ("complete", "pruned"):
            optimizer.tell(proposal, None)
            return
        optimizer.tell(proposal, evaluation.score, cost=cost_per_example(evaluation, self.cost_measure),
                       pruned=evaluation.status == "pruned")

    def _finish(self, candidate: CandidateRecord, evaluation: EvaluationRecord, optimizer: BaseOptimizer,
                scores: dict[int, float | None]) -> None:
        self.storage.set_candidate_status(candidate.id, "pruned" if evaluation.status == "pruned" else "complete")
        scores[candidate.id] = evaluation.score
        self._tell(optimizer, _proposal(candidate), evaluation)

    # the agent level ------------------------------------------------------------------------------
    def meta_agent(self, seed: CandidateRecord) -> MetaAgentOptimizer:
        settings = self.task.search.agent
        train = self.splits["train"]
        signature = node_signature(self.task.program.signature, "answer")
        outputs = list(dspy.Signature(signature).output_fields)
        label_of = {item.id: "\x1f".join(str(item.example[name]) for name in outputs) for item in train}
        shown = make_demo_sets([], [item.id for item in train], num_sets=1, size=settings.examples,
                               rng=random.Random(self.task.seed), label_of=label_of)
        by_id = {item.id: item for item in train}
        examples = tuple(dict(by_id[example_id].example.items()) for example_id in (shown[0] if shown else ()))
        design_task = DesignTask(signature=signature, instructions=self.task.program.instructions,
                                 summary=summarize_data(train, outputs), examples=examples, limits=self.limits)

        return MetaAgentOptimizer(
            task=design_task, proposer=build_lm(self.task.effective_proposer_lm, cancelled=self.cancelled),
            archive=self._design_archive,
            known=lambda: {c.spec_hash for c in self.storage.list_candidates(self.run.id) if c.level == "agent"},
            spend=self._spend_proposer, seed_candidate_id=seed.id, show_code=settings.show_code,
        )

    def _design_archive(self) -> list[ArchiveEntry]:
        dev = {e.candidate_id: e for e in self.storage.list_evaluations(run_id=self.run.id)
               if e.split == "dev" and e.status == "complete" and e.score is not None}
        examples = {item.id: item for item in self.splits["dev"]}
        entries = []
        for candidate in self.storage.list_candidates(self.run.id):
            evaluation = dev.get(candidate.id)
            if candidate.level != "agent" or evaluation is None:
                continue
            results = self.storage.list_example_results(evaluation.id)
            wrong = [r for r in results if r.score < 1.0]
            failures = tuple(_describe_failure(r, examples[r.example_id]) for r in wrong[:3] if r.example_id in examples)
            calls = sum(r.program_calls for r in results) / max(len(results), 1)
            entries.append(ArchiveEntry(candidate.id, parse_spec(candidate.spec), evaluation.score, calls, failures))
        return entries

    def _designs_done(self) -> int:
        """Designs that ended: scored on dev, or failed after their last repair."""
        designs = [c for c in self.storage.list_candidates(self.run.id) if c.level == "agent"]
        repaired = {parent for c in designs if c.optimizer == "repair" for parent in c.parents}
        return sum(c.status in ("complete", "pruned") or (c.status == "failed" and c.id not in repaired)
                   for c in designs)

    def _smoke_test(self, candidate: CandidateRecord) -> str | None:
        """The error of a design that fails on every one of the first train examples, else None."""
        examples = self.splits["train"][:self.task.search.agent.smoke_examples]
        evaluation = self.evaluate(candidate, "train", examples)
        results = self.storage.list_example_results(evaluation.id)
        errors = [r.error for r in results if r.error]
        if evaluation.status == "complete" and results and len(errors) == len(results):
            return errors[0]
        return None

    def search_designs(self, meta: MetaAgentOptimizer) -> None:
        """Designs until max_candidates: each must run on a few train examples (with up to ``repairs``
        fixes by the meta agent) before it is scored on dev."""
        dev, repairs = self.splits["dev"], self.task.search.agent.repairs
        seeds = {spec.hash for spec in meta.seeds}
        pending = [c for c in self.storage.list_candidates(self.run.id) if c.level == "agent" and c.status == "pending"]
        duplicates = 0
        while pending or self.task.search.space_candidates + self._designs_done() < self.task.search.max_candidates:
            self.stop_reason = self.budget.exhausted()
            if self.stop_reason:
                return
            if pending:  # left by a killed process: carries on where its repair chain stopped
                candidate = pending.pop(0)
                proposal, attempts = _proposal(candidate), self._repairs_before(candidate)
            else:
                proposal, attempts = meta.ask(), 0
                if proposal.spec.hash in meta.known():  # the meta agent rewrote a design it was shown
                    duplicates += 1
                    if duplicates >= MAX_DUPLICATE_STREAK:
                        self.end_note = f"the meta agent repeated known designs {duplicates} times in a row"
                        return
                    continue
                duplicates = 0
                candidate = self._create_design(proposal, "archive" if proposal.spec.hash in seeds else meta.name)
            while True:
                error = self._smoke_test(candidate)
                if self.budget.exhausted():
                    self.stop_reason = self.budget.exhausted()
                    return
                if error is None:
                    break
                self.storage.set_candidate_status(candidate.id, "failed", note=error)
                if attempts >= repairs:
                    break
                attempts += 1
                self.callback.on_phase(f"repairing design #{candidate.number} ({attempts} of {repairs})")
                proposal = meta.repair(proposal, error, candidate.id)
                candidate = self._create_design(proposal, "repair")
            if error is not None:
                continue
            evaluation = self.evaluate(candidate, "dev", dev)
            if evaluation.status == "running":
                return
            self._finish(candidate, evaluation, meta, {})

    def _repairs_before(self, candidate: CandidateRecord) -> int:
        """How many repairs led to this design (its chain of ``repair`` ancestors)."""
        count = 0
        while candidate.optimizer == "repair" and candidate.parents:
            count += 1
            candidate = self.storage.get_candidate(candidate.parents[0])
        return count

    def _create_design(self, proposal: Proposal, optimizer: str) -> CandidateRecord:
        return self.storage.create_candidate(self.run.id, proposal.spec.model_dump(mode="json"), proposal.spec.hash,
                                             level="agent", optimizer=optimizer, parents=proposal.parents)

    def best(self) -> tuple[CandidateRecord, EvaluationRecord]:
        found = best_candidate(self.storage, self.run.id)
        if found is None:
            raise AgentSearchError(f"run {self.run.name} has no candidate with a dev score")
        return found

    def test(self, candidate: CandidateRecord) -> EvaluationRecord | None:
        if self.task.data_path("test") is None or self.budget.exhausted():
            return None
        if "test" not in self.splits:
            self.splits["test"] = load_split(self.task, "test")
        return self.evaluate(candidate, "test", self.splits["test"])


def _cancel(search: _Search | None) -> None:
    if search is not None:
        search.cancelled.set()


def optimize(
    task: Task | str | Path,
    *,
    storage: str | BaseStorage | None = None,
    run_name: str | None = None,
    resume: bool = False,
    max_candidates: int | None = None,
    max_lm_calls: int | None = None,
    concurrency: int | None = None,
    seed: int | None = None,
    callback: SearchCallback | None = None,
) -> OptimizeResult:
    """Search programs for a task and return the best by dev score, with its single test evaluation.

    ``run_name`` of an existing run, or ``resume=True`` (the task's latest unfinished run), continues
    it; finished evaluations are read from the store, not recomputed. ``storage`` is resolved as by the
    CLI: the URL given, then ``$AGENTSEARCH_STORAGE``, then the task's ``storage``, then the default.

    Raises LMUnavailableError when the LM cannot be reached (the run is ``failed``; resuming it once
    the LM is back scores exactly what the outage left) and MetricError when the metric raises.
    """
    task = as_task(task).with_overrides(**{"search.max_candidates": max_candidates, "budget.max_lm_calls": max_lm_calls,
                                           "concurrency": concurrency, "seed": seed})
    if task.search.runs_llm_code:
        from agentsearch.evaluators import isolation

        isolation()  # fail closed: no sandbox, no run (IsolationUnavailableError, before anything is written)
    store = get_storage(storage if isinstance(storage, BaseStorage) else resolve_storage_url(storage, task.storage))
    run = _open_run(store, task, run_name, resume)
    store.set_run_status(run.id, RunStatus.RUNNING)
    callback = callback or SearchCallback()
    started = time.perf_counter()
    search: _Search | None = None
    try:
        search = _Search(task, store, run, callback)
        with _Heartbeat(store, run.id).running():
            search.keep_examples()
            if run.status != RunStatus.FINISHED:  # a finished run has everything stored: no call to make
                callback.on_phase(f"checking the LM: {task.lm.model}")
                preflight(task.lm, search._spend_proposer, search.cancelled)
                if task.proposer_lm is not None and task.proposer_lm != task.lm:
                    preflight(task.proposer_lm, search._spend_proposer, search.cancelled)
            callback.on_phase("evaluating the seed program on dev")
            seed = search.seed_candidate()
            seed_dev = search.evaluate(seed, "dev", search.splits["dev"])
            if seed_dev.status == "complete":
                store.set_candidate_status(seed.id, "complete")
                if task.search.space_levels:
                    space = search.space(seed, seed_dev)
                    if space is not None:
                        search.demos = space.demos
                        callback.on_phase(f"searching with {task.search.optimizer}")
                        search.search(search.optimizer(space, seed, seed_dev))
                if "agent" in task.search.levels and not search.stop_reason:
                    callback.on_phase("searching agent designs with the meta agent")
                    search.search_designs(search.meta_agent(seed))
            if seed_dev.status != "complete":
                store.set_run_status(run.id, RunStatus.STOPPED, search.stop_reason)
                raise _Stopped(f"run {run.name} stopped before the seed program was scored: {search.stop_reason}")
            best, best_dev = search.best()
            callback.on_phase("evaluating the best and the seed program on test")
            best_test = search.test(best)
            seed_test = best_test if best.id == seed.id else search.test(seed)
    except _Stopped:
        raise
    except KeyboardInterrupt:
        _cancel(search)
        store.set_run_status(run.id, RunStatus.INTERRUPTED, "interrupted by the user")
        raise
    except Terminated:
        _cancel(search)
        store.set_run_status(run.id, RunStatus.INTERRUPTED, "terminated (SIGTERM)")
        raise
    except BaseException as exc:
        _cancel(search)  # no worker still in flight starts another attempt
        reason = str(exc) if isinstance(exc, AgentSearchError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(AgentSearchError):  # the store itself may be what failed
            spent = exc.usage if isinstance(exc, LMUnavailableError) else None  # a proposer's attempts
            if spent is not None and spent.lm_calls:
                store.add_proposer_usage(run.id, spent.lm_calls, spent.tokens, spent.cost_usd)
            store.set_run_status(run.id, RunStatus.FAILED, redact_secrets(reason)[:2000])
        raise
    status = RunStatus.STOPPED if search.stop_reason else RunStatus.FINISHED
    reason = search.stop_reason or search.end_note or f"max_candidates={task.search.max_candidates} reached"
    store.set_run_status(run.id, status, reason)
    best_result = CandidateResult(best, best_dev, best_test)
    seed_result = CandidateResult(store.get_candidate(seed.id), seed_dev, seed_test)
    return OptimizeResult(
        run=store.get_run(run.id),
        seed=seed_result,
        best=best_result,
        best_program=build_program(parse_spec(best.spec), search.demos, search.lm, base_dir=task.base_dir,
                                   limits=search.limits),
        usage=store.run_usage(run.id),
        wall_s=time.perf_counter() - started,
        task=task,
        intervals=score_intervals(store, best_result, seed_result),
        pruning=pruning_summary(store, run.id),
    )
