"""Scoring a program on a split, one record per example, errors included.

Three ways an example can go wrong, kept apart because only one of them is a score:

- the *program* failed (an unparsable answer, a design's exception, a prompt over the context
  window): the example scores 0 and keeps its error text, a result like any other;
- the *LM* failed (authentication, connection, 5xx/429 after retries, a timeout) on any call the
  program made, even one it caught: the outcome carries ``failure`` and is no result at all;
- the *metric* raised: the outcome carries ``metric_error``, a defect of the task, not a 0.

A program whose LM calls sample (an agent design calling at a temperature above 0) can ask for
rounds (its ``sample_repeats``): each example is then run up to that many times, each round's
sampled calls cached apart, and its score is the mean over the rounds (AFlow's repeated
evaluation); a round that sampled nothing ends the repeats, since another would give the same
answers from DSPy's cache.

Results reach the calling thread as they finish, in batches of those that finished together, so the
store can write each batch at once (one transaction, however many workers). Each worker thread takes
its next example itself, so no example waits on the calling thread (at concurrency 1 the store write
used to sit between two examples' LM calls); the workers run at most ``concurrency`` examples ahead
of what the caller has received, so a crash loses at most twice ``concurrency`` examples: those in
flight and those finished while the caller was storing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

import dspy

from agentsearch.data import LabelledExample
from agentsearch.evaluators._isolation import IsolationUnavailableError
from agentsearch.exceptions import LMUnavailableError, MetricError, StorageError
from agentsearch.lm import Usage, UsageMeter, redact_secrets
from agentsearch.metrics import Metric

if TYPE_CHECKING:
    from agentsearch.lm._failures import LMFailure


@dataclass(frozen=True)
class ExampleOutcome:
    example_id: str
    prediction: dict[str, Any] | None
    score: float
    error: str | None
    usage: Usage
    """What the example cost the run: calls DSPy's cache answered are free."""
    latency_s: float
    program_calls: int = 0
    """LM calls the program made, cached ones included."""
    failure: LMFailure | None = None
    """An LM call failed for infrastructure reasons: this outcome is not a result and must not be stored."""
    metric_error: str | None = None
    """The metric raised: a task error, not a score."""

    @property
    def scored(self) -> bool:
        return self.failure is None and self.metric_error is None


@dataclass
class _WorkerEnd:
    """An evaluation thread is done: no example left, told to stop, or ``error`` raised."""

    error: BaseException | None = None


@dataclass
class SampleRound:
    """Which round of an example a program is running (see ``Evaluator``); a program that makes a sampled
    LM call sets ``sampled``, and keeps each round's samples apart in DSPy's cache (its own rollout ids)."""

    index: int = 0
    sampled: bool = False


_SAMPLE_ROUND: ContextVar[SampleRound | None] = ContextVar("agentsearch_sample_round", default=None)


def sample_round() -> SampleRound | None:
    """The round the evaluator is running on this thread; None outside an evaluation."""
    return _SAMPLE_ROUND.get()


def _rounds(program: dspy.Module) -> int:
    """The rounds the program asks for (``sample_repeats``, an agent design's), 1 without."""
    rounds = getattr(program, "sample_repeats", 1)
    return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) and rounds > 1 else 1


