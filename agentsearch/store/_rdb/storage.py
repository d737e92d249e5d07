"""The SQLAlchemy storage: SQLite (one process, WAL) or PostgreSQL (several workers).

All SQLAlchemy use stays in this package. Sessions are opened by ``_session``, which commits,
rolls back, and turns database errors into StorageError; callers get frozen records, never rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agentsearch.exceptions import StorageError
from agentsearch.lm._secrets import redact_secrets
from agentsearch.store._base import (
    CANDIDATE_LEASE,
    LEASE_S,
    WORKER_LEASE,
    BaseStorage,
    CandidateRecord,
    CandidateStatus,
    DuplicateCandidate,
    EvaluationRecord,
    EvaluationStatus,
    ExampleRecord,
    ExampleResultRecord,
    Level,
    RunRecord,
    RunStatus,
    RunUsage,
    Split,
    current_owner,
    holder_alive,
)
from agentsearch.store._rdb.models import (
    CandidateModel,
    EvaluationModel,
    ExampleModel,
    ExampleResultModel,
    LeaseModel,
    RunModel,
    RunNoteModel,
    utcnow,
)

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome

_Row = TypeVar("_Row", RunModel, CandidateModel, EvaluationModel)

VERSION_TABLE = "agentsearch_alembic_version"  # Optuna's tables (and its alembic_version) share the database
_MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MAX_NAME_SUFFIX = 1000
GIST_CHARS = 200


def error_gist(error: str) -> str:
    """An error's first line, cut short: errors of one kind that quote different answers still count together."""
    first = error.strip().splitlines()[0] if error.strip() else error
    return first[:GIST_CHARS].strip()


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StorageError(f"no migrations found in {_MIGRATIONS}")
    return head


def _current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade_schema(engine: Engine) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")


