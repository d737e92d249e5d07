"""The library's own exceptions: everything a user can cause maps to one of these."""

from __future__ import annotations


class AgentSearchError(Exception):
    """Base of every error agentsearch raises on purpose; the CLI prints it on one line, exit 2."""


class TaskSpecError(AgentSearchError):
    """A task file or Task object is invalid; the message names the file and the field."""


class StorageError(AgentSearchError):
    """The database cannot be opened, is at the wrong schema version, or a query failed."""


class LMError(AgentSearchError):
    """An LM cannot be built (unknown local model, missing optional extra)."""


class ProgramFileError(AgentSearchError):
    """A saved program file cannot be read."""
