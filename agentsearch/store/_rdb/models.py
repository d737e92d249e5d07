"""SQLAlchemy tables. Changing them needs a new Alembic revision in ``migrations/versions``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NUL = "\x00"
NUL_SHOWN = "\\x00"
"""How a NUL is stored where the database refuses it: the four characters ``\\x00``."""


def _storable(value: str | None, dialect: Dialect) -> str | None:
    if value is not None and NUL in value and dialect.name == "postgresql":
        return value.replace(NUL, NUL_SHOWN)
    return value


class SafeString(TypeDecorator[str]):
    """A string column that stores any text: PostgreSQL refuses NUL in text (an LM's answer, an agent
    design's error message may hold one) and SQLite keeps it, so on PostgreSQL a NUL is written
    visibly escaped (``NUL_SHOWN``) rather than failing the run. JSON columns need nothing: JSON
    escapes it."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return _storable(value, dialect)


class SafeText(SafeString):
    """``SafeString`` of unbounded length."""

    impl = Text
    cache_ok = True


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class RunModel(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(SafeString(255), unique=True)
    task_name: Mapped[str] = mapped_column(SafeString(255), index=True)
    status: Mapped[str] = mapped_column(SafeString(32))
    stop_reason: Mapped[str | None] = mapped_column(SafeText)
    task: Mapped[dict[str, Any]] = mapped_column(JSON)
    space: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    proposer_lm_calls: Mapped[int] = mapped_column(Integer, default=0)
    proposer_tokens: Mapped[int] = mapped_column(Integer, default=0)
    proposer_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    unscored_lm_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unscored_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    owner: Mapped[str | None] = mapped_column(SafeString(255))
    counted_candidates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reserved_lm_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    workers_joined: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class CandidateModel(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("run_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(SafeString(64), index=True)
    level: Mapped[str] = mapped_column(SafeString(32))
    optimizer: Mapped[str] = mapped_column(SafeString(64))
    parents: Mapped[list[Any]] = mapped_column(JSON)
    trial_number: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(SafeString(32))
    note: Mapped[str | None] = mapped_column(SafeText)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class EvaluationModel(Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("candidate_id", "split"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(SafeString(16))
    status: Mapped[str] = mapped_column(SafeString(32))
    score: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer, default=0)
    n_errors: Mapped[int] = mapped_column(Integer, default=0)
    lm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str | None] = mapped_column(SafeText)
    top_error: Mapped[str | None] = mapped_column(SafeText)
    top_error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ExampleModel(Base):
    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("run_id", "split", "example_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(SafeString(16))
    example_id: Mapped[str] = mapped_column(SafeString(255))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    gold: Mapped[dict[str, Any]] = mapped_column(JSON)


class ExampleResultModel(Base):
    __tablename__ = "example_results"
    __table_args__ = (UniqueConstraint("evaluation_id", "example_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    example_id: Mapped[str] = mapped_column(SafeString(255))
    prediction: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(SafeText)
    lm_calls: Mapped[int] = mapped_column(Integer)
    program_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RunNoteModel(Base):
    __tablename__ = "run_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(SafeString(64))
    text: Mapped[str] = mapped_column(SafeText)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LeaseModel(Base):
    __tablename__ = "leases"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(SafeString(128), primary_key=True)
    holder: Mapped[str] = mapped_column(SafeString(255), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
