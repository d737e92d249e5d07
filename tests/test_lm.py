from __future__ import annotations

import dspy
import pytest

from agentsearch.exceptions import LMError
from agentsearch.lm import UsageMeter, build_lm
from agentsearch.task import LMConfig


def test_hosted_model_calls_go_through_litellm_and_are_priced_by_it():
    lm = build_lm(LMConfig(model="openai/gpt-4o-mini", num_retries=0))
    meter = UsageMeter()
    with dspy.context(usage_tracker=meter):
        (reply,) = lm(messages=[{"role": "user", "content": "Say hi"}], mock_response="hi there")
    assert reply == "hi there"
    assert meter.usage.lm_calls == 1 and meter.usage.tokens > 0
    assert meter.usage.cost_usd > 0  # litellm knows gpt-4o-mini's price


@pytest.mark.parametrize(("model", "flat"), [("openai/gpt-4o-mini", True), ("anthropic/claude-sonnet-4-20250514", True),
                                           ("dashscope/qwen-plus-latest", False), ("gemini/gemini-2.5-pro", False)])
def test_a_call_costs_what_litellm_says_at_every_size(model, flat):
    """The per-model rates kept to spare litellm's lookup on every call give litellm's own figure, and a
    model whose price is not one rate per token (tiers by prompt length) is left to litellm."""
    import litellm

    from agentsearch.lm._cost import _RATES, call_cost

    for prompt_tokens, completion_tokens in [(120, 7), (333, 17), (9_000, 450), (150_000, 900), (260_000, 1_500)]:
        expected = sum(litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                              completion_tokens=completion_tokens))
        assert call_cost(model, prompt_tokens, completion_tokens) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert (_RATES[model] is not None) == flat  # the last two have tiers (by prompt length) in litellm's table


def test_a_registered_price_replaces_the_rates_kept_for_the_model():
    from agentsearch.lm._cost import call_cost, register_price
    from agentsearch.task import LMConfig as Config

    model = "openai/agentsearch-test-priced"
    register_price(Config(model=model, price={"input_per_million": 1.0, "output_per_million": 2.0}))
    assert call_cost(model, 1_000_000, 1_000_000) == pytest.approx(3.0)
    register_price(Config(model=model, price={"input_per_million": 10.0, "output_per_million": 20.0}))
    assert call_cost(model, 1_000_000, 1_000_000) == pytest.approx(30.0)


def test_cached_call_is_not_metered():
    lm = build_lm(LMConfig(model="openai/gpt-4o-mini", num_retries=0))
    request = {"messages": [{"role": "user", "content": "cache me"}], "mock_response": "ok"}
    lm(**request)
    meter = UsageMeter()
    with dspy.context(usage_tracker=meter):
        assert lm(**request) == ["ok"]
    assert meter.usage.lm_calls == 0


def test_unknown_model_prices_at_zero(fake_lm):
    lm = build_lm(LMConfig(model="fake/keyword", num_retries=0))
    meter = UsageMeter()
    with dspy.context(usage_tracker=meter):
        lm(messages=[{"role": "user", "content": "improving the instruction"}])
    assert meter.usage.lm_calls == 1 and meter.usage.cost_usd == 0.0


def test_unknown_local_model_is_refused():
    with pytest.raises(LMError, match="unknown local model"):
        build_lm(LMConfig(model="local/nope"))


def test_completion_format_sends_a_raw_prompt_only_to_lms_that_declare_it(fake_lm):
    from agentsearch.lm._factory import LocalLM
    from agentsearch.search_space import CandidateSpec, PredictorSpec, SpecProgram

    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", format="completion"),))
    SpecProgram(spec, {}, LocalLM("fake/keyword", engine="litellm", num_retries=0))(sentence="a joy 1")
    assert fake_lm.last_params.get("raw_prompt") is True
    SpecProgram(spec, {}, build_lm(LMConfig(model="fake/keyword", num_retries=0)))(sentence="a joy 2")
    assert "raw_prompt" not in fake_lm.last_params


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/agentsearch-test-unpriced"])
def test_dspy_records_our_calls_at_the_meters_price_without_its_own_lookup(model, monkeypatch):
    """DSPy prices each call for ``lm.history`` from its own copy of litellm's table (for a name it does not
    hold, a scan of the whole table, twice, on every call); our LMs' calls get the meter's price instead:
    the figure the budget counted, None (not 0) where there is none. A plain ``dspy.LM`` keeps DSPy's."""
    from dspy.clients import costs

    from agentsearch.lm._cost import call_cost
    from agentsearch.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    server = FakeOpenAIServer(latency_s=0.0, answers={"label": ["positive"]}).start()
    looked_up: list[str] = []
    lookup = costs.model_info
    monkeypatch.setattr(costs, "model_info", lambda provider, name, **kw: looked_up.append(name) or lookup(
        provider, name, **kw))
    try:
        ours = build_lm(LMConfig(model=model, api_base=server.base_url, num_retries=0))
        theirs = dspy.LM(model, api_base=server.base_url, num_retries=0, cache=False)
        meter = UsageMeter()
        with dspy.context(usage_tracker=meter):
            ours(messages=[{"role": "user", "content": f"price me {model}"}])
        assert looked_up == []
        entry = ours.history[-1]
        assert entry["usage"]["prompt_tokens"] > 0
        if model.endswith("unpriced"):
            assert entry["cost"] is None and entry["cost_details"]["kind"] == "unknown"
        else:
            expected = call_cost(model, entry["usage"]["prompt_tokens"], entry["usage"]["completion_tokens"])
            assert entry["cost"] == pytest.approx(expected) and entry["cost"] == pytest.approx(meter.usage.cost_usd)
            assert entry["cost"] > 0 and entry["cost_details"]["kind"] == "estimate"
        theirs(messages=[{"role": "user", "content": f"price me too {model}"}])
        assert looked_up  # DSPy's own pricing, untouched for an LM that is not ours
        assert theirs.history[-1]["cost_details"].get("source") != "agentsearch"
    finally:
        server.stop()


def test_a_price_that_cannot_be_computed_leaves_the_call_answered(monkeypatch):
    """Pricing is advisory: if the meter's price raises, the call still answers (no failure that a run would
    count against the program), and its history says the cost is unknown."""
    from agentsearch.lm import _factory
    from agentsearch.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")

    def broken(*args, **kwargs):
        raise RuntimeError("price table unreadable")

    monkeypatch.setattr(_factory, "known_cost", broken)
    server = FakeOpenAIServer(latency_s=0.0, answers={"label": ["positive"]}).start()
    try:
        lm = build_lm(LMConfig(model="openai/gpt-4o-mini", api_base=server.base_url, num_retries=0))
        assert lm(messages=[{"role": "user", "content": "price me, if you can"}])
        assert lm.history[-1]["cost"] is None and lm.history[-1]["cost_details"]["kind"] == "unknown"
    finally:
        server.stop()
