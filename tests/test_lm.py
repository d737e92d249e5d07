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
