"""Scoring a program on a split, one record per example, errors included.

An example that raises (LM failure, unparsable output, metric error) scores 0 and keeps its error
text; it never ends the run. Results reach the calling thread as they finish, in batches of those
that finished together, so the store can write each batch at once (one transaction, however many
workers) and a crash loses at most the examples in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

import dspy

from agentsearch.data import LabelledExample
from agentsearch.lm import Usage, UsageMeter, redact_secrets
from agentsearch.metrics import Metric


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


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


class Evaluator:
    def __init__(self, metric: Metric, *, concurrency: int = 1) -> None:
        self.metric = metric
        self.concurrency = concurrency

    def _score_one(self, program: dspy.Module, item: LabelledExample) -> ExampleOutcome:
        meter = UsageMeter()
        started = time.perf_counter()
        prediction: dict[str, Any] | None = None
        error = None
        score = 0.0
        with dspy.context(usage_tracker=meter, callbacks=[*dspy.settings.callbacks, meter.call_counter]):
            try:
                result = program(**item.example.inputs())
                prediction = {key: _jsonable(value) for key, value in result.items()}
                score = float(self.metric(item.example, result))
            except Exception as exc:
                error = redact_secrets(f"{type(exc).__name__}: {exc}")[:2000]
        return ExampleOutcome(item.id, prediction, score, error, meter.usage, time.perf_counter() - started,
                              meter.calls_made)

    def run(
        self,
        program: dspy.Module,
        examples: Iterable[LabelledExample],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        account: Callable[[list[ExampleOutcome]], None] = lambda outcomes: None,
    ) -> Iterator[list[ExampleOutcome]]:
        """Yield the outcomes that finished since the last yield; stop submitting when ``should_stop()`` turns true.

        Each batch goes to ``account`` (the budget) first; with several workers, the freed ones then
        get new examples before the batch is yielded, so storing it overlaps the next LM calls
        instead of holding them all back, and ``should_stop`` still sees every finished example's
        cost when it decides. A single worker waits for the caller: nothing is in flight while a
        batch is stored, so a crash there costs no call made for nothing.
        """
        pending: set[Future[ExampleOutcome]] = set()
        # Futures announce themselves as they finish: waiting costs the same with 64 in flight as
        # with one (``concurrent.futures.wait`` re-registers on every pending future each time).
        finished: SimpleQueue[Future[ExampleOutcome]] = SimpleQueue()
        items = iter(examples)

        def refill(pool: ThreadPoolExecutor) -> None:
            while len(pending) < self.concurrency and not should_stop():
                item = next(items, None)
                if item is None:
                    return
                future = pool.submit(self._score_one, program, item)
                future.add_done_callback(finished.put)
                pending.add(future)

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="agentsearch-eval") as pool:
            try:
                refill(pool)
                while pending:
                    done = [finished.get()]
                    while not finished.empty():
                        done.append(finished.get())
                    pending.difference_update(done)
                    outcomes = [future.result() for future in done]
                    account(outcomes)
                    if self.concurrency > 1:
                        refill(pool)
                    yield outcomes
                    refill(pool)
            finally:
                for future in pending:
                    future.cancel()

    def evaluate(self, program: dspy.Module, examples: Iterable[LabelledExample]) -> list[ExampleOutcome]:
        return [outcome for batch in self.run(program, examples) for outcome in batch]
