"""The experiment store's contract and the frozen records it returns.

Implementations must be safe to call from several threads. Finished evaluations are immutable:
once ``complete_evaluation`` has run (complete or pruned), its per-example results and aggregate never change, which is
what lets a resumed run trust them instead of paying for them again.
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

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    """A budget ended it; resumable with a larger one."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or SIGTERM; resumable."""
    FAILED = "failed"
    """An LM outage, a metric that raised, a storage error: see stop_reason; resumable once fixed."""


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


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    task_name: str
    status: str
    """A RunStatus value."""
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
        return age is None or age > STALE_AFTER_S or not _owner_alive(self.owner)


def current_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    """False only when the owner ran on this host and its pid is gone; another host's is taken as alive."""
    host, _, pid = (owner or "").rpartition(":")
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
    level: str
    optimizer: str
    parents: tuple[int, ...]
    trial_number: int | None
    status: str  # pending | complete | pruned | failed (would not run; see note)
    note: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    candidate_id: int
    split: str
    status: str  # running | complete | pruned (stopped early: it could not beat the best; see note)
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
    def set_run_space(self, run_id: int, space: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_run_status(self, run_id: int, status: str, stop_reason: str | None = None) -> None: ...

    @abc.abstractmethod
    def add_proposer_usage(self, run_id: int, lm_calls: int, tokens: int, cost_usd: float) -> None: ...

    @abc.abstractmethod
    def add_unscored_usage(self, run_id: int, lm_calls: int, tokens: int) -> None:
        """Count attempts spent on examples left unscored by an LM outage (the budget sees them)."""

    @abc.abstractmethod
    def heartbeat(self, run_id: int) -> None:
        """Record that the run's process is alive now."""

    @abc.abstractmethod
    def run_usage(self, run_id: int) -> RunUsage: ...

    # examples
    @abc.abstractmethod
    def add_examples(self, run_id: int, split: str, examples: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """Keep a split's examples (id, inputs, gold) with the run; those already kept are left as they are."""

    @abc.abstractmethod
    def list_examples(self, run_id: int, split: str | None = None) -> list[ExampleRecord]: ...

    # candidates
    @abc.abstractmethod
    def create_candidate(
        self, run_id: int, spec: dict[str, Any], spec_hash: str, *, level: str, optimizer: str,
        parents: tuple[int, ...] = (), trial_number: int | None = None,
    ) -> CandidateRecord: ...

    @abc.abstractmethod
    def set_candidate_status(self, candidate_id: int, status: str, *, note: str | None = None) -> None: ...

    @abc.abstractmethod
    def get_candidate(self, candidate_id: int) -> CandidateRecord | None: ...

    @abc.abstractmethod
    def list_candidates(self, run_id: int) -> list[CandidateRecord]: ...

    @abc.abstractmethod
    def best_candidates(self, run_id: int, limit: int) -> list[CandidateRecord]:
        """At most ``limit`` candidates, best complete dev score first (ties by number), then those without one.

        A query, not a scan: a long run holds thousands of candidates and a table shows a few."""

    # evaluations
    @abc.abstractmethod
    def get_or_create_evaluation(self, candidate_id: int, split: str) -> EvaluationRecord: ...

    @abc.abstractmethod
    def list_evaluations(self, *, run_id: int | None = None, candidate_id: int | None = None) -> list[EvaluationRecord]: ...

    @abc.abstractmethod
    def add_example_results(self, evaluation_id: int, outcomes: Sequence[ExampleOutcome]) -> None:
        """Store the outcomes all at once (one transaction): a run hands over those that finished together."""

    @abc.abstractmethod
    def list_example_results(self, evaluation_id: int) -> list[ExampleResultRecord]: ...

    @abc.abstractmethod
    def complete_evaluation(self, evaluation_id: int, wall_s: float, *, pruned_because: str | None = None) -> EvaluationRecord:
        """Aggregate the stored example results and close the evaluation, as ``pruned`` when a reason is given."""
