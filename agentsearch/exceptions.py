"""The library's own exceptions: everything a user can cause maps to one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


def describe_validation_error(error: ValidationError, *, prefix: tuple[str, ...] = ()) -> str:
    """``field.path: message`` for pydantic's first error, so bad input reads as one line naming the field."""
    first = error.errors()[0]
    path, message = [*prefix, *map(str, first["loc"])], first["msg"]
    if first["type"] == "value_error":
        # Model validators write "field: problem" to name the field inside the model they check.
        message = message.removeprefix("Value error, ")
        head, sep, rest = message.partition(": ")
        if sep and head.isidentifier():
            path, message = [*path, head], rest
    field = ".".join(path) or "(top level)"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{field}: {message}{suffix}"


class AgentSearchError(Exception):
    """Base of every error agentsearch raises on purpose; the CLI prints it on one line, exit ``exit_code``."""

    exit_code = 2


class TaskSpecError(AgentSearchError):
    """A task file or Task object is invalid; the message names the file and the field."""


class StorageError(AgentSearchError):
    """The database cannot be opened, is at the wrong schema version, or a query failed."""


class LMError(AgentSearchError):
    """An LM cannot be built (unknown local model, missing optional extra)."""


class LMUnavailableError(AgentSearchError):
    """An LM failed for reasons outside the program: authentication, connection, HTTP 5xx or 429 after
    retries, a timeout. Never a score: the run stops (status ``failed``, resumable) and the CLI exits 3."""

    exit_code = 3

    def __init__(self, failure: Any, *, attempts: int = 1, unscored: int = 0) -> None:
        self.failure = failure
        self.attempts = attempts
        self.usage: Any = None
        """What the failed calls spent, where the caller meters its own calls (the proposer's): the run
        books it, since no example result will."""
        detail = f" after {attempts} attempts" if attempts > 1 else ""
        left = f"; {unscored} examples left unscored" if unscored else ""
        super().__init__(f"LM {failure.describe()}{detail}{left}")


class BudgetRefusal(LMUnavailableError):
    """A call refused because the run's LM-call budget is reserved in full: the run stops (``stopped``,
    resumable with a larger budget), and the example that asked is left unscored."""

    exit_code = 0


class MetricError(AgentSearchError):
    """The task's metric raised: a defect of the task, not a score of 0. The run stops; exit 2."""


class ProgramFileError(AgentSearchError):
    """A saved program file cannot be read."""


class ExportError(AgentSearchError):
    """A program cannot be written in the format asked for (plain DSPy has no module for it)."""
