"""The experiment store: runs, candidates, evaluations and per-example results, queryable with SQL."""

from __future__ import annotations

from agentsearch.store._base import (
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
)
from agentsearch.store._rdb.storage import RDBStorage, storage_url_problem


def get_storage(storage: str | BaseStorage, *, upgrade: bool = False) -> BaseStorage:
    """A storage instance from a SQLAlchemy URL (``sqlite:///file.db``, ``postgresql+psycopg://...``) or as given."""
    return storage if isinstance(storage, BaseStorage) else RDBStorage(storage, upgrade=upgrade)


__all__ = [
    "BaseStorage",
    "CandidateRecord",
    "CandidateStatus",
    "DuplicateCandidate",
    "EvaluationRecord",
    "EvaluationStatus",
    "ExampleRecord",
    "ExampleResultRecord",
    "Level",
    "RDBStorage",
    "RunRecord",
    "RunStatus",
    "RunUsage",
    "Split",
    "get_storage",
    "storage_url_problem",
]
