from __future__ import annotations

import threading

import dspy
import pytest

from agentsearch.data import LabelledExample
from agentsearch.evaluators import Evaluator
from agentsearch.lm import build_lm
from agentsearch.metrics import BUILTIN_METRICS
from agentsearch.search_space import CandidateSpec, PredictorSpec, SpecProgram
from agentsearch.task import LMConfig

DEMOS = {"d1": {"sentence": "a wonderful film", "label": "positive"},
         "d2": {"sentence": "a dull film", "label": "negative"}}


def _examples(*sentences_and_labels):
    return [LabelledExample(f"dev:{i}", dspy.Example(sentence=s, label=l).with_inputs("sentence"))
            for i, (s, l) in enumerate(sentences_and_labels)]


def _outcomes(evaluator: Evaluator, program, examples) -> list:
    """Every outcome as the search sees them, unscored ones included (``evaluate`` raises on those)."""
    return [outcome for batch in evaluator.run(program, examples) for outcome in batch]


def _program(fmt: str = "completion") -> SpecProgram:
    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", demo_ids=("d1", "d2"), format=fmt),))
    return SpecProgram(spec, DEMOS, build_lm(LMConfig(model="fake/keyword", num_retries=0)))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_failing_example_scores_zero_and_is_recorded_without_ending_the_run(fake_lm, concurrency):
    examples = _examples(("pure joy", "positive"), ("TOOLONG now", "negative"), ("a mess", "negative"))
    outcomes = {o.example_id: o for o in Evaluator(BUILTIN_METRICS["exact_match"], concurrency=concurrency)
                .evaluate(_program(), examples)}
    assert set(outcomes) == {"dev:0", "dev:1", "dev:2"}
    assert outcomes["dev:1"].score == 0.0 and "context window" in outcomes["dev:1"].error
    assert outcomes["dev:1"].scored and outcomes["dev:1"].failure is None  # the program's failure is a result
    assert outcomes["dev:0"].score == 1.0 and outcomes["dev:2"].score == 1.0
    assert outcomes["dev:0"].prediction == {"label": "positive"}
    assert outcomes["dev:0"].usage.lm_calls == 1 and outcomes["dev:0"].usage.tokens > 0


@pytest.mark.parametrize("concurrency", [1, 3])
def test_an_lm_outage_is_no_result_and_its_attempts_count(fake_lm, concurrency):
    examples = _examples(("pure joy", "positive"), ("EXPLODE now", "negative"))
    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", demo_ids=("d1", "d2"),
                                                   format="completion"),))
    lm = build_lm(LMConfig(model="fake/keyword", num_retries=2))
    lm.retries = 2
    outcomes = {o.example_id: o for o in _outcomes(Evaluator(BUILTIN_METRICS["exact_match"], concurrency=concurrency),
                                                   SpecProgram(spec, DEMOS, lm), examples)}
    lost = outcomes["dev:1"]
    assert not lost.scored and lost.failure is not None and "told to fail" in lost.failure.message
    assert lost.failure.kind.retryable and lost.usage.lm_calls == 3  # three attempts, each counted
    assert outcomes["dev:0"].scored and outcomes["dev:0"].failure is None


def test_an_outage_a_program_swallows_is_still_no_result(fake_lm):
    """An ensemble keeps the members that answered, a design catches a failed call: whatever the program
    makes of an outage, the example's outcome is no result."""
    lm = build_lm(LMConfig(model="fake/keyword", num_retries=0))

    class Swallowing(dspy.Module):
        def forward(self, sentence):
            try:
                lm(messages=[{"role": "user", "content": f"Sentence: {sentence}\nLabel:"}])
            except Exception:
                pass
            return dspy.Prediction(label="positive")

    outcomes = _outcomes(Evaluator(BUILTIN_METRICS["exact_match"]), Swallowing(),
                         _examples(("EXPLODE joy", "positive"), ("pure joy", "positive")))
    assert outcomes[0].failure is not None and not outcomes[0].scored
    assert outcomes[1].scored and outcomes[1].score == 1.0


