"""``AgentSearch``: agentsearch as a DSPy optimizer, for a program you already have.

``AgentSearch(metric=...).compile(student, trainset=..., valset=...)`` is a drop-in for DSPy's
``MIPROv2(...).compile``: it searches the instructions and demos of the student's named predictors
(demos bootstrapped from the student's own passing traces on train) through the same run loop,
store and budget as a task file, and returns an optimized deep copy of the student: your class,
your ``forward``. Asked to (``formats=[...]``, ``levels=["prompt", "module"]``), it also searches
each predictor's prompt format and reasoning kind; those choices are beyond what DSPy's saved
state holds, so such a program is reloaded with ``agentsearch.load_into`` rather than plain
``load`` (by default the search stays within what plain DSPy reloads). The run is in the store like any other (``agentsearch runs``); compiling again
with the same student, data and settings continues that run, so a killed compile resumes without
repeating a finished evaluation.

The student, the metric and the examples stay in this process: the task kept with the run names
them by in-process references, and the examples are written as JSON lines beside the store (they
must be JSON values). Another process cannot join such a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
from dspy.teleprompt.teleprompt import Teleprompter

from agentsearch._references import in_process_reference
from agentsearch.exceptions import TaskSpecError


def _lm_config(lm: Any) -> dict[str, Any]:
    """The task file's ``lm`` block for a ``dspy.LM`` (its model and call settings; never its key)."""
    if isinstance(lm, str):
        return {"model": lm}
    if isinstance(lm, dict):
        return dict(lm)
    if lm is None or not getattr(lm, "model", None):
        raise TaskSpecError("AgentSearch: no LM: pass lm=dspy.LM(...) or configure one with dspy.configure(lm=...)")
    kwargs = getattr(lm, "kwargs", {}) or {}
    config: dict[str, Any] = {"model": lm.model}
    for key in ("temperature", "max_tokens", "api_base"):
        if kwargs.get(key) is not None:
            config[key] = kwargs[key]
    if getattr(lm, "num_retries", None) is not None:
        config["num_retries"] = lm.num_retries
    return config


def _inputs(example: Any, what: str) -> list[str]:
    if not isinstance(example, dspy.Example):
        raise TaskSpecError(f"AgentSearch.compile: {what} is {type(example).__name__}, not a dspy.Example")
    try:
        return list(example.inputs().keys())
    except ValueError:  # DSPy: with_inputs was never called
        raise TaskSpecError(f"AgentSearch.compile: {what} names no inputs (call .with_inputs(...))") from None


def _rows(examples: Sequence[dspy.Example], inputs: list[str], outputs: list[str], what: str) -> list[dict[str, Any]]:
    rows = []
    for i, example in enumerate(examples):
        names = _inputs(example, f"{what}[{i}]")
        if sorted(names) != sorted(inputs):
            raise TaskSpecError(f"AgentSearch.compile: {what}[{i}] has inputs {sorted(names)}, the "
                                f"first example {sorted(inputs)} (call .with_inputs(...) on every example)")
        row = {name: example[name] for name in [*inputs, *outputs] if name in example}
        try:
            json.dumps(row)
        except TypeError as exc:
            raise TaskSpecError(f"AgentSearch.compile: {what}[{i}]: fields must be JSON values ({exc})") from None
        rows.append(row)
    return rows


