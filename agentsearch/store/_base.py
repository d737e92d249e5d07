"""The experiment store's contract and the frozen records it returns.

The contract every implementation keeps, and the run loop relies on:

- **Threads and processes.** Every method is safe to call from several threads of one process and,
  on a database that serves several processes (PostgreSQL), from several processes on several
  machines at once. Each method is one transaction: it happens entirely or not at all. SQLite
  serves one process (the run loop refuses a second process on a SQLite run, see ``run``).
- **Immutable results.** Once ``complete_evaluation`` has run (complete or pruned), an evaluation's
  per-example results and aggregate never change, which is what lets a resumed run or another
  worker trust them instead of paying for them again; ``add_example_results`` refuses to add to it,
  and refuses an example already stored (no example result is ever stored twice).
- **Set once.** A run's space (``set_run_space``), its seed (candidate number 0) and candidate
  numbers are decided by the store, atomically: the first writer wins and every later caller gets
  what the first wrote. Numbers are dense from 0 in creation order.
- **Counters.** Quotas (``create_candidate(limit=...)``), the LM-call budget (``reserve_lm_calls``)
  and worker ordinals (``join_run``) are counters the store increments atomically, never a
  snapshot a process read earlier.
- **Leases.** A lease (``acquire_lease``) is held by one worker until it expires, is released, or its
  holder is known dead; the heartbeat renews a worker's leases. A pending candidate is claimed by
  taking its lease (``claim_candidate``), so two workers never evaluate the same candidate at once.
  Leases compare times from the workers' clocks: machines sharing a run keep them in sync (NTP).
- **Missing ids.** A read of a missing id returns None (``get_run``, ``get_candidate``) or an
  empty list; a write to a missing id raises StorageError, never passes silently.
- **Ordering.** Lists come in creation order: runs and evaluations by id, candidates by number,
  example results in the order they were stored; ``best_candidates`` best first.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentsearch.exceptions import AgentSearchError

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    """A budget ended it; resumable with a larger one."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM; resumable."""
    FAILED = "failed"
    """An LM outage, a metric that raised, a storage error: see stop_reason; resumable once fixed."""


class CandidateStatus(enum.StrEnum):
    PENDING = "pending"
    """Created; its dev evaluation has not ended (a worker holding its lease is on it, or nobody is)."""
    COMPLETE = "complete"
    PRUNED = "pruned"
    """Its dev evaluation was stopped early: it could not beat the best."""
    FAILED = "failed"
    """It would not run (a design that failed its smoke test); see its note."""

    @property
    def ended(self) -> bool:
        return self is not CandidateStatus.PENDING


class EvaluationStatus(enum.StrEnum):
    RUNNING = "running"
    """Open: a budget, a crash or a worker's death may leave it so; the next one to evaluate continues it."""
    COMPLETE = "complete"
    PRUNED = "pruned"

    @property
    def finished(self) -> bool:
        return self is not EvaluationStatus.RUNNING


class Level(enum.StrEnum):
    """The level of the design a candidate changes."""

    PROMPT = "prompt"
    """One Predict node: instructions, demos, format."""
    MODULE = "module"
    """Reasoning modules and how they are wired."""
    AGENT = "agent"
    """A whole agent program written by the meta agent."""


class Split(enum.StrEnum):
    TRAIN = "train"
    DEV = "dev"
    TEST = "test"
    SELECT = "select"
    """Train examples held out of demos and proposals (``search.holdout``): the finalists are
    re-scored on them before the best is chosen."""


DEFAULT_STORAGE = "sqlite:///agentsearch.db"
"""Where runs go when neither --storage, $AGENTSEARCH_STORAGE nor the task file names a database."""
STORAGE_ENV = "AGENTSEARCH_STORAGE"


def resolve_storage_url(explicit: str | None = None, task_storage: str | None = None) -> str:
    """The one rule for every command and ``agentsearch.optimize``: the URL given, then the environment,
    then the task file's ``storage``, then the default."""
    return explicit or os.environ.get(STORAGE_ENV) or task_storage or DEFAULT_STORAGE


