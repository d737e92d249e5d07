"""A worker's life in a run: open or join the run, check the LM, do the one-time steps, work the
stages, finish, and leave, setting the run's status only when it is the last worker out.

``optimize`` is one worker started from a task (the CLI's ``optimize``, ``agentsearch.optimize``);
``work`` joins an existing run with no task file (``agentsearch worker``): the task and every
split's examples are read from the store. Several workers on several machines share one run on
PostgreSQL; SQLite serves one process, and a second process on a running SQLite run is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy

from agentsearch._callbacks import SearchCallback
from agentsearch._references import IN_PROCESS
from agentsearch.data import LabelledExample, load_split
from agentsearch.exceptions import AgentSearchError, BudgetRefusal, LMUnavailableError
from agentsearch.lm import UsageMeter, build_lm, redact_secrets, redact_tree
from agentsearch.lm._failures import FailureKind, LMFailure, first_line
from agentsearch.optimizers import BaseOptimizer, make_optimizer
from agentsearch.run._context import RunContext, worker_name
from agentsearch.run._evaluation import Scoring
from agentsearch.run._loop import Loop, Stage, plan
from agentsearch.run._result import OptimizeResult, finish, result, selection_reserve
from agentsearch.run._setup import search_space, seed_and_evaluate
from agentsearch.run._view import Backoff, StoreView
from agentsearch.store import (
    BaseStorage,
    Level,
    RunRecord,
    RunStatus,
    Split,
    get_storage,
)
from agentsearch.store._base import CANDIDATE_LEASE, HEARTBEAT_S, resolve_storage_url
from agentsearch.store._rdb.storage import database_failure
from agentsearch.task import SPLITS, Task, as_task

RESUMABLE_CHANGES = {"budget", "concurrency", "storage", "search.max_candidates"}
"""Task fields a continued run may change; any other change would compare candidates on different terms."""
PREFLIGHT_PROMPT = "Reply with the word OK."


class Stopped(AgentSearchError):
    """A budget ran out before the seed was scored: the run is ``stopped`` (not failed) and resumable."""


class Terminated(BaseException):
    """SIGTERM: raised in the main thread by the CLI's handler, handled like Ctrl-C (status interrupted)."""


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


def _single_process(storage: BaseStorage) -> bool:
    return storage.url.startswith("sqlite")


