"""Telling an LM outage from a program's failure, and retrying the outage.

A score must say how well a program answered, never that the LM was down. So every failed call is
classified here: *infrastructure* failures (authentication, missing key, connection, HTTP 5xx or
429, timeout) are not the program's doing and must never become a score of 0; everything else (a
prompt over the context window, a request the provider rejects for its shape, an unparsable
answer) is the program's and is a result like any other.

DSPy's own retry loop sleeps in the worker thread and cannot be interrupted; ours waits on the
run's ``cancelled`` event, so Ctrl-C and SIGTERM end a run within a second even mid-backoff, and no
worker left behind by a stopped run starts another attempt. DSPy is told to make one attempt per
call (``num_retries=0``) and ``RetryingLM`` makes the attempts, counting each one against the
budget through the thread's usage meter.
"""

from __future__ import annotations

import enum
import re
import threading
from dataclasses import dataclass
from typing import Any

from dspy.utils.exceptions import (
    LMAuthError,
    LMBillingError,
    LMConfigurationError,
    LMError,
    LMLockTimeoutError,
    LMNotConfiguredError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
    LMUnexpectedError,
    LMUnsupportedModelError,
)

from agentsearch.exceptions import BudgetRefusal, LMUnavailableError
from agentsearch.lm._secrets import redact_secrets

MAX_BACKOFF_S = 30.0
"""The longest wait between attempts, whatever a provider's Retry-After asks."""

_MISSING_KEY = ("missing credentials", "api_key client option must be set", "no api key found")


class FailureKind(str, enum.Enum):
    AUTH = "authentication failed"
    CONFIG = "misconfigured"
    RATE_LIMIT = "rate limited (HTTP 429)"
    SERVER = "server error (HTTP 5xx)"
    CONNECTION = "cannot connect"
    TIMEOUT = "timed out"
    BUDGET = "budget used up"
    """Not the LM's doing: the run's call budget refused the request (see ``lm._gate``)."""

    @property
    def retryable(self) -> bool:
        """Whether waiting can help: an unknown key or model will not fix itself."""
        return self not in (FailureKind.AUTH, FailureKind.CONFIG, FailureKind.BUDGET)


@dataclass(frozen=True)
class LMFailure:
    """One failed attempt at an LM call that was the infrastructure's doing."""

    kind: FailureKind
    model: str
    message: str
    """The provider's first line, secrets redacted."""
    retry_after: float | None = None

    def describe(self) -> str:
        return f"{self.model}: {self.kind.value}: {self.message}"


_WRAPPERS = re.compile(r"litellm\.\w+: (?:\w+: )?(?:\w+Exception - )?")
"""The class names litellm stacks before a provider's message (``litellm.X: X: OpenAIException - ``)."""


_CLIENT_READ_TIMEOUT = re.compile(r"no bytes for ([\d.]+)s; this is lm15's read timeout.*")
"""DSPy's native client on a read timeout: it names its vendored transport and its own setting."""


def first_line(exc: BaseException) -> str:
    """The error's first line, without litellm's stacked class names, secrets redacted; a client read
    timeout named by the setting that moves it (``lm.timeout``), not DSPy's internals."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = _CLIENT_READ_TIMEOUT.sub(lambda found: f"no answer within {found[1]} s (lm.timeout; in Python, "
                                    f"dspy.LM(timeout=...)): raise it if the model needs longer", text)
    return redact_secrets(_WRAPPERS.sub("", text)).strip()[:300]


def _kind(exc: LMError) -> FailureKind | None:
    text = str(exc).lower()
    if isinstance(exc, (LMAuthError, LMBillingError, LMNotConfiguredError)):
        return FailureKind.AUTH
    if isinstance(exc, LMRateLimitError):
        return FailureKind.RATE_LIMIT
    if isinstance(exc, LMTimeoutError):
        return FailureKind.TIMEOUT
    if isinstance(exc, (LMTransportError, LMLockTimeoutError)):
        # DSPy's native client reports a server that stops answering mid-request as a transport
        # error ("read timed out waiting for headers"): the user is told it timed out
        return FailureKind.TIMEOUT if "timed out" in text else FailureKind.CONNECTION
    if isinstance(exc, (LMServerError, LMUnexpectedError)):
        # litellm reports a missing key, a refused connection and a client timeout as server errors
        if any(marker in text for marker in _MISSING_KEY):
            return FailureKind.AUTH
        if "connection error" in text or "connection refused" in text:
            return FailureKind.CONNECTION
        if "timed out" in text:
            return FailureKind.TIMEOUT
        return FailureKind.SERVER  # an engine failure DSPy cannot name is no answer either
    if isinstance(exc, (LMConfigurationError, LMUnsupportedModelError)):
        return FailureKind.CONFIG
    return None  # a context window, a request refused for its shape, an unsupported feature: the program's


def classify(exc: BaseException, model: str) -> LMFailure | None:
    """The infrastructure failure ``exc`` is, or None when it is the program's (a result)."""
    if isinstance(exc, LMUnavailableError):
        return exc.failure
    if not isinstance(exc, LMError):
        return None
    kind = _kind(exc)
    if kind is None:
        return None
    retry_after = getattr(exc, "retry_after", None)
    return LMFailure(kind, model, first_line(exc), retry_after if isinstance(retry_after, (int, float)) else None)


def backoff_s(attempt: int, failure: LMFailure) -> float:
    """Seconds before attempt ``attempt + 1``: the provider's Retry-After if it gave one, else 1, 2, 4, ... s."""
    wanted = failure.retry_after if failure.retry_after is not None else 2.0 ** attempt
    return max(0.0, min(float(wanted), MAX_BACKOFF_S))


def note_failure(failure: LMFailure, *, final: bool, attempted: bool = True) -> None:
    """Tell the calling thread's usage meter (if one is installed) that an attempt failed (``attempted``:
    a request was made, so it counts as a call), and whether the call failed with it (``final``)."""
    import dspy

    meter = dspy.settings.usage_tracker
    record = getattr(meter, "record_failure", None)
    if record is not None:
        record(failure, final=final, attempted=attempted)


def call_with_retries(model: str, retries: int, attempt_call: Any, cancelled: threading.Event | None = None) -> Any:
    """``attempt_call()`` up to ``retries + 1`` times while it fails for infrastructure reasons.

    Raises LMUnavailableError when the attempts run out, the failure cannot heal (a bad key) or
    ``cancelled`` is set (the run is stopping: no attempt starts, no backoff goes on); a program
    failure (context window, bad request) propagates unchanged after one attempt.
    """
    cancelled = cancelled or threading.Event()
    attempt = 0
    while True:
        if cancelled.is_set():
            stopping = LMFailure(FailureKind.CONNECTION, model, "the run is being stopped")
            note_failure(stopping, final=True, attempted=False)
            raise LMUnavailableError(stopping)
        try:
            return attempt_call()
        except BudgetRefusal as refusal:  # no request was made: nothing to count, nothing to retry
            note_failure(refusal.failure, final=True, attempted=False)
            raise
        except Exception as exc:
            failure = classify(exc, model)
            if failure is None:
                raise
            final = not failure.kind.retryable or attempt >= retries
            note_failure(failure, final=final)
            if final:
                raise LMUnavailableError(failure, attempts=attempt + 1) from None
            if cancelled.wait(backoff_s(attempt, failure)):
                note_failure(failure, final=True, attempted=False)
                raise LMUnavailableError(failure, attempts=attempt + 1) from None
            attempt += 1
