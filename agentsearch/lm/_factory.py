"""Turning an LMConfig into a DSPy LM that calls litellm, and metering what it spends."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dspy
import litellm
from dspy.utils.callback import BaseCallback
from dspy.utils.usage_tracker import UsageTracker

from agentsearch.exceptions import BudgetRefusal
from agentsearch.lm._cost import call_cost, is_local, known_cost, register_price
from agentsearch.lm._gate import CallGate

litellm.suppress_debug_info = True  # its "Provider List" banner on stdout would corrupt --json output

if TYPE_CHECKING:
    from agentsearch.lm._failures import LMFailure
    from agentsearch.task import LMConfig


class RetryingLM(dspy.LM):
    """A DSPy LM whose attempts we make: infrastructure failures are retried with an interruptible
    backoff, counted on the thread's usage meter, and end as ``LMUnavailableError``, never as a
    program's failure (see ``agentsearch.lm._failures``)."""

    retries: int = 0
    cancelled: threading.Event | None = None
    """The run's stop signal: set, no attempt starts and no backoff goes on."""
    gate: CallGate | None = None
    """The run's LM-call budget: each attempt reserves a call first (a cache hit gives it back)."""
    server: str | None = None
    """The ``api_base`` the calls go to (no credentials): part of each cache key, see ``_cache_per_server``."""

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        from agentsearch.lm._failures import call_with_retries

        parent, gate = super().__call__, self.gate

        def attempt() -> Any:
            if gate is None:
                return parent(prompt, messages=messages, **kwargs)
            if not gate.acquire():
                from agentsearch.lm._failures import FailureKind, LMFailure

                raise BudgetRefusal(LMFailure(FailureKind.BUDGET, self.model,
                                              f"max_lm_calls={gate.limit} reserved by the run's workers"))
            probe = _PaidProbe(dspy.settings.usage_tracker)
            with dspy.context(usage_tracker=probe):
                outputs = parent(prompt, messages=messages, **kwargs)
            if not probe.paid:  # DSPy's cache answered: no request, the call goes back
                gate.refund()
            return outputs

        outputs = call_with_retries(self.model, self.retries, attempt, self.cancelled)
        _count_program_call()
        return outputs


def _price_calls_as_the_meter_does() -> None:
    """Have DSPy price our LMs' calls with the meter's price, not with its own lookup.

    DSPy prices every call it makes for ``lm.history`` (``dspy.clients.execution._price_result``):
    it looks the model up in its copy of litellm's table, and for a name the table does not hold
    (a self-hosted server's model, say) it scans the whole table twice, about 0.7 ms of CPU per
    call on this project's bench machine, half of what DSPy spends on a call. A run prices each
    call already (``UsageMeter``, from litellm's rates or the task's ``lm.price``), so for our LMs
    the history gets that figure: the one the budget counted. Other LMs keep DSPy's pricing. If a
    DSPy release moves the function, nothing is replaced (the test of this fails, not a run).
    """
    from dspy.clients import execution

    original = getattr(execution, "_price_result", None)
    if original is None or getattr(original, "agentsearch_meter_price", False):
        return

    def price_result(lm: Any, result: Any, response: Any, provider: Any, request: Any) -> None:
        if not isinstance(lm, RetryingLM) or result is None or response is None:
            return original(lm, result, response, provider, request)
        usage = getattr(response, "usage", None)
        prompt = getattr(usage, "input_tokens", None)
        completion = getattr(usage, "output_tokens", None)
        try:  # advisory, as DSPy's own: a finished call never fails over its price
            cost = None if prompt is None or completion is None else known_cost(lm.model, prompt, completion)
        except Exception:
            cost = None
        result.cost = cost
        result.cost_details = (
            {"kind": "estimate", "currency": "USD", "model": lm.model, "source": "agentsearch"} if cost is not None
            else {"kind": "unknown", "reason": "no price for the model, or usage was not reported"})
        return None

    price_result.agentsearch_meter_price = True  # type: ignore[attr-defined]
    execution._price_result = price_result


_price_calls_as_the_meter_does()


def _cache_per_server() -> None:
    """Key DSPy's cache entries for our LMs by the server too.

    DSPy leaves ``api_base`` out of its cache key (``dspy.clients.execution.IGNORED_CACHE_KEYS``), so
    two servers under one model name (a vLLM on two ports, a fake and a real one) answer each
    other's requests from the cache: a run against the second server would be scored with the
    first one's answers. Our LMs add the server to the key (``PreparedCall.key``); other LMs keep
    DSPy's. If a DSPy release moves the method, nothing is replaced (its test fails first).
    """
    from dspy.clients import execution

    prepared = getattr(execution, "PreparedCall", None)
    original = getattr(prepared, "key", None)
    if prepared is None or original is None or getattr(original, "agentsearch_server", False):
        return

    def key(self: Any, lm: Any, asynchronous: bool) -> dict[str, Any]:
        found = original(self, lm, asynchronous)
        server = getattr(lm, "server", None) if isinstance(lm, RetryingLM) else None
        return found if server is None else {**found, "agentsearch_server": server}

    key.agentsearch_server = True  # type: ignore[attr-defined]
    prepared.key = key


_cache_per_server()


@functools.lru_cache(maxsize=64)
def provider_params(model: str) -> frozenset[str]:
    """The request parameters litellm declares for ``model``'s provider (what DSPy's litellm engine would send)."""
    try:
        return frozenset(dspy.LM(model, engine="litellm").supported_params)
    except Exception:  # a provider litellm cannot describe: nothing to add
        return frozenset()


