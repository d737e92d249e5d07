"""``AgentSearch``: agentsearch as a DSPy optimizer, for a program you already have.

``AgentSearch(metric=...).compile(student, trainset=..., valset=...)`` is a drop-in for DSPy's
``MIPROv2(...).compile``: it searches the instructions and demos of the student's named predictors
(demos bootstrapped from the student's own passing traces on train) through the same run loop,
store and budget as a task file, and returns an optimized deep copy of the student: your class,
your ``forward``. Asked to (``formats=[...]``, ``levels=["prompt", "module"]``), it also searches
each predictor's prompt format and reasoning kind; those choices are beyond what DSPy's saved
state holds, so such a program is reloaded with ``agentsearch.load_into`` rather than plain
``load`` (by default the search stays within what plain DSPy reloads). The run is in the store like
any other (``agentsearch runs``); compiling again with the same student, data and settings
continues that run, so a killed compile resumes without repeating a finished evaluation.

What was scored is what comes back. The search calls the LM you configured as you configured it:
its model, base URL, request options and key (the key in this process's memory only: never
stored, printed or exported). Whatever a candidate needs of a request (JSON mode for the json
format, a temperature for the sampling kinds) is done by the program itself, so the returned
program behaves the same under your ``dspy.LM`` as it did in the search.

The run knows how to make the student again: where its class imports (``package.module:Class``)
and builds with no arguments, the run keeps that reference and the student's DSPy state, so
``agentsearch export``, ``evaluate``, ``show`` and ``report`` work from any process. A class that
does not import that way (defined in a notebook or a script's ``__main__``) stays in this process
for running, but its state is kept all the same: ``export --format dspy`` writes the optimized
state, which ``load_into(MyProgram(), path)`` loads. The metric and the examples stay in this
process (the examples as JSON lines beside the store): another process cannot join such a run.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import inspect
import json
import logging
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dspy
from dspy.teleprompt.teleprompt import Teleprompter
from pydantic import ValidationError

from agentsearch._callbacks import SearchCallback
from agentsearch._references import in_process_reference
from agentsearch._report import score_text
from agentsearch.exceptions import TaskSpecError, describe_validation_error
from agentsearch.search_space._user import in_process_override

if TYPE_CHECKING:
    from agentsearch.evaluators import ExampleOutcome
    from agentsearch.store import CandidateRecord, EvaluationRecord, RunUsage

logger = logging.getLogger("agentsearch")

AUTO_PRESETS: dict[str, dict[str, int]] = {
    "light": {"max_candidates": 10, "max_lm_calls": 500},
    "medium": {"max_candidates": 25, "max_lm_calls": 2_000},
    "heavy": {"max_candidates": 60, "max_lm_calls": 6_000},
}
"""``auto=``: candidates scored on the validation set and LM calls the whole search may make."""

_CALL_SETTINGS = ("temperature", "max_tokens", "max_completion_tokens", "api_base", "base_url", "timeout")


def _json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _lm_config(lm: Any, what: str = "lm") -> dict[str, Any]:
    """The task file's ``lm`` block for a ``dspy.LM``: its model, call settings and request options as the
    user set them. Credentials (``api_key``, headers) are handed to this process's LMs in memory and
    never enter the block (which the store keeps)."""
    from agentsearch.lm._secrets import hand_over_credentials, holds_secret

    if isinstance(lm, str):
        return {"model": lm}
    if isinstance(lm, dict):
        return dict(lm)
    if lm is None or not getattr(lm, "model", None):
        raise TaskSpecError("AgentSearch: no LM: pass lm=dspy.LM(...) or configure one with dspy.configure(lm=...)")
    kwargs = dict(getattr(lm, "kwargs", {}) or {})
    config: dict[str, Any] = {
        "model": lm.model,
        "temperature": kwargs.get("temperature"),
        # DSPy sends an OpenAI reasoning model's max_tokens as max_completion_tokens
        "max_tokens": kwargs.get("max_tokens", kwargs.get("max_completion_tokens")),
        "model_type": getattr(lm, "model_type", "chat") or "chat",
    }
    api_base = kwargs.get("api_base") or kwargs.get("base_url")
    if api_base:
        config["api_base"] = api_base
    if kwargs.get("timeout") is not None:
        config["timeout"] = kwargs["timeout"]
    if getattr(lm, "num_retries", None) is not None:
        config["num_retries"] = min(int(lm.num_retries), 20)
    credentials = {key: value for key, value in kwargs.items()
                   if key not in _CALL_SETTINGS and value is not None and holds_secret(key, value)}
    options = {}
    for key, value in kwargs.items():
        if key in _CALL_SETTINGS or key in credentials or value is None:
            continue
        if not _json_value(value):
            raise TaskSpecError(f"AgentSearch: {what} option {key!r} is a {type(value).__name__}, not a JSON value: "
                                "a search must be able to keep how its LM was called")
        options[key] = value
    if options:
        config["options"] = options
    hand_over_credentials(lm.model, api_base, credentials)
    return config


def check_model(lm: Any, field: str) -> None:
    """Refuse, in one line naming ``field``, a ``dspy.LM`` (or its ``lm`` block) no provider can be called for."""
    from agentsearch.lm import model_problem

    model = lm["model"] if isinstance(lm, dict) else lm.model
    options = lm.get("options") or {} if isinstance(lm, dict) else getattr(lm, "kwargs", {}) or {}
    provider = options.get("custom_llm_provider")
    problem = model_problem(model, provider if isinstance(provider, str) else None)
    if problem is not None:
        raise TaskSpecError(f"{field}: {problem}")


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
        if not _json_value(row):
            raise TaskSpecError(f"AgentSearch.compile: {what}[{i}]: fields must be JSON values")
        rows.append(row)
    return rows


def _shape(program: dspy.Module) -> list[tuple[str, str, dict[str, str]]]:
    return [(name, type(predictor).__name__, {field: repr(info.annotation) for field, info in
                                              predictor.signature.fields.items()})
            for name, predictor in program.named_predictors()]


_STATE_ATTRIBUTES = {"demos", "signature", "traces", "train", "lm", "callbacks", "history", "config", "stage"}
"""Attributes DSPy's state (or DSPy itself) owns: compared through the state, not as plain attributes."""


