"""The fake OpenAI-compatible server: what litellm sends reaches it, answers parse, and it counts what it served."""

from __future__ import annotations

import json
import urllib.request

import dspy
import pytest

import agentsearch
from agentsearch.data import LabelledExample
from agentsearch.evaluators import Evaluator
from agentsearch.lm import build_lm
from agentsearch.metrics import BUILTIN_METRICS
from agentsearch.search_space import CandidateSpec, PredictorSpec, SpecProgram
from agentsearch.task import LMConfig, validate_task
from agentsearch.testing import FakeOpenAIServer, running_server
from tests.conftest import base_task

ANSWERS = {"label": ["positive", "negative"]}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    fake = FakeOpenAIServer(latency_s=0.2, answers=ANSWERS).start()
    yield fake
    fake.stop()


def _examples(count: int) -> list[LabelledExample]:
    return [LabelledExample(f"dev:{i}", dspy.Example(sentence=f"review {i}", label="positive").with_inputs("sentence"))
            for i in range(count)]


def _program(server: FakeOpenAIServer, fmt: str) -> SpecProgram:
    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", format=fmt),))
    return SpecProgram(spec, {}, build_lm(LMConfig(model="openai/fake", api_base=server.base_url, num_retries=0)))


@pytest.mark.parametrize("fmt", ["chat", "json"])
def test_concurrent_evaluation_reaches_the_server_and_parses_its_answers(server, fmt):
    outcomes = Evaluator(BUILTIN_METRICS["exact_match"], concurrency=8).evaluate(_program(server, fmt), _examples(8))
    assert [o.error for o in outcomes] == [None] * 8
    assert {o.prediction["label"] for o in outcomes} <= {"positive", "negative"}
    stats = server.stats()
    assert stats.requests == 8 and stats.held_s >= 8 * 0.2
    assert stats.max_in_flight > 1  # the evaluator's workers overlapped on the server


def test_answers_are_a_function_of_the_request():
    fake = FakeOpenAIServer(answers=ANSWERS)
    system = "Your input fields are:\n1. `sentence` (str):\nYour output fields are:\n1. `reasoning` (str):\n2. `label` (str):\n"

    def ask(text: str, **extra) -> str:
        return fake.answer({"messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
                            **extra})

    first = ask("a film")
    assert first == ask("a film") and first.startswith("[[ ## reasoning ## ]]\nreasoning ")
    assert first.endswith("[[ ## completed ## ]]")
    labels = {json.loads(ask(f"film {i}", response_format={"type": "json_object"}))["label"] for i in range(20)}
    assert labels == {"positive", "negative"}  # varied across prompts, always one of the given values
    assert fake.answer({"messages": [{"role": "user", "content": "hello"}]}).startswith("text ")


def test_a_search_against_the_server_in_a_child_process_is_counted_there(task_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    url = f"sqlite:///{task_dir / 'runs.db'}"
    with running_server(latency_s=0.0, answers=ANSWERS) as child:
        task = validate_task(base_task(**{"lm.model": "openai/fake", "lm.api_base": child.base_url,
                                          "search.max_candidates": 3}), source="test", base_dir=task_dir)
        result = agentsearch.optimize(task, storage=url)
        served = child.stats().requests
        with urllib.request.urlopen(child.base_url + "/models") as response:
            assert json.load(response)["data"][0]["id"] == "fake"
    test_calls = sum(e.lm_calls for e in agentsearch.get_storage(url).list_evaluations(run_id=result.run.id)
                     if e.split == "test")
    assert served > test_calls > 0
    assert served == result.usage.lm_calls  # every call agentsearch paid for reached the server, and no other