HEARTBEAT_S = 10.0
"""How often a running search writes ``heartbeat_at``."""
STALE_AFTER_S = 60.0
"""A ``running`` run whose heartbeat is older than this has lost its process."""
CANDIDATE_LEASE = "candidate:"
"""Lease names: ``candidate:<id>`` is a claim on a pending candidate, ``worker:<holder>`` a worker's presence."""
WORKER_LEASE = "worker:"
LEASE_S = 60.0
"""How long a lease lasts without renewal; the heartbeat renews it every HEARTBEAT_S."""


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    task_name: str
    status: RunStatus
    stop_reason: str | None
    task: dict[str, Any]
    """The task as started, with secrets masked (passwords in URLs)."""
    space: dict[str, Any] | None
    proposer_lm_calls: int
    proposer_tokens: int
    proposer_cost_usd: float
    created_at: dt.datetime
    finished_at: dt.datetime | None
    unscored_lm_calls: int = 0
    """LM attempts spent on examples an LM outage left unscored: budgeted, yet in no result row."""
    unscored_tokens: int = 0
    heartbeat_at: dt.datetime | None = None
    owner: str | None = None
    """``host:pid`` of the process that last drove the run."""
    reserved_lm_calls: int = 0
    """LM calls the run's workers reserved from ``budget.max_lm_calls`` (spent, or in flight)."""
    counted_candidates: int = 0
    """Candidates counted against ``search.max_candidates`` (a design's repairs are not)."""

    def seconds_since_heartbeat(self, now: dt.datetime | None = None) -> float | None:
        if self.heartbeat_at is None:
            return None
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return (now - self.heartbeat_at).total_seconds()

    @property
    def lost(self) -> bool:
        """``running`` in the store, but its process is gone (kill -9, a crash, a reboot): its heartbeat
        is stale, or it ran on this host and no process has its pid any more."""
        if self.status != RunStatus.RUNNING:
            return False
        age = self.seconds_since_heartbeat()
        return age is None or age > STALE_AFTER_S or not holder_alive(self.owner)


def current_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(holder: str | None) -> bool:
    """False only when ``holder`` (``host:pid`` or ``host:pid:tag``) ran on this host and its pid is gone;
    another host's is taken as alive until its lease or heartbeat runs out."""
    host, _, pid = (holder or "").partition(":")
    pid = pid.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@dataclass(frozen=True)
class CandidateRecord:
    id: int
    run_id: int
    number: int
    spec: dict[str, Any]
    spec_hash: str
    level: Level
    optimizer: str
    parents: tuple[int, ...]
    trial_number: int | None
    status: CandidateStatus
    note: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    candidate_id: int
    split: Split
    status: EvaluationStatus
    score: float | None
    """Mean over the ``n`` examples scored (all of the split unless pruned)."""
    n: int
    n_errors: int
    lm_calls: int
    tokens: int
    cost_usd: float
    wall_s: float
    note: str | None
    """Why a pruned evaluation was stopped."""
    created_at: dt.datetime
    finished_at: dt.datetime | None
    top_error: str | None = None
    """The most common error text among its examples (set when it completes)."""
    top_error_count: int = 0


@dataclass(frozen=True)
class ExampleRecord:
    """One example of a run's data, as the run saw it: what the store needs to show a failure alone."""

    run_id: int
    split: str
    example_id: str
    inputs: dict[str, Any]
    gold: dict[str, Any]