def _attributes(program: dspy.Module) -> list[tuple[str, str, str]]:
    """Every plain attribute of the program and its sub-modules (``k`` of a retriever, a tool list),
    as text: what a fresh instance must also have for the state to rebuild the same program."""
    from dspy.primitives.base_module import BaseModule

    found = []
    for path, module in [("", program), *program.named_sub_modules()]:
        for key, value in sorted(vars(module).items()):
            if key in _STATE_ATTRIBUTES or key.startswith("_") or isinstance(value, BaseModule):
                continue
            found.append((path, key, repr(value)))
    return found


def student_reference(student: dspy.Module, state: dict[str, Any]) -> str | None:
    """``package.module:Class`` when another process can make the student again: its class imports
    under that name and builds with no arguments into the same predictors and the same plain
    attributes, and no predictor has an LM of its own (the kept state holds none). None otherwise
    (a notebook's class, a constructor that takes arguments, ``RAG(k=10)``): the run's program is
    then run in this process only."""
    cls = type(student)
    module_name, qualname = cls.__module__, cls.__qualname__
    if module_name == "__main__" or "<" in qualname or any(p.lm is not None for _, p in student.named_predictors()):
        return None
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
        if found is not cls:
            return None
        fresh = cls()
        fresh.load_state(state)
    except Exception:  # noqa: BLE001 - not rebuildable: the run keeps the student in this process
        return None
    same = _shape(fresh) == _shape(student) and _attributes(fresh) == _attributes(student)
    return f"{module_name}:{qualname}" if same else None


def student_state(student: dspy.Module) -> dict[str, Any] | None:
    """The student's DSPy state as the run keeps it: without any predictor's own LM (whose state could
    hold a key); None when it is not JSON, or when the store's masking of secrets would change it (a
    key-shaped word in a demo): the run then keeps no state rather than an altered one."""
    from agentsearch.lm import redact_tree

    state = student.dump_state()
    for entry in state.values():
        if isinstance(entry, dict) and "lm" in entry:
            entry["lm"] = None
    if not _json_value(state):
        return None
    state = json.loads(json.dumps(state))
    return state if redact_tree(state) == state else None


def _search_fields() -> set[str]:
    from agentsearch.task import SearchConfig

    return set(SearchConfig.model_fields)