def _continue_run(storage: BaseStorage, run: RunRecord, task: Task | None) -> RunRecord:
    if task is not None and run.task_name != task.name:
        raise AgentSearchError(f"run {run.name!r} belongs to task {run.task_name!r}, not {task.name!r}")
    live = storage.live_workers(run.id) if run.status == RunStatus.RUNNING else []
    if live and _single_process(storage):
        raise AgentSearchError(f"run {run.name!r} is running in another process ({live[0].rsplit(':', 1)[0]}); "
                               f"SQLite serves one process: stop it first, or share the run between processes "
                               f"with PostgreSQL (--storage postgresql+psycopg://...)")
    changed = task is not None and _changed_field(run.task, stored_task(task))
    if changed:
        raise AgentSearchError(f"task field {changed} differs from the one run {run.name!r} started with; "
                               f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change when a run is continued")
    return run


def open_run(storage: BaseStorage, task: Task, run_name: str | None, resume: bool) -> RunRecord:
    """The run to work on: the one named (joined, or created by whichever process gets there first),
    the task's latest unfinished one (``resume``), or a new one with a dated name."""
    if run_name:
        run = storage.get_run(run_name)
        if run is not None:
            return _continue_run(storage, run, task)
        try:
            return storage.create_run(run_name, task.name, stored_task(task))
        except AgentSearchError:  # another worker created it a moment ago: join it
            run = storage.get_run(run_name)
            if run is None:
                raise
            return _continue_run(storage, run, task)
    if resume:
        unfinished = [run for run in storage.list_runs() if run.task_name == task.name and run.status != "finished"]
        if not unfinished:
            raise AgentSearchError(f"no unfinished run of task {task.name!r} in {storage.display_url} to resume")
        return _continue_run(storage, unfinished[-1], task)
    return storage.create_run(f"{task.name}-{dt.datetime.now():%Y%m%d-%H%M%S}", task.name, stored_task(task),
                              unique=True)


class _Heartbeat:
    """Every HEARTBEAT_S from a daemon thread: the run's heartbeat (so ``runs`` can tell a live run from
    one whose processes died) and the renewal of this worker's leases."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="agentsearch-heartbeat", daemon=True)

    def _beat(self) -> None:
        ctx = self.ctx
        while not self.stopping.wait(min(HEARTBEAT_S, ctx.lease_s / 3)):
            with contextlib.suppress(AgentSearchError):  # a missed beat is no reason to stop a search
                ctx.storage.heartbeat(ctx.run.id, ctx.holder, ctx.lease_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.thread.start()
        try:
            yield
        finally:
            self.stopping.set()


_MISSING_KEY = re.compile(r"no API key found for provider '[^']*'\. Set (.+?) in the environment")


def preflight(config: Any, ctx: RunContext) -> None:
    """One uncached call to the LM before anything is scored: a missing key, a wrong model, a request
    the provider refuses or a server that is down stops the run here, in seconds, naming the model
    and the cause. A request this trivial that fails is one no program could fix: nothing is scored."""
    lm = build_lm(config, cancelled=ctx.cancelled, gate=ctx.budget.gate)
    meter = UsageMeter()
    try:
        with dspy.context(usage_tracker=meter):
            lm(PREFLIGHT_PROMPT, max_tokens=8, cache=False)
    except BudgetRefusal:
        raise
    except LMUnavailableError as exc:
        raise _said_for_the_user(exc, ctx.task) from None
    except Exception as exc:  # noqa: BLE001 - the provider refused the simplest request: a configuration error
        raise LMUnavailableError(LMFailure(FailureKind.CONFIG, config.model, first_line(exc))) from None
    finally:
        ctx.charge(meter.usage)


def _said_for_the_user(exc: LMUnavailableError, task: Task) -> LMUnavailableError:
    """A missing key told as it applies to the user in front of it: a task file names no key (the
    environment's applies); a ``dspy.LM`` handed to AgentSearch may carry one."""
    found = _MISSING_KEY.search(exc.failure.message)
    if found is None:
        return exc
    variable = found.group(1)
    if task.metric.startswith(IN_PROCESS):  # AgentSearch.compile: the user holds a dspy.LM
        message = f"no API key: pass api_key=... to dspy.LM(...), or set {variable} in the environment"
    else:
        message = f"no API key: set {variable} in the environment (a task file holds no key)"
    return LMUnavailableError(dataclasses.replace(exc.failure, message=message), attempts=exc.attempts)


def _keep_examples(ctx: RunContext) -> None:
    """Store every split's examples with the run (once), so the database alone can show a failure,
    and a worker with no task file can read them."""
    for split in SPLITS:
        if ctx.task.data_path(split) is None:
            continue
        ctx.storage.add_examples(ctx.run.id, split, [
            (item.id, dict(item.example.inputs().items()), dict(item.example.labels().items()))
            for item in ctx.split(split)])


def _leave(storage: BaseStorage, run_id: int, holder: str, status: RunStatus, reason: str | None) -> None:
    """This worker stops: the run takes ``status`` only if no other worker is still on it."""
    with contextlib.suppress(AgentSearchError):  # the store itself may be what failed
        others = [worker for worker in storage.live_workers(run_id) if worker != holder]
        storage.release_leases(holder)
        if not others:
            storage.set_run_status(run_id, status, redact_secrets(reason or "")[:2000] or None)


def _drain(ctx: RunContext, loop: Loop, stages: list[tuple[Stage, BaseOptimizer]]) -> bool:
    """Work every stage until nothing is left to claim and no other worker holds a candidate, whose
    score may yet change the best. False when a budget stopped the work."""
    backoff = Backoff(ctx)
    while True:
        for stage, optimizer in stages:
            if not loop.run_stage(stage, optimizer):
                return False
        held = [holder for holder in ctx.storage.live_leases(ctx.run.id, CANDIDATE_LEASE).values()
                if holder != ctx.holder]
        if not held:
            return True
        ctx.callback.on_phase(f"waiting for {len(set(held))} other workers' {len(held)} candidates")
        if not backoff.pause():
            return True


def _work(ctx: RunContext, *, started: float, check_lm: bool) -> OptimizeResult:
    task, storage, callback = ctx.task, ctx.storage, ctx.callback
    _keep_examples(ctx)
    if check_lm:  # a finished run has everything stored: no call to make
        callback.on_phase(f"checking the LM: {task.lm.model}")
        preflight(task.lm, ctx)
        if task.proposer_lm is not None and task.proposer_lm != task.lm:
            preflight(task.proposer_lm, ctx)
    scoring = Scoring(ctx)
    dev_scores = [e.score for e in storage.list_evaluations(run_id=ctx.run.id)
                  if e.split == Split.DEV and e.status == "complete" and e.score is not None]
    scoring.best_dev = max(dev_scores, default=None)
    seed, seed_dev = seed_and_evaluate(ctx, scoring)
    if not seed_dev.status.finished:
        _leave(storage, ctx.run.id, ctx.holder, RunStatus.STOPPED, ctx.stop_reason)
        raise Stopped(f"run {ctx.run.name} stopped before the seed program was scored: {ctx.stop_reason}")
    ctx.budget.hold(selection_reserve(ctx))  # a resumed run may have its finalists already
    view = StoreView(ctx, seed.id)
    loop = Loop(ctx, scoring, view)
    stages: list[tuple[Stage, BaseOptimizer]] = []
    working = True
    if task.search.space_levels:
        space = search_space(ctx, scoring, seed, seed_dev)
        if space is None:
            working = False
        else:
            ctx.demos, view.space = space.demos, space
    for stage in plan(task) if working else []:
        callback.on_phase(f"searching with {stage.optimizer}" if Level.AGENT not in stage.levels
                          else f"searching agent designs with {stage.optimizer}")
        stages.append((stage, make_optimizer(stage.optimizer, view)))
        if not loop.run_stage(*stages[-1]):
            working = False
            break
    if working:
        _drain(ctx, loop, stages)
    status = RunStatus.STOPPED if ctx.stop_reason else RunStatus.FINISHED
    reason = ctx.stop_reason or ctx.end_note or f"max_candidates={task.search.max_candidates} reached"
    finish(ctx, scoring, seed, status, reason)
    return result(ctx, seed, wall_s=time.perf_counter() - started)


def _run_worker(task: Task, storage: BaseStorage, run: RunRecord, callback: SearchCallback,
                splits: dict[str, list[LabelledExample]] | None = None) -> OptimizeResult:
    holder = worker_name()
    check_lm = run.status != RunStatus.FINISHED
    ordinal = storage.join_run(run.id, holder)
    run = storage.get_run(run.id) or run
    started = time.perf_counter()
    ctx: RunContext | None = None
    try:
        if splits is None:
            splits = {split: load_split(task, split) for split in (Split.TRAIN, Split.DEV)}
        ctx = RunContext(task, storage, run, callback, holder, ordinal, splits=splits)
        with _Heartbeat(ctx).running():
            return _work(ctx, started=started, check_lm=check_lm)
    except Stopped:
        raise
    except BudgetRefusal as refusal:  # a proposer's or the preflight's call found the budget spent
        _cancel(ctx)
        _book_failed_proposals(storage, run.id, refusal)
        _leave(storage, run.id, holder, RunStatus.STOPPED, f"budget {refusal.failure.message}")
        raise Stopped(f"run {run.name} stopped: budget {refusal.failure.message}") from None
    except KeyboardInterrupt:
        _cancel(ctx)
        _leave(storage, run.id, holder, RunStatus.INTERRUPTED, "interrupted by the user")
        raise
    except Terminated:
        _cancel(ctx)
        _leave(storage, run.id, holder, RunStatus.INTERRUPTED, "terminated (SIGTERM)")
        raise
    except BaseException as exc:
        _cancel(ctx)  # no worker thread still in flight starts another attempt
        failure = database_failure(exc, f"storage {storage.display_url!r} (the run's Optuna study)")
        reason = str(exc) if isinstance(exc, AgentSearchError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, LMUnavailableError):
            _book_failed_proposals(storage, run.id, exc)
        _leave(storage, run.id, holder, RunStatus.FAILED, str(failure) if failure else reason)
        if failure is not None:  # the user's database failed, not agentsearch: one line, no traceback
            raise failure from None
        raise
    finally:
        if ctx is not None:
            with contextlib.suppress(AgentSearchError):
                ctx.budget.close()
        with contextlib.suppress(AgentSearchError):
            storage.release_leases(holder)


def _cancel(ctx: RunContext | None) -> None:
    if ctx is not None:
        ctx.cancelled.set()


def _book_failed_proposals(storage: BaseStorage, run_id: int, exc: LMUnavailableError) -> None:
    spent = exc.usage  # a proposer's attempts: no example result keeps them
    if spent is not None and spent.lm_calls:
        with contextlib.suppress(AgentSearchError):
            storage.add_proposer_usage(run_id, spent.lm_calls, spent.tokens, spent.cost_usd)


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
    it; finished evaluations are read from the store, not recomputed. On PostgreSQL, a run another
    process is working on is joined: the workers share its candidates, budget and quota. ``storage``
    is resolved as by the CLI: the URL given, then ``$AGENTSEARCH_STORAGE``, then the task's
    ``storage``, then the default.

    Raises LMUnavailableError when the LM cannot be reached (the run is ``failed``; resuming it once
    the LM is back scores exactly what the outage left) and MetricError when the metric raises.
    """
    task = as_task(task).with_overrides(**{"search.max_candidates": max_candidates, "budget.max_lm_calls": max_lm_calls,
                                           "concurrency": concurrency, "seed": seed})
    if task.search.runs_llm_code:
        from agentsearch.evaluators import isolation

        isolation()  # fail closed: no sandbox, no run (IsolationUnavailableError, before anything is written)
    store = get_storage(storage if isinstance(storage, BaseStorage) else resolve_storage_url(storage, task.storage))
    run = open_run(store, task, run_name, resume)
    return _run_worker(task, store, run, callback or SearchCallback())


def work(run_name: str, *, storage: str | BaseStorage | None = None, concurrency: int | None = None,
         callback: SearchCallback | None = None) -> OptimizeResult:
    """Join an existing run as one more worker, with no task file: the task and the examples of every
    split come from the store (``agentsearch worker``)."""
    store = get_storage(storage if isinstance(storage, BaseStorage) else resolve_storage_url(storage))
    run = store.get_run(run_name)
    if run is None:
        raise AgentSearchError(f"no run {run_name!r} in {store.display_url}")
    task = task_of_run(run)
    if concurrency is not None:
        task = task.model_copy(update={"concurrency": concurrency})
    if task.search.runs_llm_code:
        from agentsearch.evaluators import isolation

        isolation()
    _continue_run(store, run, None)
    return _run_worker(task, store, run, callback or SearchCallback(), splits=stored_splits(store, run))


def task_of_run(run: RunRecord) -> Task:
    """The task a run started with, as stored (no data file is read: the examples are in the store)."""
    from agentsearch.lm._secrets import MASK

    task = Task.model_validate({**run.task, "base_dir": Path.cwd()})
    for config in (task.lm, task.proposer_lm):
        if config is not None and config.api_base and MASK in config.api_base:
            raise AgentSearchError(f"run {run.name!r}: the LM URL's password is not kept in the store; start this "
                                   f"worker with the task file (agentsearch optimize TASK --run {run.name})")
    return task


def stored_splits(storage: BaseStorage, run: RunRecord) -> dict[str, list[LabelledExample]]:
    splits: dict[str, list[LabelledExample]] = {}
    for record in storage.list_examples(run.id):
        example = dspy.Example({**record.inputs, **record.gold}).with_inputs(*record.inputs)
        splits.setdefault(record.split, []).append(LabelledExample(id=record.example_id, example=example))
    for split in (Split.TRAIN, Split.DEV):
        if not splits.get(split):
            raise AgentSearchError(f"run {run.name!r} keeps no {split} examples in the store; start this worker "
                                   f"with the task file (agentsearch optimize TASK --run {run.name})")
    return splits