def only_our_lms(program: dspy.Module) -> bool:
    """Whether every LM the program can reach is ours (``RetryingLM``, which counts its calls on the
    thread's meter): the configured one and any module's own (a built program's, a predictor's). A
    program that brings another LM has its calls counted by a DSPy callback instead (see
    ``UsageMeter.lm_counts``)."""
    from agentsearch.lm._factory import RetryingLM

    lms = [dspy.settings.lm, *(getattr(module, "lm", None) for _, module in program.named_sub_modules())]
    found = [lm for lm in lms if lm is not None]
    return bool(found) and all(isinstance(lm, RetryingLM) for lm in found)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Evaluator:
    def __init__(self, metric: Metric, *, concurrency: int = 1, metric_name: str | None = None) -> None:
        self.metric = metric
        self.concurrency = concurrency
        self.metric_name = metric_name or getattr(metric, "__name__", "the metric")

    def unscored_error(self, outcomes: Iterable[ExampleOutcome], split: str | None = None
                       ) -> MetricError | LMUnavailableError | None:
        """Why some of ``outcomes`` are no result: the metric raised (first), or the LM was unavailable."""
        outcomes = list(outcomes)
        broken = next((outcome for outcome in outcomes if outcome.metric_error), None)
        if broken is not None:
            where = f"{split} example" if split else "example"
            return MetricError(f"metric {self.metric_name} raised on {where} {broken.example_id!r}: "
                               f"{broken.metric_error}")
        lost = [outcome for outcome in outcomes if outcome.failure is not None]
        return LMUnavailableError(lost[-1].failure, unscored=len(lost)) if lost else None

    def _score_one(self, program: dspy.Module, item: LabelledExample, lm_counts: bool = False) -> ExampleOutcome:
        meter = UsageMeter(lm_counts=lm_counts)
        started = time.perf_counter()
        prediction: dict[str, Any] | None = None
        error = metric_error = None
        scores: list[float] = []
        counting = {} if lm_counts else {"callbacks": [*dspy.settings.callbacks, meter.call_counter]}
        with dspy.context(usage_tracker=meter, **counting):
            for index in range(_rounds(program)):
                sample = SampleRound(index)
                token = _SAMPLE_ROUND.set(sample)
                try:
                    answer, failed, score, metric_error = self._round(program, item, meter)
                finally:
                    _SAMPLE_ROUND.reset(token)
                prediction = prediction if prediction is not None else answer
                error = error or failed
                if meter.unavailable or metric_error is not None:
                    break  # no result: the rounds already run do not make one
                scores.append(score)
                if not sample.sampled:
                    break
        failure = meter.unavailable[-1] if meter.unavailable else None
        return ExampleOutcome(item.id, prediction, sum(scores) / len(scores) if scores else 0.0, error, meter.usage,
                              time.perf_counter() - started, meter.calls_made, failure, metric_error)

    def _round(self, program: dspy.Module, item: LabelledExample, meter: UsageMeter
               ) -> tuple[dict[str, Any] | None, str | None, float, str | None]:
        """One run of the program on the example: (prediction, the program's error, score, the metric's error)."""
        prediction: dict[str, Any] | None = None
        error = metric_error = None
        score = 0.0
        try:
            result = program(**item.example.inputs())
            prediction = {key: _jsonable(value) for key, value in result.items()}
        except LMUnavailableError:
            pass  # the meter has it: not a result
        except (IsolationUnavailableError, StorageError):
            # no sandbox, or the store (where the LM-call budget is reserved) failing: a machine's
            # defect and no program's, so never a score of 0
            raise
        except Exception as exc:
            error = redact_secrets(f"{type(exc).__name__}: {exc}")[:2000]
        if prediction is not None and not meter.unavailable:
            try:
                score = float(self.metric(item.example, result))
            except Exception as exc:
                metric_error = redact_secrets(f"{type(exc).__name__}: {exc}")[:2000]
        return prediction, error, score, metric_error

    def run(
        self,
        program: dspy.Module,
        examples: Iterable[LabelledExample],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        account: Callable[[list[ExampleOutcome]], None] = lambda outcomes: None,
    ) -> Iterator[list[ExampleOutcome]]:
        """Yield the outcomes that finished since the last yield; stop starting examples when ``should_stop()`` turns true.

        ``concurrency`` threads each take the next example themselves as soon as they finish one:
        no example waits for this generator's caller (storing a batch, reporting progress) to hand
        it over, at one worker as at 64. Before taking an example a thread gives its finished
        outcome to ``account`` (the budget), then asks ``should_stop``, so the decision sees every
        finished example's cost; the two are called from the worker threads, one call at a time.
        The workers run at most ``concurrency`` examples ahead of what the caller has received, so
        a caller that is slow to store (or to notice an outage) holds them back rather than lose
        track. A crash while a batch is stored loses the examples in flight and those finished and
        not yet received: at most twice ``concurrency``. Close the generator (or use
        ``contextlib.closing``) when leaving early: it returns without waiting for calls in flight,
        whose threads end when their call does.
        """
        items = iter(examples)
        lm_counts = only_our_lms(program)
        size = len(examples) if isinstance(examples, Sized) else self.concurrency
        workers = max(1, min(self.concurrency, size))
        taking = threading.Lock()  # one thread at a time takes an example, accounts and asks should_stop
        finished: SimpleQueue[ExampleOutcome | _WorkerEnd] = SimpleQueue()
        # a slot is an example started or finished and not yet received: at most 2 x concurrency
        slots = threading.Semaphore(2 * self.concurrency)
        leaving = threading.Event()

        def take(outcome: ExampleOutcome | None) -> LabelledExample | None:
            with taking:
                if outcome is not None:
                    account([outcome])
                    finished.put(outcome)
                if leaving.is_set() or should_stop():
                    return None
                return next(items, None)

        def work() -> None:
            end = _WorkerEnd()
            outcome: ExampleOutcome | None = None
            try:
                while True:
                    slots.acquire()
                    if leaving.is_set():
                        break
                    item, outcome = take(outcome), None
                    if item is None:
                        break
                    outcome = self._score_one(program, item, lm_counts)
                if outcome is not None:  # left early: the finished example still reaches the caller
                    finished.put(outcome)
            except BaseException as exc:  # a machine's defect (no sandbox, a failing store): the caller raises it
                end.error = exc
            finally:
                finished.put(end)

        threads = [threading.Thread(target=work, name=f"agentsearch-eval-{index}") for index in range(workers)]
        completed = False
        try:
            for thread in threads:
                thread.start()
            running = len(threads)
            while running:
                received = [finished.get()]
                while not finished.empty():
                    received.append(finished.get())
                outcomes = [entry for entry in received if isinstance(entry, ExampleOutcome)]
                ends = [entry for entry in received if isinstance(entry, _WorkerEnd)]
                running -= len(ends)
                error = next((end.error for end in ends if end.error is not None), None)
                if error is not None:
                    leaving.set()  # no thread starts another example; those finished are still handed over
                if outcomes:
                    slots.release(len(outcomes))
                    yield outcomes
                if error is not None:
                    raise error
            completed = True
        finally:
            if not completed:
                # Stopped early (Ctrl-C, an outage, the caller closed us): do not wait for calls in
                # flight, which may hang until their timeout; their threads end on their own.
                leaving.set()
                slots.release(len(threads))

    def evaluate(self, program: dspy.Module, examples: Iterable[LabelledExample]) -> list[ExampleOutcome]:
        """Every example's outcome, all of them results: raises MetricError or LMUnavailableError (after
        scoring the rest) rather than return a list whose mean would count an outage as a 0."""
        outcomes = [outcome for batch in self.run(program, examples) for outcome in batch]
        error = self.unscored_error(outcomes)
        if error is not None:
            raise error
        return outcomes