class _LogProgress(SearchCallback):
    """The search's progress through the ``agentsearch`` logger, as DSPy's optimizers log theirs."""

    def __init__(self, max_lm_calls: int | None) -> None:
        self.max_lm_calls = max_lm_calls
        self.calls = 0

    def on_phase(self, message: str) -> None:
        logger.info(message)

    def on_example(self, outcome: ExampleOutcome, usage: RunUsage) -> None:
        self.calls = usage.lm_calls

    def on_evaluation_end(self, candidate: CandidateRecord, evaluation: EvaluationRecord,
                          best_dev: float | None) -> None:
        from agentsearch.search_space import parse_spec

        score, best = score_text(evaluation.score), score_text(best_dev)
        left = "" if self.max_lm_calls is None else f" ({max(0, self.max_lm_calls - self.calls)} left)"
        pruned = ", pruned" if evaluation.status == "pruned" else ""
        errors = f", {evaluation.n_errors} errors" if evaluation.n_errors else ""
        logger.info("candidate #%d [%s] %s: %s on %d examples%s%s | best dev %s | LM calls %d%s", candidate.number,
                    parse_spec(candidate.spec).structure(), evaluation.split, score, evaluation.n, errors, pruned,
                    best, self.calls, left)


class _Both(SearchCallback):
    """Several callbacks as one."""

    def __init__(self, *callbacks: SearchCallback) -> None:
        self.callbacks = callbacks

    def on_phase(self, message: str) -> None:
        for callback in self.callbacks:
            callback.on_phase(message)

    def on_evaluation_start(self, candidate: CandidateRecord, split: str, total: int, done: int) -> None:
        for callback in self.callbacks:
            callback.on_evaluation_start(candidate, split, total, done)

    def on_example(self, outcome: ExampleOutcome, usage: RunUsage) -> None:
        for callback in self.callbacks:
            callback.on_example(outcome, usage)

    def on_evaluation_end(self, candidate: CandidateRecord, evaluation: EvaluationRecord,
                          best_dev: float | None) -> None:
        for callback in self.callbacks:
            callback.on_evaluation_end(candidate, evaluation, best_dev)


@contextlib.contextmanager
def _shown(verbose: bool, max_candidates: int, max_lm_calls: int | None) -> Iterator[SearchCallback | None]:
    """While compiling: the ``agentsearch`` logger's INFO lines on stderr, as DSPy shows its own, unless
    the application configured logging itself (a handler on it or on the root logger) or ``verbose``
    is off. On a terminal the lines print above the CLI's live display (candidates scored, elapsed
    time, best dev, LM calls left), which is yielded as a callback to feed; elsewhere (a pipe, a
    file, a notebook) the lines alone, so a log holds no redrawn frames."""
    from rich.console import Console
    from rich.logging import RichHandler

    from agentsearch._progress import RichProgress

    handler: logging.Handler | None = None
    live: RichProgress | None = None
    if verbose and not logger.handlers and not logging.getLogger().handlers:
        console = Console(stderr=True)
        if console.is_terminal and not console.is_dumb_terminal:
            handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False,
                                  log_time_format="%H:%M:%S")
            live = RichProgress(console, max_candidates, max_lm_calls, narrate=False)
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                                   "%Y/%m/%d %H:%M:%S"))
        logger.addHandler(handler)
    level = logger.level
    if verbose and logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        with live if live is not None else contextlib.nullcontext():
            yield live
    finally:
        logger.setLevel(level)
        if handler is not None:
            logger.removeHandler(handler)


