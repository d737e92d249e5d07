"""What one worker of a run holds while it works: the task, the store, its identity, the LM, the budget, the data.

Built once per worker by ``run._lifecycle``; every part of the run (evaluation, the view optimizers
read, the loop, the result) takes what it needs from here rather than from each other.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from agentsearch._callbacks import SearchCallback
from agentsearch.data import LabelledExample, load_split
from agentsearch.evaluators import AgentLimits, Evaluator
from agentsearch.lm import Usage, build_lm, cost_measure
from agentsearch.metrics import task_metric
from agentsearch.run._budget import Budget
from agentsearch.store import BaseStorage, RunRecord, Split
from agentsearch.store._base import LEASE_S
from agentsearch.task import Task


def worker_name() -> str:
    """``host:pid:tag``: unique per process and run (a pid may come back after a reboot; the tag does not)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def held_out(train: list[LabelledExample], task: Task) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """Train without the examples ``search.holdout`` keeps for choosing among finalists, and those
    (a seeded sample, the same in every worker; at most half of train, so demos remain)."""
    count = min(task.search.holdout, len(train) // 2)
    ids = sorted(item.id for item in train)
    kept = set(random.Random(f"{task.seed}:holdout").sample(ids, count))
    return [item for item in train if item.id not in kept], [item for item in train if item.id in kept]


@dataclass
class RunContext:
    task: Task
    storage: BaseStorage
    run: RunRecord
    callback: SearchCallback
    holder: str
    worker: int
    splits: dict[str, list[LabelledExample]]
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the worker stops (signal, outage, error): its LM calls in flight start no new attempt."""
    stop_reason: str | None = None
    """Why the search ended early: a budget (the run is 'stopped' and can be resumed with a larger one)."""
    end_note: str | None = None
    """Why the search ended before max_candidates without a budget (the space ran out)."""
    demos: dict[str, dict[str, Any]] = field(default_factory=dict)
    lease_s: float = LEASE_S

    def __post_init__(self) -> None:
        task = self.task
        self.budget = Budget(task.budget, self.storage, self.run.id, block=task.concurrency)
        self.lm = build_lm(task.lm, cancelled=self.cancelled, gate=self.budget.gate)
        self.evaluator = Evaluator(task_metric(task, self.splits), concurrency=task.concurrency,
                                   metric_name=task.metric)
        # Minibatches for pruning are prefixes of dev, so dev is shuffled once (by the task seed) to make
        # every prefix a fair sample; each example's position is its step in the Optuna study.
        random.Random(task.seed).shuffle(self.splits[Split.DEV])
        if task.search.holdout and Split.SELECT not in self.splits:
            self.splits[Split.TRAIN], self.splits[Split.SELECT] = held_out(self.splits[Split.TRAIN], task)
        self.dev_step = {item.id: step for step, item in enumerate(self.splits[Split.DEV])}
        self.cost_measure = cost_measure(task.lm.model)
        agent = task.search.agent
        self.limits = AgentLimits(cpu_s=agent.cpu_s, wall_s=agent.wall_s, memory_mb=agent.memory_mb,
                                  max_lm_calls=agent.max_lm_calls, max_tokens=agent.max_tokens,
                                  max_prompt_chars=agent.max_prompt_chars)

    def proposer(self) -> Any:
        return build_lm(self.task.effective_proposer_lm, cancelled=self.cancelled, gate=self.budget.gate)

    def charge(self, usage: Usage) -> None:
        """Book calls made outside any example (proposals, the preflight check)."""
        self.storage.add_proposer_usage(self.run.id, usage.lm_calls, usage.tokens, usage.cost_usd)
        self.budget.spend(usage)

    def split(self, name: str) -> list[LabelledExample]:
        if name not in self.splits:
            self.splits[name] = load_split(self.task, name)
        return self.splits[name]