def test_unparsable_output_is_an_error_not_a_crash(fake_lm):
    bad = dspy.Example(sentence="x", label="positive").with_inputs("sentence")
    program = _program("json")  # the JSON adapter expects JSON; the fake answers plain text
    (outcome,) = Evaluator(BUILTIN_METRICS["exact_match"]).evaluate(program, [LabelledExample("e", bad)])
    assert outcome.score == 0.0 and outcome.error and outcome.prediction is None


def test_cache_makes_a_repeat_evaluation_free(fake_lm):
    examples = _examples(("pure joy", "positive"), ("a mess", "negative"))
    evaluator = Evaluator(BUILTIN_METRICS["exact_match"])
    first = evaluator.evaluate(_program(), examples)
    calls = fake_lm.calls
    second = evaluator.evaluate(_program(), examples)
    assert fake_lm.calls == calls == 2
    assert [o.prediction for o in first] == [o.prediction for o in second]
    assert sum(o.usage.lm_calls for o in second) == 0 and sum(o.usage.lm_calls for o in first) == 2


def test_a_metric_that_raises_is_a_task_error_not_a_score(fake_lm):
    def broken(example, prediction):
        raise ValueError("metric bug")

    (outcome,) = _outcomes(Evaluator(broken), _program(), _examples(("pure joy", "positive")))
    assert not outcome.scored and "metric bug" in outcome.metric_error and outcome.error is None
    assert outcome.prediction == {"label": "positive"}


def test_should_stop_sees_every_accounted_outcome_and_ends_submission(fake_lm):
    examples = _examples(*[(f"joy {i}", "positive") for i in range(10)])
    accounted = []
    yielded = [outcome for batch in Evaluator(BUILTIN_METRICS["exact_match"]).run(
        _program(), examples, should_stop=lambda: len(accounted) >= 3, account=accounted.extend) for outcome in batch]
    assert len(yielded) == len(accounted) == 3