def _enable_sqlite_wal(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout")
        timeout = cursor.fetchone()[0]
        cursor.close()
        if mode.lower() not in ("wal", "memory") or int(timeout) != SQLITE_BUSY_TIMEOUT_MS:
            raise StorageError(f"SQLite refused WAL mode or the busy timeout (journal_mode={mode}, busy_timeout={timeout})")
        # pysqlite starts transactions itself, late and not around SAVEPOINT; SQLAlchemy's documented
        # fix: the driver starts none, and each transaction begins here, taking SQLite's write lock
        # at once (IMMEDIATE), so two connections never both read and then wait on each other to write.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


CONNECT_PATIENCE_S = 120.0
"""How long a worker waits for a PostgreSQL server that refuses connections for being full."""


def server_full(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a connection because every slot is taken (it will pass)."""
    return "too many clients" in str(exc)


def patient_connections(engine: Engine) -> None:
    """Connect again, with backoff, while the server says it has too many clients: many workers
    starting at once briefly want more connections than a server allows, and each wants few."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + CONNECT_PATIENCE_S
        delay = 0.05
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if not server_full(exc) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def database_failure(exc: BaseException, where: str) -> StorageError | None:
    """A database error that reached us through another library on the run's database (Optuna's
    study storage), as the store's own one-line error; None for anything else."""
    import optuna

    if isinstance(exc, optuna.exceptions.StorageInternalError) and isinstance(exc.__cause__, SQLAlchemyError):
        exc = exc.__cause__
    if not isinstance(exc, SQLAlchemyError | optuna.exceptions.StorageInternalError):
        return None
    lines = str(exc).splitlines() or [type(exc).__name__]
    return StorageError(f"{where}: {redact_secrets(lines[0])}")


_EVALUATION_STATUS = select(EvaluationModel.status).where(EvaluationModel.id == bindparam("id"))
_INSERT_RESULT = insert(ExampleResultModel)
"""Built once: building a statement costs more CPU than SQLite takes to run it."""


BACKENDS = ("sqlite", "postgresql")
"""The databases the store runs on (a URL's backend, before any ``+driver``)."""


def storage_url_problem(url: str) -> str | None:
    """What is wrong with a storage URL, in one line, or None: checked before anything connects (and by
    ``validate``), where SQLAlchemy would say "Can't load plugin: sqlalchemy.dialects:sqlit" or list
    five URL forms."""
    problem = _url_problem(url)
    return None if problem is None else redact_secrets(problem)  # the URL is quoted: its password is not


def _url_problem(url: str) -> str | None:
    import difflib
    from importlib.util import find_spec

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    forms = "sqlite:///file.db (one process) or postgresql+psycopg://user@host/db (many workers)"
    try:
        parsed = make_url(url)
    except ArgumentError:
        if url.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in url:
            return f"{url!r} is a file name, not a URL: write sqlite:///{url}"
        return f"{url!r} is not a database URL: write {forms}"
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        close = difflib.get_close_matches(backend, BACKENDS, n=1, cutoff=0.6)
        fixed = url.replace(backend, close[0], 1) if close else None
        hint = f"did you mean {fixed}?" if fixed else f"write {forms}"
        return f"{url!r}: unknown database {backend!r}; {hint}"
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        named = url.split("://", 1)[1].split("?", 1)[0]
        if named and not named.startswith("/"):  # sqlite://x.db: the file read as a host
            return (f"{url!r} names no file (SQLite URLs take three slashes, four for an absolute path): "
                    f"write sqlite:///{named}")
        return f"{url!r} is an in-memory database: a run would be lost when it ends; name a file, sqlite:///file.db"
    if backend == "postgresql" and parsed.get_driver_name() == "psycopg2" and find_spec("psycopg2") is None:
        return f"{url!r} asks for the psycopg2 driver, which is not installed: write postgresql+psycopg://…"
    return None


class RDBStorage(BaseStorage):
    """Opens (and on first use creates) the schema; an older schema asks for ``agentsearch db upgrade``."""

    def __init__(self, url: str, *, upgrade: bool = False) -> None:
        self.url = url
        problem = storage_url_problem(url)
        if problem is not None:
            raise StorageError(f"storage: {redact_secrets(problem)}")
        try:
            # A worker uses one connection at a time, and its heartbeat another now and then: a small pool
            # lets a PostgreSQL server's connection limit serve many workers (one or two each).
            # Optuna's study storage takes one more, so a worker holds at most three (see README).
            pool = {} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 1, "pool_timeout": 120}
            # a pre-ping finds a PostgreSQL connection the server dropped; a SQLite file has none to drop
            self.engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"), **pool)
            patient_connections(self.engine)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StorageError(f"cannot open storage {self.display_url!r}: {redact_secrets(str(exc))}") from None
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_wal(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()
        try:
            self._check_schema(upgrade)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open storage {self.display_url!r}: "
                               f"{redact_secrets(str(exc).splitlines()[0])}") from None

    def _check_schema(self, upgrade: bool) -> None:
        current = _current_revision(self.engine)
        head = _head_revision()
        if current == head:
            return
        if current is None or upgrade:  # a new database (or one another process is creating right now)
            try:
                upgrade_schema(self.engine)
            except SQLAlchemyError:
                # Another process opening the same new database got there first; wait for it to finish.
                if not self._wait_for_revision(head):
                    raise
            return
        raise StorageError(
            f"storage {self.display_url!r} has schema revision {current}, this agentsearch needs {head}: "
            f"run `agentsearch db upgrade --storage {self.display_url}`"
        )

    def _wait_for_revision(self, revision: str, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if _current_revision(self.engine) == revision:
                    return True
            except SQLAlchemyError:
                pass
            time.sleep(0.1)
        return False

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(f"storage {self.display_url!r}: {redact_secrets(str(exc).splitlines()[0])}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # records ---------------------------------------------------------------------------------
    @staticmethod
    def _run(row: RunModel) -> RunRecord:
        return RunRecord(
            id=row.id, name=row.name, task_name=row.task_name, status=RunStatus(row.status), stop_reason=row.stop_reason,
            task=row.task, space=row.space, proposer_lm_calls=row.proposer_lm_calls,
            proposer_tokens=row.proposer_tokens, proposer_cost_usd=row.proposer_cost_usd,
            created_at=row.created_at, finished_at=row.finished_at, unscored_lm_calls=row.unscored_lm_calls or 0,
            unscored_tokens=row.unscored_tokens or 0, heartbeat_at=row.heartbeat_at, owner=row.owner,
            reserved_lm_calls=row.reserved_lm_calls or 0, counted_candidates=row.counted_candidates or 0,
        )

    @staticmethod
    def _candidate(row: CandidateModel) -> CandidateRecord:
        return CandidateRecord(
            id=row.id, run_id=row.run_id, number=row.number, spec=row.spec, spec_hash=row.spec_hash,
            level=Level(row.level), optimizer=row.optimizer, parents=tuple(row.parents or ()),
            trial_number=row.trial_number, status=CandidateStatus(row.status), note=row.note, created_at=row.created_at,
            finished_at=row.finished_at,
        )

    @staticmethod
    def _evaluation(row: EvaluationModel) -> EvaluationRecord:
        return EvaluationRecord(
            id=row.id, candidate_id=row.candidate_id, split=Split(row.split), status=EvaluationStatus(row.status),
            score=row.score,
            n=row.n, n_errors=row.n_errors, lm_calls=row.lm_calls, tokens=row.tokens, cost_usd=row.cost_usd,
            wall_s=row.wall_s, note=row.note, created_at=row.created_at, finished_at=row.finished_at,
            top_error=row.top_error, top_error_count=row.top_error_count or 0,
        )

    @staticmethod
    def _example(row: ExampleResultModel) -> ExampleResultRecord:
        return ExampleResultRecord(
            evaluation_id=row.evaluation_id, example_id=row.example_id, prediction=row.prediction, score=row.score,
            error=row.error, lm_calls=row.lm_calls, program_calls=row.program_calls, prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens, cost_usd=row.cost_usd, latency_s=row.latency_s,
        )

    # runs ------------------------------------------------------------------------------------
    def create_run(self, name: str, task_name: str, task: dict[str, Any], *, unique: bool = False) -> RunRecord:
        with self._session() as session:
            for suffix in range(1, MAX_NAME_SUFFIX + 1):
                candidate = name if suffix == 1 else f"{name}~{suffix}"
                row = RunModel(name=candidate, task_name=task_name, status=RunStatus.RUNNING.value, task=task,
                               space=None, proposer_lm_calls=0, proposer_tokens=0, proposer_cost_usd=0.0,
                               unscored_lm_calls=0, unscored_tokens=0, heartbeat_at=utcnow(), owner=current_owner(),
                               counted_candidates=0, reserved_lm_calls=0, workers_joined=0)
                try:
                    with session.begin_nested():  # a savepoint: PostgreSQL's transaction survives the conflict
                        session.add(row)
                        session.flush()
                except IntegrityError:
                    if not unique:
                        raise StorageError(f"a run named {name!r} already exists in {self.display_url}") from None
                    continue
                return self._run(row)
            raise StorageError(f"no free run name after {name!r}~{MAX_NAME_SUFFIX}")

    def get_run(self, name_or_id: str | int) -> RunRecord | None:
        with self._session() as session:
            row = session.scalar(select(RunModel).where(RunModel.name == str(name_or_id)))
            if row is None and str(name_or_id).isdigit():
                row = session.get(RunModel, int(name_or_id))
            return None if row is None else self._run(row)

    def list_runs(self) -> list[RunRecord]:
        with self._session() as session:
            return [self._run(row) for row in session.scalars(select(RunModel).order_by(RunModel.id))]

    @staticmethod
    def _existing(session: Session, model: type[_Row], row_id: int) -> _Row:
        """The row, or StorageError naming what is missing: a write to a missing id never passes silently."""
        row = session.get(model, row_id)
        if row is None:
            raise StorageError(f"{model.__tablename__.rstrip('s')} {row_id} does not exist")
        return row

    def _update_run(self, run_id: int, **values: Any) -> None:
        with self._session() as session:
            row = self._existing(session, RunModel, run_id)
            for key, value in values.items():
                setattr(row, key, value)

    def set_run_space(self, run_id: int, space: dict[str, Any]) -> dict[str, Any]:
        with self._write_lock, self._session() as session:
            row = self._lock_run(session, run_id)  # read and write under the row's lock: the first writer wins
            if row.space is None:
                row.space = space
            return row.space

    def set_run_status(self, run_id: int, status: str, stop_reason: str | None = None) -> None:
        running = status == RunStatus.RUNNING
        owner = {"owner": current_owner()} if running else {}  # the process that (re)starts it drives it now
        self._update_run(run_id, status=RunStatus(status).value, stop_reason=stop_reason,
                         finished_at=None if running else utcnow(), heartbeat_at=utcnow(), **owner)

    def heartbeat(self, run_id: int, holder: str | None = None, lease_s: float = LEASE_S) -> None:
        self._update_run(run_id, heartbeat_at=utcnow(), owner=current_owner())
        if holder is not None:
            self.renew_leases(holder, lease_s)

    @staticmethod
    def _lock_run(session: Session, run_id: int) -> RunModel:
        """The run's row, locked for this transaction: a write first (SQLite takes its write lock,
        PostgreSQL the row's), then the read, so no other writer slips in between."""
        session.execute(update(RunModel).where(RunModel.id == run_id).values(workers_joined=RunModel.workers_joined))
        row = session.get(RunModel, run_id, populate_existing=True)
        if row is None:
            raise StorageError(f"run {run_id} does not exist")
        return row

    # workers ---------------------------------------------------------------------------------
    def join_run(self, run_id: int, holder: str) -> int:
        with self._write_lock, self._session() as session:
            row = self._lock_run(session, run_id)
            if not self._live_holders(session, run_id, WORKER_LEASE):  # the first worker (re)starts the run
                spent = self._spent_calls(session, row)
                row.status, row.stop_reason, row.finished_at = RunStatus.RUNNING.value, None, None
                row.workers_joined, row.reserved_lm_calls = 0, spent
                session.execute(delete(LeaseModel).where(LeaseModel.run_id == run_id,
                                                         LeaseModel.name.like(f"{WORKER_LEASE}%")))
            ordinal = row.workers_joined
            row.workers_joined = ordinal + 1
            row.heartbeat_at, row.owner = utcnow(), current_owner()
            session.flush()
            self._take(session, run_id, f"{WORKER_LEASE}{holder}", holder, LEASE_S)
            return ordinal

    def live_workers(self, run_id: int) -> list[str]:
        with self._session() as session:
            return self._live_holders(session, run_id, WORKER_LEASE)

    def live_leases(self, run_id: int, prefix: str = "") -> dict[str, str]:
        with self._session() as session:
            return self._live(session, run_id, prefix)

    @staticmethod
    def _live(session: Session, run_id: int, prefix: str) -> dict[str, str]:
        rows = session.execute(select(LeaseModel.name, LeaseModel.holder, LeaseModel.expires_at).where(
            LeaseModel.run_id == run_id, LeaseModel.name.like(f"{prefix}%"))).all()
        now = utcnow()
        return {name: holder for name, holder, expires in rows if expires > now and holder_alive(holder)}

    def _live_holders(self, session: Session, run_id: int, prefix: str) -> list[str]:
        return sorted(set(self._live(session, run_id, prefix).values()))

    def release_leases(self, holder: str) -> None:
        with self._session() as session:
            session.execute(delete(LeaseModel).where(LeaseModel.holder == holder))

    # leases ----------------------------------------------------------------------------------
    @staticmethod
    def _take(session: Session, run_id: int, name: str, holder: str, lease_s: float) -> bool:
        """Take or renew the lease inside the session's transaction: an update where it is free to take,
        else an insert that a unique key lets only one writer make."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=lease_s)
        current = session.execute(select(LeaseModel.holder, LeaseModel.expires_at).where(
            LeaseModel.run_id == run_id, LeaseModel.name == name)).first()
        if current is not None:
            taken_from, was_expiring = current
            if taken_from != holder and was_expiring > now and holder_alive(taken_from):
                return False
            # compare-and-set on what was read: a holder that renewed meanwhile keeps its lease
            changed = session.execute(update(LeaseModel).where(
                LeaseModel.run_id == run_id, LeaseModel.name == name, LeaseModel.holder == taken_from,
                LeaseModel.expires_at == was_expiring).values(holder=holder, expires_at=expires))
            return bool(cast(CursorResult, changed).rowcount)
        try:
            with session.begin_nested():
                session.execute(insert(LeaseModel).values(run_id=run_id, name=name, holder=holder, expires_at=expires))
        except IntegrityError:
            return False
        return True

    def acquire_lease(self, run_id: int, name: str, holder: str, lease_s: float) -> bool:
        with self._session() as session:
            return self._take(session, run_id, name, holder, lease_s)

    def lease_holder(self, run_id: int, name: str) -> str | None:
        with self._session() as session:
            row = session.execute(select(LeaseModel.holder, LeaseModel.expires_at).where(
                LeaseModel.run_id == run_id, LeaseModel.name == name)).first()
        if row is None or row[1] <= utcnow() or not holder_alive(row[0]):
            return None
        return row[0]

    def renew_leases(self, holder: str, lease_s: float) -> int:
        with self._session() as session:
            renewed = session.execute(update(LeaseModel).where(LeaseModel.holder == holder).values(
                expires_at=utcnow() + dt.timedelta(seconds=lease_s)))
            return cast(CursorResult, renewed).rowcount

    def release_lease(self, run_id: int, name: str, holder: str) -> None:
        with self._session() as session:
            session.execute(delete(LeaseModel).where(LeaseModel.run_id == run_id, LeaseModel.name == name,
                                                     LeaseModel.holder == holder))

    # budget ----------------------------------------------------------------------------------
    def reserve_lm_calls(self, run_id: int, wanted: int, limit: int) -> int:
        with self._session() as session:
            row = self._lock_run(session, run_id)
            granted = max(0, min(wanted, limit - (row.reserved_lm_calls or 0)))
            row.reserved_lm_calls = (row.reserved_lm_calls or 0) + granted
            return granted

    def release_lm_calls(self, run_id: int, count: int) -> None:
        if count <= 0:
            return
        with self._session() as session:
            session.execute(update(RunModel).where(RunModel.id == run_id).values(
                reserved_lm_calls=RunModel.reserved_lm_calls - count))

    def add_unscored_usage(self, run_id: int, lm_calls: int, tokens: int) -> None:
        self._add_to_run(run_id, unscored_lm_calls=lm_calls, unscored_tokens=tokens)

    def add_run_note(self, run_id: int, source: str, text: str) -> None:
        with self._session() as session:
            if session.get(RunModel, run_id) is None:
                raise StorageError(f"run {run_id} does not exist")
            session.add(RunNoteModel(run_id=run_id, source=source[:64], text=redact_secrets(text)))

    def list_run_notes(self, run_id: int, source: str, *, last: int | None = None) -> list[str]:
        query = (select(RunNoteModel.text).where(RunNoteModel.run_id == run_id, RunNoteModel.source == source)
                 .order_by(RunNoteModel.id.desc()))
        if last is not None:
            query = query.limit(last)
        with self._session() as session:
            return list(reversed(session.scalars(query).all()))

    def _add_to_run(self, run_id: int, **amounts: float) -> None:
        """Add to the run's counters in the database (``SET c = c + n``): a value read here and
        written back would lose another worker's addition made in between."""
        with self._session() as session:
            done = session.execute(update(RunModel).where(RunModel.id == run_id).values({
                getattr(RunModel, name): func.coalesce(getattr(RunModel, name), 0) + amount
                for name, amount in amounts.items()}))
            if not cast(CursorResult, done).rowcount:
                raise StorageError(f"run {run_id} does not exist")

    def add_examples(self, run_id: int, split: str,
                     examples: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        with self._write_lock, self._session() as session:
            kept = set(session.scalars(select(ExampleModel.example_id).where(
                ExampleModel.run_id == run_id, ExampleModel.split == split)))
            rows = [dict(run_id=run_id, split=split, example_id=example_id, inputs=inputs, gold=gold)
                    for example_id, inputs, gold in examples if example_id not in kept]
            if rows:
                try:
                    with session.begin_nested():
                        session.execute(insert(ExampleModel), rows)
                except IntegrityError:  # another worker kept them at the same moment: keep the rest
                    kept = set(session.scalars(select(ExampleModel.example_id).where(
                        ExampleModel.run_id == run_id, ExampleModel.split == split)))
                    rows = [row for row in rows if row["example_id"] not in kept]
                    if rows:
                        session.execute(insert(ExampleModel), rows)

    def list_examples(self, run_id: int, split: str | None = None) -> list[ExampleRecord]:
        query = select(ExampleModel).where(ExampleModel.run_id == run_id).order_by(ExampleModel.id)
        if split is not None:
            query = query.where(ExampleModel.split == split)
        with self._session() as session:
            return [ExampleRecord(run_id=row.run_id, split=row.split, example_id=row.example_id, inputs=row.inputs,
                                  gold=row.gold) for row in session.scalars(query)]

    def add_proposer_usage(self, run_id: int, lm_calls: int, tokens: int, cost_usd: float) -> None:
        self._add_to_run(run_id, proposer_lm_calls=lm_calls, proposer_tokens=tokens, proposer_cost_usd=cost_usd)

    @staticmethod
    def _spent_calls(session: Session, run: RunModel) -> int:
        calls = session.scalar(
            select(func.coalesce(func.sum(ExampleResultModel.lm_calls), 0))
            .join(EvaluationModel, EvaluationModel.id == ExampleResultModel.evaluation_id)
            .join(CandidateModel, CandidateModel.id == EvaluationModel.candidate_id)
            .where(CandidateModel.run_id == run.id))
        return int(calls or 0) + run.proposer_lm_calls + (run.unscored_lm_calls or 0)

    def run_usage(self, run_id: int) -> RunUsage:
        with self._session() as session:
            calls, tokens, cost = session.execute(
                select(
                    func.coalesce(func.sum(ExampleResultModel.lm_calls), 0),
                    func.coalesce(func.sum(ExampleResultModel.prompt_tokens + ExampleResultModel.completion_tokens), 0),
                    func.coalesce(func.sum(ExampleResultModel.cost_usd), 0.0),
                )
                .join(EvaluationModel, EvaluationModel.id == ExampleResultModel.evaluation_id)
                .join(CandidateModel, CandidateModel.id == EvaluationModel.candidate_id)
                .where(CandidateModel.run_id == run_id)
            ).one()
            run = self._existing(session, RunModel, run_id)
            return RunUsage(
                lm_calls=int(calls) + run.proposer_lm_calls + (run.unscored_lm_calls or 0),
                tokens=int(tokens) + run.proposer_tokens + (run.unscored_tokens or 0),
                cost_usd=float(cost) + run.proposer_cost_usd,
            )

    # candidates ------------------------------------------------------------------------------
    def create_candidate(self, run_id: int, spec: dict[str, Any], spec_hash: str, *, level: str, optimizer: str,
                         parents: tuple[int, ...] = (), trial_number: int | None = None, limit: int | None = None,
                         counted: bool = True, holder: str | None = None,
                         lease_s: float = LEASE_S, unique: bool = False) -> CandidateRecord | None:
        with self._write_lock, self._session() as session:
            run = self._lock_run(session, run_id)
            if counted and limit is not None and run.counted_candidates >= limit:
                return None
            if unique:  # the run's row is locked: a racing worker's insert of the same spec waits for this one
                twin = session.scalar(select(CandidateModel).where(CandidateModel.run_id == run_id,
                                                                   CandidateModel.spec_hash == spec_hash)
                                      .order_by(CandidateModel.number).limit(1))
                if twin is not None:
                    raise DuplicateCandidate(self._candidate(twin))
            # the run's row is locked: no other writer can take the same number between this read and the insert
            number = session.scalar(select(func.coalesce(func.max(CandidateModel.number) + 1, 0))
                                    .where(CandidateModel.run_id == run_id))
            row = CandidateModel(run_id=run_id, number=number, spec=spec, spec_hash=spec_hash,
                                 level=Level(level).value, optimizer=optimizer, parents=list(parents),
                                 trial_number=trial_number, status=CandidateStatus.PENDING.value)
            run.counted_candidates += int(counted)
            session.add(row)
            session.flush()
            if holder is not None:
                self._take(session, run_id, f"{CANDIDATE_LEASE}{row.id}", holder, lease_s)
            return self._candidate(row)

    def seed_candidate(self, run_id: int, spec: dict[str, Any], spec_hash: str) -> CandidateRecord:
        with self._write_lock, self._session() as session:
            run = self._lock_run(session, run_id)
            row = session.scalar(select(CandidateModel).where(CandidateModel.run_id == run_id,
                                                              CandidateModel.number == 0))
            if row is None:
                row = CandidateModel(run_id=run_id, number=0, spec=spec, spec_hash=spec_hash,
                                     level=Level.PROMPT.value, optimizer="seed", parents=[], trial_number=None,
                                     status=CandidateStatus.PENDING.value)
                run.counted_candidates += 1
                session.add(row)
                session.flush()
            return self._candidate(row)

    def claim_candidate(self, run_id: int, holder: str, lease_s: float, *,
                        levels: Sequence[str] | None = None) -> CandidateRecord | None:
        query = (select(CandidateModel).where(CandidateModel.run_id == run_id,
                                              CandidateModel.status == CandidateStatus.PENDING.value)
                 .order_by(CandidateModel.number))
        if levels is not None:
            query = query.where(CandidateModel.level.in_([Level(level).value for level in levels]))
        with self._session() as session:
            pending = [self._candidate(row) for row in session.scalars(query)]
            leases = {name: (who, expires) for name, who, expires in session.execute(
                select(LeaseModel.name, LeaseModel.holder, LeaseModel.expires_at).where(
                    LeaseModel.run_id == run_id, LeaseModel.name.like(f"{CANDIDATE_LEASE}%")))}
        now = utcnow()
        for candidate in pending:
            lease = leases.get(f"{CANDIDATE_LEASE}{candidate.id}")
            if lease is not None and lease[1] > now and holder_alive(lease[0]):
                continue  # held, by another worker or by this one
            name = f"{CANDIDATE_LEASE}{candidate.id}"
            if not self.acquire_lease(run_id, name, holder, lease_s):
                continue
            # Its worker may have finished it (and dropped its lease) since the list was read: a claim
            # holds only while the candidate is still pending.
            current = self.get_candidate(candidate.id)
            if current is not None and current.status == CandidateStatus.PENDING:
                return current
            self.release_lease(run_id, name, holder)
        return None

    def set_candidate_status(self, candidate_id: int, status: str, *, note: str | None = None) -> None:
        status = CandidateStatus(status)
        with self._session() as session:
            row = self._existing(session, CandidateModel, candidate_id)
            row.status = status.value
            row.note = note
            row.finished_at = utcnow() if status.ended else None
            if status.ended:  # nothing left to hold
                session.execute(delete(LeaseModel).where(LeaseModel.run_id == row.run_id,
                                                         LeaseModel.name == f"{CANDIDATE_LEASE}{candidate_id}"))

    def set_candidate_trial(self, candidate_id: int, trial_number: int) -> None:
        with self._session() as session:
            self._existing(session, CandidateModel, candidate_id).trial_number = trial_number

    def get_candidate(self, candidate_id: int) -> CandidateRecord | None:
        with self._session() as session:
            row = session.get(CandidateModel, candidate_id)
            return None if row is None else self._candidate(row)

    def list_candidates(self, run_id: int, *, after_number: int = -1,
                        ids: Sequence[int] | None = None) -> list[CandidateRecord]:
        query = select(CandidateModel).where(CandidateModel.run_id == run_id).order_by(CandidateModel.number)
        if ids is not None:
            if not ids:
                return []
            query = query.where(CandidateModel.id.in_(list(ids)))
        elif after_number >= 0:
            query = query.where(CandidateModel.number > after_number)
        with self._session() as session:
            return [self._candidate(row) for row in session.scalars(query)]

    def best_candidates(self, run_id: int, limit: int) -> list[CandidateRecord]:
        complete_dev = and_(EvaluationModel.candidate_id == CandidateModel.id, EvaluationModel.split == Split.DEV.value,
                            EvaluationModel.status == EvaluationStatus.COMPLETE.value)
        query = (select(CandidateModel).outerjoin(EvaluationModel, complete_dev).where(CandidateModel.run_id == run_id)
                 .order_by(EvaluationModel.score.is_(None), EvaluationModel.score.desc(), CandidateModel.number)
                 .limit(limit))
        with self._session() as session:
            return [self._candidate(row) for row in session.scalars(query)]

    # evaluations -----------------------------------------------------------------------------
    def get_or_create_evaluation(self, candidate_id: int, split: str) -> EvaluationRecord:
        with self._write_lock, self._session() as session:
            row = session.scalar(
                select(EvaluationModel).where(EvaluationModel.candidate_id == candidate_id, EvaluationModel.split == split)
            )
            if row is None:
                row = EvaluationModel(candidate_id=candidate_id, split=Split(split).value,
                                      status=EvaluationStatus.RUNNING.value, n=0, n_errors=0,
                                      lm_calls=0, tokens=0, cost_usd=0.0, wall_s=0.0)
                session.add(row)
                session.flush()
            return self._evaluation(row)

    def list_evaluations(self, *, run_id: int | None = None, candidate_id: int | None = None,
                         candidate_ids: Sequence[int] | None = None) -> list[EvaluationRecord]:
        query = select(EvaluationModel).order_by(EvaluationModel.id)
        if candidate_id is not None:
            query = query.where(EvaluationModel.candidate_id == candidate_id)
        if candidate_ids is not None:
            if not candidate_ids:
                return []
            query = query.where(EvaluationModel.candidate_id.in_(list(candidate_ids)))
        if run_id is not None:
            query = query.join(CandidateModel).where(CandidateModel.run_id == run_id)
        with self._session() as session:
            return [self._evaluation(row) for row in session.scalars(query)]

    def add_example_results(self, evaluation_id: int, outcomes: Sequence[ExampleOutcome]) -> None:
        # The hot path of every run (one transaction per batch of finished examples, on the thread that
        # also feeds the evaluation workers): a Core connection and two statements, no ORM objects. The
        # unique (evaluation, example) index refuses a second result; only then is the example looked up.
        try:
            with self.engine.begin() as connection:
                status = connection.execute(_EVALUATION_STATUS, {"id": evaluation_id}).scalar_one_or_none()
                if status is None or EvaluationStatus(status).finished:
                    raise StorageError(f"evaluation {evaluation_id} is complete or missing; finished results are "
                                       "immutable")
                if not outcomes:
                    return
                connection.execute(_INSERT_RESULT, [dict(
                    evaluation_id=evaluation_id, example_id=outcome.example_id, prediction=outcome.prediction,
                    score=outcome.score, error=outcome.error, lm_calls=outcome.usage.lm_calls,
                    program_calls=outcome.program_calls, prompt_tokens=outcome.usage.prompt_tokens,
                    completion_tokens=outcome.usage.completion_tokens, cost_usd=outcome.usage.cost_usd,
                    latency_s=outcome.latency_s,
                ) for outcome in outcomes])
        except IntegrityError:
            with self._session() as session:
                stored = sorted(session.scalars(select(ExampleResultModel.example_id).where(
                    ExampleResultModel.evaluation_id == evaluation_id,
                    ExampleResultModel.example_id.in_([outcome.example_id for outcome in outcomes]))))
            raise StorageError(f"evaluation {evaluation_id} already has a result for example "
                               f"{(stored or ['?'])[0]!r}; an example is scored once") from None
        except SQLAlchemyError as exc:
            raise StorageError(f"storage {self.display_url!r}: {redact_secrets(str(exc).splitlines()[0])}") from None

    def list_example_results(self, evaluation_id: int) -> list[ExampleResultRecord]:
        with self._session() as session:
            rows = session.scalars(
                select(ExampleResultModel).where(ExampleResultModel.evaluation_id == evaluation_id).order_by(ExampleResultModel.id)
            )
            return [self._example(row) for row in rows]

    def complete_evaluation(self, evaluation_id: int, wall_s: float, *, pruned_because: str | None = None) -> EvaluationRecord:
        with self._session() as session:
            row = self._existing(session, EvaluationModel, evaluation_id)
            n, score, errors, calls, tokens, cost = session.execute(
                select(
                    func.count(ExampleResultModel.id),
                    func.avg(ExampleResultModel.score),
                    func.count(ExampleResultModel.error),
                    func.coalesce(func.sum(ExampleResultModel.lm_calls), 0),
                    func.coalesce(func.sum(ExampleResultModel.prompt_tokens + ExampleResultModel.completion_tokens), 0),
                    func.coalesce(func.sum(ExampleResultModel.cost_usd), 0.0),
                ).where(ExampleResultModel.evaluation_id == evaluation_id)
            ).one()
            row.n, row.score, row.n_errors = int(n), (None if score is None else float(score)), int(errors)
            row.lm_calls, row.tokens, row.cost_usd = int(calls), int(tokens), float(cost)
            row.wall_s += wall_s
            errors = Counter(error_gist(error or "") for error in session.scalars(select(ExampleResultModel.error).where(
                ExampleResultModel.evaluation_id == evaluation_id, ExampleResultModel.error.is_not(None))))
            top = min(errors.items(), key=lambda item: (-item[1], item[0]), default=None)
            row.top_error, row.top_error_count = top if top else (None, 0)
            row.status = (EvaluationStatus.COMPLETE if pruned_because is None else EvaluationStatus.PRUNED).value
            row.note = pruned_because
            row.finished_at = utcnow()
            session.flush()
            return self._evaluation(row)