def model_problem(model: str, provider: str | None = None) -> str | None:
    """Why no provider can be called for ``model`` (litellm routes none for it, given the LM's
    ``custom_llm_provider`` if it names one); None when one can."""
    if is_local(model):
        return None
    try:
        litellm.get_llm_provider(model, custom_llm_provider=provider)
    except Exception:  # litellm's BadRequestError: "LLM Provider NOT provided"
        head = model.split("/", 1)[-1]
        return (f"{model!r} names no provider; write provider/model, e.g. openai/{head} for an OpenAI-compatible "
                "server (with api_base), or local/smollm2-135m for the embedded model")
    return None


def _count_program_call() -> None:
    """One answered call for the thread's meter, if it counts in the LM (see ``UsageMeter.lm_counts``)."""
    meter = dspy.settings.usage_tracker
    if isinstance(meter, UsageMeter) and meter.lm_counts:
        meter.calls_made += 1


class _PaidProbe:
    """Stands in for the thread's usage tracker during one call: notes whether DSPy reported usage
    (it does for every request it makes, never for a cache hit) and passes it on."""

    def __init__(self, outer: Any) -> None:
        self.outer = outer
        self.paid = False

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        self.paid = True
        if self.outer is not None:
            self.outer.add_usage(lm, usage_entry)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.outer, name)


class LocalLM(RetryingLM):
    """A ``local/`` model: litellm has no capability table for it, so it states its own.

    Adapters read these: DSPy's JSONAdapter asks for JSON mode (llama.cpp provides it by grammar),
    and the completion format sends a raw prompt, with no chat template, where it is supported.
    """

    @property
    def supported_params(self) -> set[str]:
        from agentsearch.lm._local import RAW_PROMPT_PARAM

        return {"temperature", "max_tokens", "stop", "response_format", RAW_PROMPT_PARAM}


def build_lm(config: LMConfig, *, cancelled: threading.Event | None = None, gate: CallGate | None = None) -> dspy.LM:
    """A DSPy LM with DSPy's cache on (a ``local/`` model on the litellm engine, a hosted one on DSPy's default);
    ``cancelled`` is the run's stop signal (see RetryingLM)."""
    extra: dict[str, Any] = {}
    if is_local(config.model):
        from agentsearch.lm._local import local_model_path, register_local_provider

        local_model_path(config.model.split("/", 1)[1])  # fail now, with the extra to install, not mid-run
        register_local_provider()
    else:
        extra["timeout"] = config.timeout  # litellm's own default is 600 s per attempt
        register_price(config)
    from agentsearch.lm._secrets import handed_over_credentials, split_url_credentials

    credentials = handed_over_credentials(config.model, config.api_base)  # a dspy.LM's api_key, in memory only
    if config.api_base:
        extra["api_base"], headers = split_url_credentials(config.api_base)
        if headers:  # the same request, without the password in the URL litellm copies into each response
            credentials["extra_headers"] = {**headers, **(credentials.get("extra_headers") or {})}
    lm_class = LocalLM if is_local(config.model) else RetryingLM
    lm = lm_class(
        config.model,
        model_type=config.model_type,
        # a local model is a litellm provider of ours; a hosted one goes through DSPy's default engine
        # (its native client where it can serve the request, about half of litellm's CPU per call,
        # else litellm); failures reach us as DSPy's own error classes either way
        engine="litellm" if is_local(config.model) else "auto",
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        num_retries=0,  # one attempt per DSPy call: RetryingLM makes the attempts
        cache=True,
        **dict(config.options), **extra, **credentials,
    )
    lm.server = extra.get("api_base")
    lm.retries = config.num_retries
    lm.cancelled = cancelled
    lm.gate = gate
    return lm


@dataclass
class Usage:
    lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.lm_calls += other.lm_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd


class _CallCounter(BaseCallback):
    """Counts LM calls as DSPy's callbacks see them: before its cache, so cache hits count too."""

    def __init__(self, meter: UsageMeter) -> None:
        self.meter = meter

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        if exception is None:
            self.meter.calls_made += 1


class UsageMeter(UsageTracker):
    """DSPy's usage tracker, extended to count calls and price them with litellm.

    DSPy reports usage only for calls that missed its cache, so cached re-evaluations count zero
    calls, which is what a budget should see. Install per thread with ``dspy.context(usage_tracker=...)``.
    """

    def __init__(self, *, lm_counts: bool = False) -> None:
        super().__init__()
        self.usage = Usage()
        self.calls_made = 0
        """Every LM call made under this meter, those DSPy's cache answered included."""
        self.lm_counts = lm_counts
        """Our LMs (``RetryingLM``, before DSPy's cache) count the calls; else ``call_counter``, a DSPy
        callback, must be installed, which sees any LM's calls but makes DSPy run its callback
        machinery on every module, adapter and LM call (about a millisecond of CPU per example)."""
        self.call_counter = _CallCounter(self)
        self.unavailable: list[LMFailure] = []
        """Calls that failed after their last attempt: whatever the program made of them, it is no result."""

    def record_failure(self, failure: LMFailure, *, final: bool, attempted: bool) -> None:
        if final:
            self.unavailable.append(failure)
        if attempted:  # a request was made: it counts as a call, like any answered one
            self.usage.add(Usage(lm_calls=1))

    def add_usage(self, lm: str, usage_entry: dict[str, Any]) -> None:
        super().add_usage(lm, usage_entry)
        prompt = int(usage_entry.get("prompt_tokens") or 0)
        completion = int(usage_entry.get("completion_tokens") or 0)
        self.usage.add(Usage(1, prompt, completion, call_cost(lm, prompt, completion)))