@dataclass(frozen=True)
class ExampleResultRecord:
    evaluation_id: int
    example_id: str
    prediction: dict[str, Any] | None
    score: float
    error: str | None
    lm_calls: int
    """Calls paid for (DSPy's cache answered the others)."""
    program_calls: int
    """Calls the program made, cached ones included: its cost per input, whatever ran before it."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float


@dataclass(frozen=True)
class RunUsage:
    lm_calls: int
    tokens: int
    cost_usd: float


class DuplicateCandidate(AgentSearchError):
    """``create_candidate(unique=True)`` found the spec in the run: ``twin`` is the candidate holding it."""

    def __init__(self, twin: CandidateRecord) -> None:
        super().__init__(f"the run already holds this spec as candidate #{twin.number}")
        self.twin = twin


class BaseStorage(abc.ABC):
    """Where runs, candidates, evaluations and per-example results live."""

    url: str

    @property
    def display_url(self) -> str:
        """The URL with its password masked: the only form that may be printed or stored."""
        from agentsearch.lm._secrets import mask_url

        return mask_url(self.url)

    # runs
    @abc.abstractmethod
    def create_run(self, name: str, task_name: str, task: dict[str, Any], *, unique: bool = False) -> RunRecord:
        """A new run. With ``unique``, a name another process took first gets a suffix (``name~2``, ...),
        decided inside the inserting transaction; without it, a taken name raises StorageError."""

    @abc.abstractmethod
    def get_run(self, name_or_id: str | int) -> RunRecord | None: ...

    @abc.abstractmethod
    def list_runs(self) -> list[RunRecord]: ...

    @abc.abstractmethod
    def set_run_space(self, run_id: int, space: dict[str, Any]) -> dict[str, Any]:
        """Keep the run's search space, unless one is kept already: returns the space kept (set once)."""

    @abc.abstractmethod
    def set_run_status(self, run_id: int, status: str, stop_reason: str | None = None) -> None: ...

    @abc.abstractmethod
    def add_proposer_usage(self, run_id: int, lm_calls: int, tokens: int, cost_usd: float) -> None: ...

    @abc.abstractmethod
    def add_unscored_usage(self, run_id: int, lm_calls: int, tokens: int) -> None:
        """Count attempts spent on examples left unscored by an LM outage (the budget sees them)."""

    @abc.abstractmethod
    def add_run_note(self, run_id: int, source: str, text: str) -> None:
        """Keep a note ``source`` (an optimizer's name) wants for the rest of the run, whichever process
        reads it next; raises StorageError for a missing run."""

    @abc.abstractmethod
    def list_run_notes(self, run_id: int, source: str, *, last: int | None = None) -> list[str]:
        """The run's notes from ``source`` in the order they were kept (only the ``last`` ones); [] for a
        missing run."""

    @abc.abstractmethod
    def heartbeat(self, run_id: int, holder: str | None = None, lease_s: float = LEASE_S) -> None:
        """Record that a worker of the run is alive now (it becomes the run's ``owner``), and renew the
        leases ``holder`` holds."""

    @abc.abstractmethod
    def run_usage(self, run_id: int) -> RunUsage: ...

    # examples
    @abc.abstractmethod
    def add_examples(self, run_id: int, split: str, examples: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """Keep a split's examples (id, inputs, gold) with the run; those already kept are left as they are."""

    @abc.abstractmethod
    def list_examples(self, run_id: int, split: str | None = None) -> list[ExampleRecord]: ...

    # workers
    @abc.abstractmethod
    def join_run(self, run_id: int, holder: str) -> int:
        """Join the run as a worker; returns the worker's ordinal (0 for the first).

        When the run is not ``running``, or is running but lost (no live worker), the caller (re)starts
        it: status ``running``, ordinals start again at 0, and the LM calls reserved are set back to
        those actually spent (reservations of dead workers are returned)."""

    @abc.abstractmethod
    def live_workers(self, run_id: int) -> list[str]:
        """Holders of the run's live ``worker:`` leases (workers that joined and have not left)."""

    # leases
    @abc.abstractmethod
    def live_leases(self, run_id: int, prefix: str = "") -> dict[str, str]:
        """The run's live leases whose name starts with ``prefix``: name -> holder."""

    @abc.abstractmethod
    def release_leases(self, holder: str) -> None:
        """Give up every lease ``holder`` holds (a worker leaving)."""

    @abc.abstractmethod
    def acquire_lease(self, run_id: int, name: str, holder: str, lease_s: float) -> bool:
        """Take the lease ``name`` of the run for ``lease_s`` seconds: True when it is free, expired, held
        by a holder known dead, or already ``holder``'s (then renewed). Atomic across processes."""

    @abc.abstractmethod
    def lease_holder(self, run_id: int, name: str) -> str | None:
        """Who holds a live lease ``name`` now, or None."""

    @abc.abstractmethod
    def renew_leases(self, holder: str, lease_s: float) -> int:
        """Extend every lease ``holder`` holds (any run) to ``lease_s`` from now; returns how many."""

    @abc.abstractmethod
    def release_lease(self, run_id: int, name: str, holder: str) -> None:
        """Give up a lease; one held by someone else is left alone."""

    # budget
    @abc.abstractmethod
    def reserve_lm_calls(self, run_id: int, wanted: int, limit: int) -> int:
        """Reserve up to ``wanted`` LM calls of a budget of ``limit``: how many were granted (0 when used up).

        Atomic: the run's reserved total never exceeds ``limit`` however many workers reserve at once."""

    @abc.abstractmethod
    def release_lm_calls(self, run_id: int, count: int) -> None:
        """Return reserved calls that were not made."""

    # candidates
    @abc.abstractmethod
    def create_candidate(
        self, run_id: int, spec: dict[str, Any], spec_hash: str, *, level: str, optimizer: str,
        parents: tuple[int, ...] = (), trial_number: int | None = None, limit: int | None = None,
        counted: bool = True, holder: str | None = None, lease_s: float = LEASE_S, unique: bool = False,
    ) -> CandidateRecord | None:
        """A new pending candidate with the run's next number.

        ``counted`` candidates count against ``limit``: None (no candidate created) when the run
        already counts ``limit``. With ``holder``, the candidate is created claimed by it (its lease
        ``candidate:<id>``). With ``unique``, a spec the run already holds is not created again:
        DuplicateCandidate carries the candidate that has it (checked in the same atomic step as
        the number, so workers racing to one proposal create it once)."""

    @abc.abstractmethod
    def seed_candidate(self, run_id: int, spec: dict[str, Any], spec_hash: str) -> CandidateRecord:
        """Candidate number 0, created by the first caller; every caller gets the same record."""

    @abc.abstractmethod
    def claim_candidate(self, run_id: int, holder: str, lease_s: float, *,
                        levels: Sequence[str] | None = None) -> CandidateRecord | None:
        """Claim the oldest pending candidate (of ``levels``) nobody holds a live lease on (``holder``
        included: a worker is never handed back what it holds), or None."""

    @abc.abstractmethod
    def set_candidate_status(self, candidate_id: int, status: str, *, note: str | None = None) -> None: ...

    @abc.abstractmethod
    def set_candidate_trial(self, candidate_id: int, trial_number: int) -> None:
        """Record the Optuna trial that stands for a candidate created before its study (the seed's
        trial 0). Idempotent; a missing id raises StorageError."""

    @abc.abstractmethod
    def get_candidate(self, candidate_id: int) -> CandidateRecord | None: ...

    @abc.abstractmethod
    def list_candidates(self, run_id: int, *, after_number: int = -1,
                        ids: Sequence[int] | None = None) -> list[CandidateRecord]:
        """The run's candidates numbered above ``after_number`` (or those of ``ids``), by number: a loop
        reads what is new since it last looked, not the whole run again."""

    @abc.abstractmethod
    def best_candidates(self, run_id: int, limit: int) -> list[CandidateRecord]:
        """At most ``limit`` candidates, best complete dev score first (ties by number), then those without one.

        A query, not a scan: a long run holds thousands of candidates and a table shows a few."""

    # evaluations
    @abc.abstractmethod
    def get_or_create_evaluation(self, candidate_id: int, split: str) -> EvaluationRecord: ...

    @abc.abstractmethod
    def list_evaluations(self, *, run_id: int | None = None, candidate_id: int | None = None,
                         candidate_ids: Sequence[int] | None = None) -> list[EvaluationRecord]: ...

    @abc.abstractmethod
    def add_example_results(self, evaluation_id: int, outcomes: Sequence[ExampleOutcome]) -> None:
        """Store the outcomes all at once (one transaction): a run hands over those that finished together.

        An example already stored for the evaluation raises StorageError and stores nothing."""

    @abc.abstractmethod
    def list_example_results(self, evaluation_id: int) -> list[ExampleResultRecord]: ...

    @abc.abstractmethod
    def complete_evaluation(self, evaluation_id: int, wall_s: float, *, pruned_because: str | None = None) -> EvaluationRecord:
        """Aggregate the stored example results and close the evaluation, as ``pruned`` when a reason is given."""
