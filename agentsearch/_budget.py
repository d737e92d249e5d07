"""Run budgets: LM calls, dollars and wall time, counted across resumes from the store."""

from __future__ import annotations

import time

from agentsearch.lm import Usage
from agentsearch.store import RunUsage
from agentsearch.task import BudgetConfig


class Budget:
    def __init__(self, config: BudgetConfig, spent: RunUsage) -> None:
        self.config = config
        self.lm_calls = spent.lm_calls
        self.cost_usd = spent.cost_usd
        self.tokens = spent.tokens
        self._started = time.monotonic()

    def spend(self, usage: Usage) -> None:
        self.lm_calls += usage.lm_calls
        self.cost_usd += usage.cost_usd
        self.tokens += usage.tokens

    def exhausted(self) -> str | None:
        """The name and figure of the first budget used up, or None. Wall time counts this process only."""
        config = self.config
        if config.max_lm_calls is not None and self.lm_calls >= config.max_lm_calls:
            return f"budget max_lm_calls={config.max_lm_calls} used up ({self.lm_calls} LM calls)"
        if config.max_cost_usd is not None and self.cost_usd >= config.max_cost_usd:
            return f"budget max_cost_usd={config.max_cost_usd} used up (${self.cost_usd:.4f})"
        elapsed = time.monotonic() - self._started
        if config.max_wall_s is not None and elapsed >= config.max_wall_s:
            return f"budget max_wall_s={config.max_wall_s} used up ({elapsed:.0f} s)"
        return None

    def as_usage(self) -> RunUsage:
        return RunUsage(lm_calls=self.lm_calls, tokens=self.tokens, cost_usd=self.cost_usd)