class AgentSearch(Teleprompter):
    """Search a DSPy program's prompts (and, asked to, its predictors' reasoning kinds and prompt
    formats) with agentsearch; ``compile`` returns the optimized copy.

    ``metric(example, prediction, trace=None)`` as DSPy's optimizers take it (a float, 1 = right).
    ``lm``: a ``dspy.LM`` (default: the configured one), called as you configured it: model,
    ``api_base``, ``api_key`` (kept in memory only), request options. ``proposer_lm`` writes
    instructions (default: ``lm``).

    How much to search: ``auto="light" | "medium" | "heavy"`` (as DSPy's MIPROv2) sets
    ``max_candidates`` and ``max_lm_calls`` to 10 and 500, 25 and 2,000, or 60 and 6,000; or give
    ``max_candidates`` (programs scored on the validation set, the student as it is among them;
    default 20) and ``max_lm_calls`` (the whole search's calls; default unbounded) yourself.
    ``num_threads`` (DSPy's name; ``concurrency`` is the same): examples evaluated at once.
    ``max_bootstrapped_demos`` / ``max_labeled_demos``: each demo set is drawn from your program's
    passing traces first, then bare train examples, up to the larger of the two (default 8).
    ``storage``: a SQLAlchemy URL (default ``sqlite:///agentsearch.db``). ``run`` names the run
    (default: from the student, data and settings, so the same compile continues it). ``verbose``
    (default True): progress on stderr through the ``agentsearch`` logger (unless you configured
    logging yourself); ``callback`` (an ``agentsearch.SearchCallback``) gets every event too.

    Other keyword arguments are ``search`` fields of a task file: ``levels`` (default
    ``["prompt"]``; add ``"module"`` to search each predictor's reasoning kind: predict as written,
    chain of thought, self-consistency, best-of-n, where its signature allows; prompts are searched
    first and kinds on top of the best prompts), ``formats`` (default ``["chat"]``, the adapter DSPy
    is configured with; e.g. ``["chat", "json", "completion"]``), ``num_instructions``,
    ``num_demo_sets``, ``bootstrap_examples``, ``optimizer``, ``pruner``, ``minibatch``,
    ``modules``, ``prompt_share``. ``reward(inputs: dict, outputs: dict) -> float`` lets best-of-n
    pick among samples by your reward instead of an LM verdict (never the metric: it needs the gold
    answer). Every argument is checked here; an unknown name is refused with the closest valid one.

    A program whose kinds or formats changed reloads with ``agentsearch.load_into(MyProgram(), path)``;
    plain ``load`` restores only its instructions and demos. After ``compile``, ``result`` holds the
    run's outcome (``print(optimizer.result)`` shows its summary).
    """

    def __init__(self, metric: Callable[..., Any], *, lm: Any = None, proposer_lm: Any = None,
                 auto: Literal["light", "medium", "heavy"] | None = None, max_candidates: int | None = None,
                 max_lm_calls: int | None = None, num_threads: int | None = None, concurrency: int | None = None,
                 max_bootstrapped_demos: int | None = None, max_labeled_demos: int | None = None,
                 storage: str | None = None, run: str | None = None, seed: int = 0,
                 callback: SearchCallback | None = None, reward: Callable[[dict, dict], float] | None = None,
                 verbose: bool = True, **search: Any) -> None:
        super().__init__()
        own = [name for name in inspect.signature(AgentSearch.__init__).parameters if name not in ("self", "search")]
        valid = sorted({*own, *_search_fields()})
        for name in search:
            if name not in _search_fields():
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(valid)}"
                raise TaskSpecError(f"AgentSearch: unknown argument {name!r}{hint}")
        if not callable(metric):
            raise TaskSpecError(f"AgentSearch: metric is a {type(metric).__name__}, not a function "
                                "metric(example, prediction, trace=None)")
        if auto is not None:
            if auto not in AUTO_PRESETS:
                raise TaskSpecError(f"AgentSearch: auto={auto!r}; use one of {', '.join(map(repr, AUTO_PRESETS))}")
            if max_candidates is not None or max_lm_calls is not None:
                raise TaskSpecError("AgentSearch: auto sets max_candidates and max_lm_calls; give auto or those")
            max_candidates, max_lm_calls = AUTO_PRESETS[auto]["max_candidates"], AUTO_PRESETS[auto]["max_lm_calls"]
        if num_threads is not None and concurrency is not None and num_threads != concurrency:
            raise TaskSpecError("AgentSearch: num_threads and concurrency are the same setting; give one")
        threads = num_threads if num_threads is not None else concurrency if concurrency is not None else 1
        if storage is not None:
            from agentsearch.store import storage_url_problem

            problem = storage_url_problem(storage)
            if problem is not None:
                raise TaskSpecError(f"AgentSearch: storage: {problem}")
        demos = [bound for bound in (max_bootstrapped_demos, max_labeled_demos) if bound is not None]
        if demos:
            if "max_demos" in search:
                raise TaskSpecError("AgentSearch: max_demos and max_bootstrapped_demos/max_labeled_demos are the same "
                                    "bound; give one")
            search["max_demos"] = max(demos)
        self.metric = metric
        self.lm, self.proposer_lm = lm, proposer_lm
        self.auto = auto
        self.max_candidates = 20 if max_candidates is None else max_candidates
        self.max_lm_calls = max_lm_calls
        self.storage, self.run, self.concurrency, self.seed = storage, run, threads, seed
        self.search = search
        self.reward = reward
        self.verbose = verbose
        self.callback = callback
        """An ``agentsearch.SearchCallback`` for progress."""
        self.result: Any = None
        """The last compile's ``OptimizeResult`` (scores with intervals, the run, pruning)."""
        self._check_settings()
        for name, given in (("lm", lm), ("proposer_lm", proposer_lm)):
            if given is not None and getattr(given, "model", None):
                check_model(given, f"AgentSearch: {name}")

    def _check_settings(self) -> None:
        """The settings as a task's ``search``, ``budget`` and ``concurrency``, checked now rather than in compile."""
        from agentsearch.task import MAX_CONCURRENCY, BudgetConfig, SearchConfig

        try:
            SearchConfig.model_validate(self._search_block())
            BudgetConfig.model_validate({"max_lm_calls": self.max_lm_calls})
        except ValidationError as exc:
            raise TaskSpecError(f"AgentSearch: {describe_validation_error(exc)}") from None
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise TaskSpecError(f"AgentSearch: num_threads must be a whole number from 1 to {MAX_CONCURRENCY}")

    def _search_block(self) -> dict[str, Any]:
        return {"levels": ["prompt"], "formats": ["chat"], "max_candidates": self.max_candidates, **self.search}

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
        check_model(lm, "AgentSearch: lm")
        state = student_state(student)
        reference = student_reference(student, state) if state is not None else None
        identity = json.dumps({"program": type(student).__qualname__, "state": state or student.dump_state(),
                               "rows": rows, "lm": lm, "search": self.search,
                               "reward": getattr(self.reward, "__qualname__", None),
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
        search = self._search_block()
        if self.reward is not None:
            search["modules"] = {**(search.get("modules") or {}),
                                 "reward": in_process_reference(f"{name}:reward", self.reward)}
        program: dict[str, Any] = {
            "signature": f"{', '.join(inputs)} -> {', '.join(outputs)}",
            "module": reference or in_process_reference(f"{name}:{type(student).__qualname__}", lambda: student)}
        if state is not None:
            program["state"] = state
        if reference is not None and state is not None:  # elsewhere the class is built and given the state; here the
            from agentsearch.search_space._user import with_state

            in_process_override(with_state(reference, state), student)  # student itself is copied
        task: dict[str, Any] = {
            "name": name,
            "program": program,
            "data": {"train": "train.jsonl", "dev": "dev.jsonl"},
            "metric": in_process_reference(f"{name}:metric", self.metric),
            "lm": lm,
            "search": search,
            "budget": {"max_lm_calls": self.max_lm_calls} if self.max_lm_calls else {},
            "concurrency": self.concurrency,
            "seed": self.seed,
        }
        if self.proposer_lm is not None:
            task["proposer_lm"] = _lm_config(self.proposer_lm, "proposer_lm")
        if self.storage is not None:
            task["storage"] = self.storage
        if reference is None:
            logger.info("%s is not importable as package.module:Class with no arguments: this run's program can be "
                        "run in this process only (export --format dspy still writes its state)",
                        type(student).__qualname__)
        with _shown(self.verbose, self.max_candidates, self.max_lm_calls) as live:
            callbacks = [callback for callback in (_LogProgress(self.max_lm_calls) if self.verbose else None,
                                                   live, self.callback) if callback is not None]
            progress = callbacks[0] if len(callbacks) == 1 else _Both(*callbacks)
            self.result = optimize(validate_task(task, source="AgentSearch.compile", base_dir=workdir), run_name=name,
                                   callback=progress)
            logger.info("best: candidate #%d, dev %s (the student: %s); run %s", self.result.best.candidate.number,
                        score_text(self.result.best.dev_score), score_text(self.result.seed.dev_score),
                        self.result.run.name)
        best = self.result.best_program
        return best.program if hasattr(best, "program") else best