class AgentSearch(Teleprompter):
    """Search a DSPy program's prompts with agentsearch; ``compile`` returns the optimized copy.

    ``metric(example, prediction, trace=None)`` as DSPy's optimizers take it (a float, 1 = right).
    ``lm``: a ``dspy.LM`` (default: the configured one); ``proposer_lm`` writes instructions
    (default: ``lm``). ``max_candidates`` programs are scored on the validation set, the student as
    it is among them; ``max_lm_calls`` bounds the whole search. ``storage``: a SQLAlchemy URL
    (default ``sqlite:///agentsearch.db``). Other keyword arguments are ``search`` fields of a task
    file (``num_instructions``, ``max_demos``, ``num_demo_sets``, ``bootstrap_examples``,
    ``optimizer``, ``pruner``, ``minibatch``, ``levels``, ``formats``, ``modules``). ``run`` names
    the run (default: from the student, data and settings, so the same compile continues it).

    ``levels`` (default ``["prompt"]``): add ``"module"`` to search each predictor's reasoning kind
    (predict as written, chain of thought, self-consistency, best-of-n), where its signature allows.
    ``reward(inputs: dict, outputs: dict) -> float`` lets best-of-n pick among samples by your
    reward instead of an LM verdict (never the metric: it needs the gold answer). ``formats``
    (default ``["chat"]``: the adapter DSPy is configured with): e.g. ``["chat", "json",
    "completion"]`` to search each predictor's prompt format. A program whose kinds or formats
    changed reloads with ``agentsearch.load_into(MyProgram(), path)``; plain ``load`` restores only
    its instructions and demos.
    """

    def __init__(self, metric: Callable[..., Any], *, lm: Any = None, proposer_lm: Any = None,
                 max_candidates: int = 20, max_lm_calls: int | None = None, storage: str | None = None,
                 run: str | None = None, concurrency: int = 1, seed: int = 0, callback: Any = None,
                 reward: Callable[[dict, dict], float] | None = None, **search: Any) -> None:
        super().__init__()
        self.metric = metric
        self.lm, self.proposer_lm = lm, proposer_lm
        self.max_candidates, self.max_lm_calls = max_candidates, max_lm_calls
        self.storage, self.run, self.concurrency, self.seed = storage, run, concurrency, seed
        self.search = search
        self.reward = reward
        self.callback = callback
        """An ``agentsearch.SearchCallback`` for progress."""
        self.result: Any = None
        """The last compile's ``OptimizeResult`` (scores with intervals, the run, pruning)."""

    def compile(self, student: dspy.Module, *, trainset: Sequence[dspy.Example],
                valset: Sequence[dspy.Example] | None = None, teacher: Any = None, **kwargs: Any) -> dspy.Module:
        from agentsearch.run import optimize
        from agentsearch.task import validate_task

        unsupported = sorted([*kwargs, *(["teacher"] if teacher is not None else [])])
        if unsupported:
            raise TaskSpecError(f"AgentSearch.compile: unsupported arguments {unsupported}")
        if not isinstance(student, dspy.Module):
            raise TaskSpecError(f"AgentSearch.compile: the student is {type(student).__name__}, not a dspy.Module")
        if not trainset:
            raise TaskSpecError("AgentSearch.compile: trainset is empty")
        inputs = _inputs(trainset[0], "trainset[0]")
        if not inputs:
            raise TaskSpecError("AgentSearch.compile: trainset[0] names no inputs (call .with_inputs(...))")
        outputs = [name for name in trainset[0].keys() if name not in inputs]
        train, dev = list(trainset), list(valset or [])
        if not dev:  # as DSPy's optimizers do without a valset: hold part of train out
            shuffled = random.Random(self.seed).sample(train, len(train))
            cut = max(1, len(shuffled) // 2)
            train, dev = shuffled[cut:] or shuffled[:cut], shuffled[:cut]
        rows = {"train": _rows(train, inputs, outputs, "trainset"), "dev": _rows(dev, inputs, outputs, "valset")}
        lm = _lm_config(self.lm or dspy.settings.lm)
        identity = json.dumps({"program": type(student).__qualname__, "state": student.dump_state(), "rows": rows,
                               "lm": lm, "search": self.search, "reward": getattr(self.reward, "__qualname__", None),
                               "max_candidates": self.max_candidates, "seed": self.seed}, sort_keys=True, default=str)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        name = self.run or f"compile-{type(student).__name__}-{digest}"
        # the user's examples, readable by this user only (the temporary directory is shared)
        root = Path(tempfile.gettempdir()) / f"agentsearch-compile-{os.getuid()}"
        root.mkdir(mode=0o700, exist_ok=True)
        root.chmod(0o700)
        workdir = root / name
        workdir.mkdir(mode=0o700, exist_ok=True)
        for split, split_rows in rows.items():
            (workdir / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in split_rows),
                                                   encoding="utf-8")
        search: dict[str, Any] = {"levels": ["prompt"], "formats": ["chat"], "max_candidates": self.max_candidates,
                                  **self.search}
        if self.reward is not None:
            search["modules"] = {**(search.get("modules") or {}),
                                 "reward": in_process_reference(f"{name}:reward", self.reward)}
        task: dict[str, Any] = {
            "name": name,
            "program": {"signature": f"{', '.join(inputs)} -> {', '.join(outputs)}",
                        "module": in_process_reference(f"{name}:program", lambda: student)},
            "data": {"train": "train.jsonl", "dev": "dev.jsonl"},
            "metric": in_process_reference(f"{name}:metric", self.metric),
            "lm": lm,
            "search": search,
            "budget": {"max_lm_calls": self.max_lm_calls} if self.max_lm_calls else {},
            "concurrency": self.concurrency,
            "seed": self.seed,
        }
        if self.proposer_lm is not None:
            task["proposer_lm"] = _lm_config(self.proposer_lm)
        if self.storage is not None:
            task["storage"] = self.storage
        self.result = optimize(validate_task(task, source="AgentSearch.compile", base_dir=workdir), run_name=name,
                               callback=self.callback)
        best = self.result.best_program
        return best.program if hasattr(best, "program") else best