class _Gated(dspy.Module):
    """"slow" answers when released; the others at once. Notes which inputs it has started on."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.started = {sentence: threading.Event() for sentence in ("first", "slow", "third")}

    def forward(self, sentence):
        self.started[sentence].set()
        if sentence == "slow":
            self.release.wait(timeout=30)
        return dspy.Prediction(label="positive")


def test_freed_workers_run_the_next_example_while_the_caller_still_holds_a_batch():
    """Storing a batch must not hold back the next LM calls (the store write was on the critical path)."""
    program = _Gated()
    batches = Evaluator(BUILTIN_METRICS["exact_match"], concurrency=2).run(
        program, _examples(("first", "positive"), ("slow", "positive"), ("third", "positive")))
    try:
        first = next(batches)  # the generator is suspended here, as while the caller writes the batch
        assert "dev:0" in [o.example_id for o in first] and "dev:1" not in [o.example_id for o in first]
        assert program.started["third"].wait(timeout=10)
    finally:
        program.release.set()
    rest = [o.example_id for batch in batches for o in batch]
    assert sorted([*(o.example_id for o in first), *rest]) == ["dev:0", "dev:1", "dev:2"]


class _Counting(dspy.Module):
    """Answers at once; notes each input as it starts and as it ends."""

    def __init__(self, sentences) -> None:
        super().__init__()
        self.started = {sentence: threading.Event() for sentence in sentences}
        self.ended = {sentence: threading.Event() for sentence in sentences}

    def forward(self, sentence):
        self.started[sentence].set()
        self.ended[sentence].set()
        return dspy.Prediction(label="positive")


def test_a_single_worker_goes_on_without_the_caller_but_no_further_than_one_example_ahead():
    """At concurrency 1 the worker takes the next example itself (no hand-over through the caller on
    every example), but runs at most one example beyond those the caller has received."""
    sentences = [f"s{i}" for i in range(6)]
    program = _Counting(sentences)
    batches = Evaluator(BUILTIN_METRICS["exact_match"], concurrency=1).run(
        program, _examples(*[(sentence, "positive") for sentence in sentences]))
    first = next(batches)  # held, as while the caller writes it: the worker does not wait for it
    received = {o.example_id for o in first}
    ahead = [f"s{len(received)}", f"s{len(received) + 1}"]
    assert program.ended[ahead[0]].wait(timeout=10) and program.ended[ahead[1]].wait(timeout=10)
    batches.close()
    beyond = sentences[len(received) + 2:]
    assert beyond and not any(program.started[sentence].is_set() for sentence in beyond)


def test_error_texts_never_store_a_key(fake_lm, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-1234567890abcdef")

    def leaky(example, prediction):
        raise ValueError("auth failed for sk-test-1234567890abcdef and sk-otherkey0987654321")

    (outcome,) = _outcomes(Evaluator(leaky), _program(), _examples(("pure joy", "positive")))
    assert "sk-" not in outcome.metric_error and "***" in outcome.metric_error


def test_program_calls_count_the_calls_dspys_cache_answers_and_lm_calls_do_not(fake_lm):
    examples = _examples(("pure joy", "positive"), ("a mess", "negative"))
    evaluator = Evaluator(BUILTIN_METRICS["exact_match"])
    first = evaluator.evaluate(_program(), examples)
    again = evaluator.evaluate(_program(), examples)  # identical program, identical inputs: all from the cache
    assert [o.usage.lm_calls for o in first] == [1, 1] and [o.program_calls for o in first] == [1, 1]
    assert [o.usage.lm_calls for o in again] == [0, 0] and [o.program_calls for o in again] == [1, 1]


def test_a_program_with_an_lm_of_its_own_still_has_every_call_counted(fake_lm):
    """Our LMs count a program's calls themselves (no DSPy callback on every module call); an LM that
    is not ours is counted by the callback: cache hits included either way."""
    from agentsearch.evaluators._evaluator import only_our_lms

    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", demo_ids=("d1", "d2"),
                                                   format="completion"),))
    foreign = SpecProgram(spec, DEMOS, dspy.LM("fake/keyword", cache=True, num_retries=0))
    assert only_our_lms(_program()) and not only_our_lms(foreign)
    examples = _examples(("pure joy", "positive"), ("a mess", "negative"))
    evaluator = Evaluator(BUILTIN_METRICS["exact_match"])
    first, again = evaluator.evaluate(foreign, examples), evaluator.evaluate(foreign, examples)
    assert [o.program_calls for o in first] == [1, 1] and [o.program_calls for o in again] == [1, 1]
    assert [o.usage.lm_calls for o in again] == [0, 0]


def test_evaluate_never_returns_an_outage_or_a_metric_error_as_a_score(fake_lm):
    from agentsearch.exceptions import LMUnavailableError, MetricError

    with pytest.raises(LMUnavailableError, match="told to fail.*1 examples left unscored"):
        Evaluator(BUILTIN_METRICS["exact_match"]).evaluate(_program(), _examples(("EXPLODE joy", "positive"),
                                                                                ("pure joy", "positive")))

    def broken(example, prediction):
        raise ValueError("metric bug")

    with pytest.raises(MetricError, match="metric broken raised on example 'dev:0': ValueError: metric bug"):
        Evaluator(broken).evaluate(_program(), _examples(("pure joy", "positive")))


def _gated_program(reserve) -> SpecProgram:
    from agentsearch.lm import CallGate

    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", demo_ids=("d1", "d2"),
                                                   format="completion"),))
    gate = CallGate(reserve, lambda count: None, block=1, limit=2)
    return SpecProgram(spec, DEMOS, build_lm(LMConfig(model="fake/keyword", num_retries=0), gate=gate))


def test_a_call_the_budget_refuses_leaves_its_example_unscored(fake_lm):
    granted = iter([1])  # one call, then the store grants nothing
    outcomes = _outcomes(Evaluator(BUILTIN_METRICS["exact_match"]), _gated_program(lambda n: next(granted, 0)),
                         _examples(("pure joy", "positive"), ("a mess", "negative")))
    assert [o.scored for o in outcomes] == [True, False]
    assert outcomes[1].failure.kind.value == "budget used up" and outcomes[1].usage.lm_calls == 0


def test_a_store_failing_to_reserve_a_call_stops_the_evaluation_not_scores_it(fake_lm):
    from agentsearch.exceptions import StorageError

    def reserve(count: int) -> int:
        raise StorageError("storage 'postgresql://…': connection refused")

    with pytest.raises(StorageError):
        _outcomes(Evaluator(BUILTIN_METRICS["exact_match"]), _gated_program(reserve),
                  _examples(("pure joy", "positive")))
