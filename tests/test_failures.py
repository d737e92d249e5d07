"""Which failed calls are outages (never a score) and which are the program's (a result), as DSPy
really reports them from the fake server, through each engine agentsearch uses: litellm's (the
embedded model) and DSPy's default (a hosted model; its native client where it can)."""

from __future__ import annotations

import threading

import dspy
import pytest

from agentsearch.exceptions import LMUnavailableError
from agentsearch.lm import build_lm
from agentsearch.lm._failures import (
    FailureKind,
    LMFailure,
    backoff_s,
    call_with_retries,
    classify,
)
from agentsearch.task import LMConfig
from agentsearch.testing import FakeOpenAIServer


@pytest.fixture(scope="module")
def server():
    fake = FakeOpenAIServer(latency_s=0.005, hang_s=5).start()
    yield fake
    fake.stop()


@pytest.fixture(params=["litellm", "auto"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def _failure(base_url: str, engine: str) -> LMFailure | None:
    lm = dspy.LM("openai/fake", engine=engine, api_base=base_url, num_retries=0, cache=False, timeout=1)
    try:
        lm("hi")
    except Exception as exc:
        return classify(exc, "openai/fake")
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize(("fault", "kind"), [
    ("429", FailureKind.RATE_LIMIT), ("500", FailureKind.SERVER), ("hang", FailureKind.TIMEOUT),
    ("truncate", FailureKind.CONNECTION), ("context", None),
])
def test_each_fault_is_classified(server, monkeypatch, engine, fault, kind):
    monkeypatch.setenv("OPENAI_API_KEY", "a-key-for-the-fake-server")
    server.configure(faults={fault: 1.0})
    try:
        failure = _failure(server.base_url, engine)
    finally:
        server.configure(faults={})
    assert (failure.kind if failure else None) == kind  # a context-window error is the program's: a result
    if kind is FailureKind.TIMEOUT:  # named by the setting that moves it, not by DSPy's internals
        assert "lm15" not in failure.message and "Timeouts(" not in failure.message, failure.message
        assert "lm.timeout" in failure.message or "timed out" in failure.message.lower(), failure.message


def test_keys_and_connections(server, monkeypatch, engine):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = _failure(server.base_url, engine)
    assert missing.kind is FailureKind.AUTH and not missing.kind.retryable and "litellm." not in missing.message
    monkeypatch.setenv("OPENAI_API_KEY", "the-wrong-key-123")
    server.configure(api_key="the-right-key-123")
    try:
        assert _failure(server.base_url, engine).kind is FailureKind.AUTH
    finally:
        server.configure(api_key=None)
    assert _failure("http://127.0.0.1:9/v1", engine).kind is FailureKind.CONNECTION


def test_retries_count_every_attempt_and_honour_retry_after_within_a_cap():
    failure = LMFailure(FailureKind.RATE_LIMIT, "m", "slow down", retry_after=3600)
    assert backoff_s(0, failure) == 30.0  # a provider cannot park the run for an hour
    assert [backoff_s(n, LMFailure(FailureKind.SERVER, "m", "x")) for n in range(3)] == [1.0, 2.0, 4.0]


def test_a_cancelled_run_stops_retrying_at_once(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "a-key-for-the-fake-server")
    cancelled = threading.Event()

    class StopOnFirstFailure:
        """Stands for Ctrl-C arriving while the call waits to retry."""

        def record_failure(self, failure, *, final, attempted):
            cancelled.set()

    lm = build_lm(LMConfig(model="openai/fake", api_base=server.base_url, num_retries=10), cancelled=cancelled)
    before = server.stats().faults.get("500", 0)
    server.configure(faults={"500": 1.0})
    try:
        with dspy.context(usage_tracker=StopOnFirstFailure()), pytest.raises(LMUnavailableError, match="server error"):
            lm("hi")
    finally:
        server.configure(faults={})
    assert server.stats().faults["500"] - before == 1  # no second attempt, no backoff waited out


def test_program_failures_pass_through_unretried():
    calls = []

    def attempt():
        calls.append(1)
        raise ValueError("not an LM error")

    with pytest.raises(ValueError):
        call_with_retries("m", 5, attempt)
    assert len(calls) == 1
