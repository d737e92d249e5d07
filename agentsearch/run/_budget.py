"""Run budgets: LM calls, dollars and wall time, shared by every worker of the run.

LM calls are reserved from the run's counter in the store before they are made (``lm.CallGate``),
so workers together never pass ``max_lm_calls`` by more than the calls already reserved. Dollars
can only be counted once a call is priced: with ``max_cost_usd`` the run's total is read from the
store (every worker's results) at most every ``REFRESH_S``, plus what this worker spent since.
Wall time counts this worker only.

Part of ``max_lm_calls`` can be held back from the search for what follows it (re-scoring the
finalists on held-out examples, ``search.holdout``): while held, the gate grants calls only up to
``max_lm_calls - held``, so the search stops there; ``release_hold`` gives the rest to the finish.
"""

from __future__ import annotations

import threading
import time

from agentsearch.lm import CallGate, Usage
from agentsearch.store import BaseStorage, RunUsage
from agentsearch.task import BudgetConfig

REFRESH_S = 2.0


class Budget:
    def __init__(self, config: BudgetConfig, storage: BaseStorage, run_id: int, *, block: int) -> None:
        self.config = config
        self.storage, self.run_id = storage, run_id
        self._lock = threading.Lock()
        self._stored = storage.run_usage(run_id)
        self._read_at = time.monotonic()
        self._since = Usage()
        """Spent by this worker since the store was last read."""
        self._started = time.monotonic()
        self.gate: CallGate | None = None
        self._held = 0
        """Calls of ``max_lm_calls`` kept from the search for the finish (see ``hold``)."""
        if config.max_lm_calls is not None:
            limit = config.max_lm_calls
            self.gate = CallGate(lambda wanted: storage.reserve_lm_calls(run_id, wanted, self.limit),
                                 lambda count: storage.release_lm_calls(run_id, count), block=block, limit=limit)

    @property
    def limit(self) -> int:
        """The calls the run may reserve now: ``max_lm_calls`` less what is held back."""
        assert self.config.max_lm_calls is not None
        return max(0, self.config.max_lm_calls - self._held)

    def hold(self, calls: int) -> None:
        """Keep ``calls`` of ``max_lm_calls`` from the search (replacing what was held): the work after
        it needs them. Calls already reserved are not taken back, so holding more than is left stops the
        search at once. Without a call budget there is nothing to hold."""
        if self.gate is None:
            return
        with self._lock:
            self._held = max(0, min(calls, self.config.max_lm_calls or 0))
        self.gate.used_up = False  # the limit moved: ask the store again

    def release_hold(self) -> None:
        """The search is over: what was held back is the finish's to spend."""
        self.hold(0)

    def spend(self, usage: Usage) -> None:
        with self._lock:
            self._since.add(usage)

    def _usage(self) -> RunUsage:
        """The run's spend: the store's total as last read plus this worker's since. Only a dollar budget,
        which other workers' results can use up, needs the store read again (a sum over every result)."""
        with self._lock:
            shared = self.config.max_cost_usd is not None
            if shared and time.monotonic() - self._read_at >= REFRESH_S:
                self._stored, self._read_at, self._since = self.storage.run_usage(self.run_id), time.monotonic(), Usage()
            stored, since = self._stored, self._since
        return RunUsage(lm_calls=stored.lm_calls + since.lm_calls, tokens=stored.tokens + since.tokens,
                        cost_usd=stored.cost_usd + since.cost_usd)

    def exhausted(self) -> str | None:
        """The name and figure of the first budget used up, or None."""
        config = self.config
        if self.gate is not None and (self.gate.used_up or self.gate.exhausted()):
            held = f"; {self._held} held back for choosing among the finalists" if self._held else ""
            return f"budget max_lm_calls={config.max_lm_calls} used up ({self._usage().lm_calls} LM calls{held})"
        if config.max_cost_usd is not None:
            spent = self._usage().cost_usd
            if spent >= config.max_cost_usd:
                return f"budget max_cost_usd={config.max_cost_usd} used up (${spent:.4f})"
        elapsed = time.monotonic() - self._started
        if config.max_wall_s is not None and elapsed >= config.max_wall_s:
            return f"budget max_wall_s={config.max_wall_s} used up ({elapsed:.0f} s)"
        return None

    def as_usage(self) -> RunUsage:
        return self._usage()

    def close(self) -> None:
        """Return the calls this worker reserved and did not make."""
        if self.gate is not None:
            self.gate.close()
