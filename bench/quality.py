"""Quality per LM call: agentsearch against DSPy's optimizers, same LM, data and budget; prints JSON.

    python bench/quality.py [--quick | --medium] [--budget N] [--tasks sst2 web_of_lies navigate boolean_expressions]
                            [--contenders ...] [--lm MODEL [--api-base URL]] [--concurrency N] [--save]
                            [--workdir DIR]

With ``--workdir``, each contender's finished result is kept there (``<task>-<contender>.result.json``)
and a bench started again with the same settings and workdir skips it: a long bench (``--medium``,
about 1-1.5 h per task on 2 cores; SST-2 took 64 min) resumes where it stopped, one contender at most repeated.

Tasks come from ../shared/data beside the project root (SST-2 and three BIG-Bench Hard tasks), cut
into fixed seeded train/dev/test splits. Contenders: the seed program unoptimised; DSPy's
BootstrapFewShotWithRandomSearch (its candidate count sized to the budget), MIPROv2 (auto light)
and GEPA (max_metric_calls = the budget); agentsearch random, tpe (prompt level), tpe with
[prompt, module], evolve, and tpe_select (tpe choosing among its top 3 by dev re-scored on 20
held-out train examples: ``search.holdout``; its row's ``selection`` gives the candidate the dev
mean alone would have chosen, with that one's test score) (each with budget.max_lm_calls = the
budget); and agentsearch_compile
(_modules), ``AgentSearch(...).compile`` on the DSPy contenders' student (the drop-in a DSPy user
would make), searching each predictor's prompts and format (and reasoning kind).

Each task runs in a process of its own, each contender there with a fresh DSPy cache (nothing
another contender asked is free for it), and every LM call a contender makes is counted under
DSPy's cache by one hook (``CallCounter``: ``litellm.completion`` and DSPy's native lm15 engine,
which DSPy and agentsearch both call), not by either tool's own report. Search calls stop being counted when the chosen program exists; its dev
and test scores are then measured the same way for everyone. For agentsearch's best contender, the
LM calls it needed to reach the best DSPy contender's test score are read from its run's history:
the dev incumbents in order, each scored on test, against the calls stored up to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

import agentsearch  # noqa: E402
from agentsearch.lm import build_lm  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"signature": "sentence -> label",
             "instructions": "Classify the sentiment of a movie review sentence as positive or negative.",
             "files": {split: SHARED / "sst2" / f"{split}.jsonl" for split in ("train", "dev", "test")}},
    "web_of_lies": {"signature": "input -> target", "instructions": "Answer the question with Yes or No.",
                    "file": SHARED / "bbh" / "web_of_lies.jsonl"},
    "navigate": {"signature": "input -> target", "instructions": "Answer the question with Yes or No.",
                 "file": SHARED / "bbh" / "navigate.jsonl"},
    "boolean_expressions": {"signature": "input -> target",
                            "instructions": "Evaluate the boolean expression. Answer True or False.",
                            "file": SHARED / "bbh" / "boolean_expressions.jsonl"},
}
MODES = {  # BBH files have 250 rows: train + dev + test must fit
    "full": {"budget": 1000, "bootstrap_examples": 32, "max_tokens": 48, "proposer_max_tokens": 512,
             "sizes": {"sst2": {"train": 200, "dev": 100, "test": 200}, "bbh": {"train": 50, "dev": 100, "test": 100}}},
    # 32 searches and their test evaluations in 20 minutes on 2 cores: a few calls a second on the
    # embedded LM, so small splits, a small budget, and answers cut at 16 tokens (a label needs fewer;
    # a chat reply the model cannot format would run on to the limit, then again as JSON).
    "quick": {"budget": 40, "bootstrap_examples": 6, "max_tokens": 16, "proposer_max_tokens": 200,
              "sizes": {"sst2": {"train": 20, "dev": 10, "test": 20}, "bbh": {"train": 20, "dev": 10, "test": 20}}},
    # test intervals of about +-0.07 (150-200 examples) and a budget of a few hundred calls: SST-2's ten
    # contenders took 64 min on 2 cores with the embedded LM (2026-12-01); web_of_lies longer (GEPA: 28 min)
    "medium": {"budget": 300, "bootstrap_examples": 16, "max_tokens": 16, "proposer_max_tokens": 256,
               "sizes": {"sst2": {"train": 100, "dev": 50, "test": 200},
                         "bbh": {"train": 50, "dev": 50, "test": 150}}},
}


def mode_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "medium" if args.medium else "full"
DSPY_CONTENDERS = ("dspy_bootstrap_rs", "dspy_miprov2_light", "dspy_gepa")
COMPILE_CONTENDERS = {
    "agentsearch_compile": {"levels": ["prompt"]},
    "agentsearch_compile_modules": {"levels": ["prompt", "module"]},
}
"""``AgentSearch(...).compile`` as a drop-in where the DSPy contenders run: the same student, data,
budget and demo bounds (``max_bootstrapped_demos``/``max_labeled_demos`` as dspy_bootstrap_rs gets
them), the other search settings of ``agentsearch_tpe`` (its formats too, per predictor), at the
prompt level, or with each predictor's reasoning kind as well. Each is compared with
dspy_bootstrap_rs on the same test examples (``drop_in``)."""
AGENTSEARCH_CONTENDERS = {  # search settings over the task's
    "agentsearch_random": {"optimizer": "random", "levels": ["prompt"]},
    "agentsearch_tpe": {"optimizer": "tpe", "levels": ["prompt"]},
    "agentsearch_tpe_modules": {"optimizer": "tpe", "levels": ["prompt", "module"]},
    "agentsearch_evolve": {"optimizer": "evolve", "levels": ["prompt"]},
    # the proposer LM recombines and evolves modules (AgentSquare), drafts screened by a predictor
    "agentsearch_recombine": {"optimizer": "recombine", "levels": ["prompt", "module"]},
    # a tree search over agent designs (AFlow) from the few-shot design, in the sandbox
    "agentsearch_mcts": {"levels": ["agent"], "agent": {"optimizer": "mcts"}},
    # tpe choosing among its top 3 by dev re-scored on 20 held-out train examples (search.holdout),
    # with those calls held back from the same budget
    "agentsearch_tpe_select": {"optimizer": "tpe", "levels": ["prompt"], "holdout": 20, "finalists": 3},
}
CONTENDERS = ("seed", *DSPY_CONTENDERS, *AGENTSEARCH_CONTENDERS, *COMPILE_CONTENDERS)
RESULT = "@result "
"""Marks a child's result lines on its stdout, where DSPy's optimizers also print."""
MAX_DEMOS = 4  # bootstrapped and labelled demos for DSPy's optimizers; agentsearch may use 2 x this


# ---- a task's contenders, in a child process ---------------------------------------------------
class CallCounter:
    """The one counting hook, under DSPy's cache (cached answers are not counted), for DSPy and
    agentsearch alike: around ``litellm.completion`` (the local model, and DSPy's litellm engine) and
    around DSPy's native lm15 engine (which DSPy's default engine uses for a hosted model)."""

    def __init__(self) -> None:
        import litellm
        from dspy.clients.engines.lm15_engine import LM15Engine

        self.calls = 0
        self.tokens = 0
        inner = litellm.completion

        def completion(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            response = inner(*args, **kwargs)
            usage = getattr(response, "usage", None)
            self.tokens += int(getattr(usage, "total_tokens", 0) or 0)
            return response

        litellm.completion = completion
        native = LM15Engine.complete

        def complete(engine: Any, request: Any) -> Any:
            self.calls += 1
            response = native(engine, request)
            usage = getattr(response, "usage", None)
            self.tokens += int(getattr(usage, "total_tokens", None) or 0) or (
                int(getattr(usage, "input_tokens", None) or 0) + int(getattr(usage, "output_tokens", None) or 0))
            return response

        LM15Engine.complete = complete  # type: ignore[method-assign]

    def snapshot(self) -> dict[str, int]:
        return {"lm_calls": self.calls, "tokens": self.tokens}

    def reset(self) -> None:
        self.calls = self.tokens = 0


def task_dict(args: argparse.Namespace, name: str, search: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = TASKS[name]
    mode = MODES[mode_name(args)]
    sizes = mode["sizes"]["sst2" if name == "sst2" else "bbh"]
    data: dict[str, Any]
    if "files" in spec:
        data = {**{split: str(path) for split, path in spec["files"].items()}, "limit": sizes}
    else:
        data = {"file": str(spec["file"]), "split": sizes}
    lm: dict[str, Any] = {"model": args.lm, "max_tokens": args.max_tokens}
    if args.api_base:
        lm["api_base"] = args.api_base
    return {
        "name": f"bench-{name}", "program": {"signature": spec["signature"], "instructions": spec["instructions"]},
        "data": data, "metric": "exact_match", "lm": lm,
        # instructions and reflections: MIPROv2's prompt model, GEPA's reflection LM, agentsearch's proposer
        "proposer_lm": {**lm, "max_tokens": mode["proposer_max_tokens"]},
        # the budget ends the search; max_candidates (two full dev passes' worth of the budget) sets
        # where [prompt, module] turns from the prompt level to the module level (half way)
        "search": {"max_candidates": max(4, 2 * args.budget // sizes["dev"]), "max_demos": 2 * MAX_DEMOS,
                   "bootstrap_examples": mode["bootstrap_examples"], **(search or {})},
        "budget": {"max_lm_calls": args.budget}, "concurrency": args.concurrency, "seed": args.seed,
    }


def _load_task(args: argparse.Namespace, name: str, contender: str) -> Any:
    path = Path(args.workdir) / f"{name}-{contender}.yaml"
    path.write_text(yaml.safe_dump(task_dict(args, name, AGENTSEARCH_CONTENDERS.get(contender))))
    return agentsearch.load_task(path)


def _scores(task: Any, program: Any, split: str) -> list[float]:
    from agentsearch.data import load_split
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric

    evaluator = Evaluator(resolve_metric(task.metric), concurrency=task.concurrency)
    return [outcome.score for outcome in evaluator.evaluate(program, load_split(task, split))]


def _dspy_metric(task: Any) -> Any:
    """The task metric in DSPy's shape, with the textual feedback GEPA reflects on."""
    import dspy

    from agentsearch.metrics import resolve_metric

    metric = resolve_metric(task.metric)
    output = task.program.signature.split("->")[1].strip()

    def score(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        value = float(metric(gold, pred))
        if pred_name is None and pred_trace is None:
            return value
        expected, got = gold.get(output), getattr(pred, output, None)
        feedback = "Correct." if value else f"Wrong: the expected {output} is {expected!r}, the answer was {got!r}."
        return dspy.Prediction(score=value, feedback=feedback)

    return score


def _run_compile(contender: str, task: Any, args: argparse.Namespace) -> Any:
    """agentsearch through DSPy's optimizer interface, on the DSPy contenders' student."""
    import dspy

    from agentsearch.data import load_split

    train = [item.example for item in load_split(task, "train")]
    dev = [item.example for item in load_split(task, "dev")]
    student = dspy.Predict(dspy.Signature(task.program.signature, task.program.instructions))
    search = task.search
    optimizer = agentsearch.AgentSearch(
        metric=_dspy_metric(task), lm=task.lm.model_dump(exclude_none=True),
        proposer_lm=task.effective_proposer_lm.model_dump(exclude_none=True),
        max_candidates=search.max_candidates, max_lm_calls=args.budget, num_threads=task.concurrency, seed=args.seed,
        # the demo bounds dspy_bootstrap_rs is given, under DSPy's names, as a user swapping optimizers would
        max_bootstrapped_demos=MAX_DEMOS, max_labeled_demos=MAX_DEMOS,
        storage=f"sqlite:///{Path(args.workdir) / f'{task.name}-{contender}.db'}",
        optimizer="tpe", bootstrap_examples=search.bootstrap_examples,
        formats=list(search.formats), **COMPILE_CONTENDERS[contender])
    return optimizer.compile(student, trainset=train, valset=dev)


def _run_dspy(contender: str, task: Any, args: argparse.Namespace) -> Any:
    import dspy
    from dspy.teleprompt import GEPA, BootstrapFewShotWithRandomSearch, MIPROv2

    from agentsearch.data import load_split

    train = [item.example for item in load_split(task, "train")]
    dev = [item.example for item in load_split(task, "dev")]
    student = dspy.Predict(dspy.Signature(task.program.signature, task.program.instructions))
    metric = _dspy_metric(task)
    proposer = build_lm(task.effective_proposer_lm)
    threads = task.concurrency
    if contender == "dspy_bootstrap_rs":
        # DSPy scores 3 fixed programs, then num_candidate_programs random ones, each on all of dev
        # after bootstrapping up to MAX_DEMOS demos from train: sized so the total is about the budget.
        per_program = len(dev) + 2 * MAX_DEMOS
        optimizer = BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=MAX_DEMOS, max_labeled_demos=MAX_DEMOS,
            num_candidate_programs=max(1, args.budget // per_program - 3), num_threads=threads)
        return optimizer.compile(student, trainset=train, valset=dev)
    if contender == "dspy_miprov2_light":
        optimizer = MIPROv2(metric=metric, auto="light", prompt_model=proposer, max_bootstrapped_demos=MAX_DEMOS,
                            max_labeled_demos=MAX_DEMOS, num_threads=threads, seed=args.seed, verbose=False)
        return optimizer.compile(student, trainset=train, valset=dev, minibatch_size=min(35, len(dev)),
                                 requires_permission_to_run=False)
    optimizer = GEPA(metric=metric, max_metric_calls=args.budget, reflection_lm=proposer, num_threads=threads, seed=args.seed)
    return optimizer.compile(student, trainset=train, valset=dev)


class _SearchEnd(agentsearch.SearchCallback):
    """Marks where an agentsearch run stops searching (its test phase), to stop counting search calls there."""

    def __init__(self, counter: CallCounter) -> None:
        self.counter = counter
        self.at: dict[str, int] | None = None

    def on_phase(self, message: str) -> None:
        if "on test" in message and self.at is None:
            self.at = self.counter.snapshot()


def _fresh_start(args: argparse.Namespace, name: str) -> None:
    """A DSPy cache (memory and disk) of the contender's own, so nothing another one asked is free
    for it, and a freshly loaded embedded model, whose sampling starts from its seed as in a new process."""
    import dspy

    from agentsearch.lm._local import unload_local_models

    cache = Path(args.workdir) / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)  # a contender run again (it failed) pays for its calls again
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(cache))
    unload_local_models()


def run_task(args: argparse.Namespace) -> None:
    """Every contender on one task, one after another in this process (one start-up and model load),
    each with a fresh cache and call count; prints a JSON line per contender as it finishes, then
    the comparison of the two sides."""
    import logging
    import traceback

    logging.getLogger("dspy").setLevel(logging.ERROR)
    logging.getLogger("optuna").setLevel(logging.ERROR)

    counter, rows = CallCounter(), []
    for contender in args.contenders:
        kept = _kept(args, args.run_task, contender)
        if kept is not None:  # finished by an earlier start of the bench with these settings
            print(RESULT + json.dumps(kept), flush=True)
            rows.append(kept)
            continue
        _fresh_start(args, f"{args.run_task}-{contender}")
        counter.reset()
        started = time.perf_counter()
        try:
            report = run_one(args, args.run_task, contender, counter)
        except Exception as exc:  # a contender that fails (MIPROv2's proposer on a weak LM) is reported, not fatal
            traceback.print_exc()
            report = {"task": args.run_task, "contender": contender,
                      "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:500],
                      "lm_calls_before_error": counter.snapshot()["lm_calls"]}
        report["wall_s"] = round(time.perf_counter() - started, 1)  # search and the dev and test scoring
        if "error" not in report:
            _keep(args, args.run_task, contender, report)
        print(RESULT + json.dumps(report), flush=True)
        rows.append(report)
    print(RESULT + json.dumps({"comparison": compare(args, args.run_task, rows), "drop_in": drop_in(rows)}),
          flush=True)


def _settings_key(args: argparse.Namespace) -> dict[str, Any]:
    return {"mode": mode_name(args), "budget": args.budget, "lm": args.lm, "api_base": args.api_base,
            "max_tokens": args.max_tokens, "concurrency": args.concurrency,
            **({"seed": args.seed} if args.seed else {})}  # seed 0's results kept before --seed still count


def _kept(args: argparse.Namespace, task: str, contender: str) -> dict[str, Any] | None:
    path = Path(args.workdir) / f"{task}-{contender}.result.json"
    if not path.exists():
        return None
    kept = json.loads(path.read_text())
    return kept["row"] if kept.get("settings") == _settings_key(args) else None


def _keep(args: argparse.Namespace, task: str, contender: str, row: dict[str, Any]) -> None:
    path = Path(args.workdir) / f"{task}-{contender}.result.json"
    path.write_text(json.dumps({"settings": _settings_key(args), "row": row}))


def run_one(args: argparse.Namespace, name: str, contender: str, counter: CallCounter) -> dict[str, Any]:
    import dspy

    from agentsearch._stats import bootstrap
    from agentsearch.run import seed_spec
    from agentsearch.search_space import build_program

    task = _load_task(args, name, contender)
    dspy.configure(lm=build_lm(task.lm))  # global, not a context: evaluation threads must see it
    started = time.perf_counter()
    report: dict[str, Any] = {"task": name, "contender": contender}
    if contender == "seed":
        program = build_program(seed_spec(task), {}, build_lm(task.lm), base_dir=task.base_dir)
        search = counter.snapshot()
    elif contender in DSPY_CONTENDERS:
        program = _run_dspy(contender, task, args)
        search = counter.snapshot()
    elif contender in COMPILE_CONTENDERS:
        program = _run_compile(contender, task, args)
        search = counter.snapshot()
    else:
        end = _SearchEnd(counter)
        storage = f"sqlite:///{Path(args.workdir) / f'{name}-{contender}.db'}"
        result = agentsearch.optimize(task, storage=storage, callback=end)
        search = end.at or counter.snapshot()
        program = result.best_program
        report.update(database=storage, run=result.run.name, stop_reason=result.stop_reason,
                      self_reported_lm_calls=result.usage.lm_calls, best_spec=result.best.candidate.spec,
                      candidates=len(agentsearch.get_storage(storage).list_candidates(result.run.id)))
        if task.search.holdout:
            report["selection"] = _selection(task, storage, result)
    search_wall = time.perf_counter() - started
    dev, test = _scores(task, program, "dev"), _scores(task, program, "test")
    interval = bootstrap(test)
    report.update(
        search_lm_calls=search["lm_calls"], search_tokens=search["tokens"], search_wall_s=round(search_wall, 1),
        dev=round(sum(dev) / len(dev), 4), test=round(interval.mean, 4),
        test_ci95=[round(interval.low, 4), round(interval.high, 4)], n_dev=len(dev), n_test=len(test),
        test_scores=test,  # per test example, in the split's order: paired comparisons (``drop_in``)
    )
    return report


def _selection(task: Any, storage_url: str, result: Any) -> dict[str, Any]:
    """What choosing with held-out examples changed in this run: the candidate the dev mean alone would
    have chosen, scored on test like the chosen one (outside the search's count), and the calls the
    re-scoring took."""
    from agentsearch._report import finalists
    from agentsearch._stats import bootstrap
    from agentsearch.search_space import build_program, parse_spec

    storage = agentsearch.get_storage(storage_url)
    evaluations = storage.list_evaluations(run_id=result.run.id)
    held = [e for e in evaluations if e.split == "select"]
    top, top_dev = finalists(storage, result.run.id, 1)[0]
    summary: dict[str, Any] = {
        "holdout": max((e.n for e in held), default=0), "finalists_rescored": len(held),
        "rescore_lm_calls": sum(e.lm_calls for e in held), "chosen_candidate": result.best.candidate.number,
        "by_dev_candidate": top.number, "same_choice": top.id == result.best.candidate.id}
    if top.id != result.best.candidate.id:
        demos = (result.run.space or {}).get("demos", {})
        program = build_program(parse_spec(top.spec), demos, build_lm(task.lm), base_dir=task.base_dir)
        test = bootstrap(_scores(task, program, "test"))
        summary.update(by_dev_dev=top_dev.score, by_dev_test=round(test.mean, 4),
                       by_dev_test_ci95=[round(test.low, 4), round(test.high, 4)])
    return summary


def reach(args: argparse.Namespace, name: str, contender: str, target: float) -> dict[str, Any]:
    """LM calls the run had spent (proposals all counted up front) when its dev incumbent first scored
    at least ``target`` on test; incumbents are scored on test here, outside the run."""
    import dspy

    from agentsearch.search_space import SearchSpace, build_program, parse_spec

    _fresh_start(args, f"{name}-{contender}-reach")
    task = _load_task(args, name, contender)
    storage = agentsearch.get_storage(f"sqlite:///{Path(args.workdir) / f'{name}-{contender}.db'}")
    run = storage.list_runs()[-1]
    searched: dict[int, int] = {}  # candidate id -> calls on train (the seed's bootstrapping) and dev
    dev = {}
    for evaluation in storage.list_evaluations(run_id=run.id):
        if evaluation.split != "test":
            searched[evaluation.candidate_id] = searched.get(evaluation.candidate_id, 0) + evaluation.lm_calls
        if evaluation.split == "dev":
            dev[evaluation.candidate_id] = evaluation
    spent, best = run.proposer_lm_calls, None
    demos = SearchSpace.from_dict(run.space).demos if run.space else {}  # an agent-level run has no space
    lm = build_lm(task.lm)
    dspy.configure(lm=lm)
    for candidate in sorted(storage.list_candidates(run.id), key=lambda c: c.number):
        spent += searched.get(candidate.id, 0)
        evaluation = dev.get(candidate.id)
        if evaluation is None or evaluation.status != "complete" or (best is not None and evaluation.score <= best):
            continue
        best = evaluation.score
        program = build_program(parse_spec(candidate.spec), demos, lm, base_dir=task.base_dir)
        test = _scores(task, program, "test")
        if sum(test) / len(test) >= target:
            return {"lm_calls": spent, "candidate": candidate.number, "test": round(sum(test) / len(test), 4)}
    return {"lm_calls": None, "note": f"no dev incumbent reached test {target}"}


def _best(rows: list[dict[str, Any]], names: tuple[str, ...] | dict[str, Any]) -> dict[str, Any] | None:
    scored = [row for row in rows if row.get("contender") in names and "test" in row]
    return max(scored, key=lambda row: (row["test"], -row["search_lm_calls"]), default=None)


def compare(args: argparse.Namespace, task: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ours, theirs = _best(rows, AGENTSEARCH_CONTENDERS), _best(rows, DSPY_CONTENDERS)
    if ours is None or theirs is None:
        return {"note": "a side has no finished contender"}
    summary: dict[str, Any] = {
        "agentsearch_best": ours["contender"], "dspy_best": theirs["contender"],
        "test_ratio": round(ours["test"] / theirs["test"], 3) if theirs["test"] else None,
    }
    if ours["test"] >= theirs["test"]:
        reached = reach(args, task, ours["contender"], theirs["test"])
        summary["agentsearch_calls_to_reach_dspy_best_test"] = reached
        if reached.get("lm_calls") is not None and theirs["search_lm_calls"]:
            summary["lm_calls_ratio"] = round(reached["lm_calls"] / theirs["search_lm_calls"], 3)
    else:
        summary["lm_calls_ratio"] = None
        summary["note"] = "agentsearch's best did not reach the DSPy contender's test score"
    return summary


DROP_IN_PAIRS = (("agentsearch_compile", "dspy_bootstrap_rs"), ("agentsearch_compile_modules", "dspy_bootstrap_rs"),
                 ("agentsearch_compile_modules", "agentsearch_compile"))


def drop_in(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compile contenders against DSPy's BootstrapFewShotWithRandomSearch and against each other:
    the mean test difference over the same examples, with its paired 95% interval and what it allows
    one to claim."""
    from agentsearch._stats import paired_difference, verdict

    scored = {row["contender"]: row["test_scores"] for row in rows if "test_scores" in row}
    pairs = []
    for first, second in DROP_IN_PAIRS:
        if first in scored and second in scored and len(scored[first]) == len(scored[second]):
            difference = paired_difference(dict(enumerate(scored[first])), dict(enumerate(scored[second])))
            pairs.append({"first": first, "second": second, "test_difference": round(difference.mean, 4),
                          "ci95": [round(difference.low, 4), round(difference.high, 4)],
                          "verdict": verdict(difference)})
    return pairs


# ---- the whole bench ------------------------------------------------------------------------------
def _child(args: argparse.Namespace, task: str) -> list[dict[str, Any]]:
    """Run one task's contenders in a child process (``--run-task``); its JSON lines, as it printed them."""
    command = [sys.executable, __file__, "--run-task", task, "--workdir", args.workdir, "--budget", str(args.budget),
               "--lm", args.lm, "--max-tokens", str(args.max_tokens), "--concurrency", str(args.concurrency),
               "--seed", str(args.seed),
               "--contenders", *args.contenders]
    if args.api_base:
        command += ["--api-base", args.api_base]
    if args.quick:
        command.append("--quick")
    if args.medium:
        command.append("--medium")
    log = Path(args.workdir) / f"{task}.log"
    rows = []
    with open(log, "w") as err, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True) as child:
        for line in child.stdout or ():  # DSPy's optimizers print progress there too
            if line.startswith(RESULT):
                rows.append(json.loads(line.removeprefix(RESULT)))
                print(line.removeprefix(RESULT).strip(), file=sys.stderr)
    if child.returncode != 0:  # a crash (not an exception a contender raised): say so for those not reported
        tail = (log.read_text().strip().splitlines() or ["(no output)"])[-1][:500]
        rows.append({"error": f"the bench process exited with {child.returncode}: {tail}", "log": str(log)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="small splits and budget: 41 min for 4 tasks x 10 contenders on 2 cores (2026-12-01)")
    sizes.add_argument("--medium", action="store_true",
                       help="test intervals of about +-0.07, budget 300: about 1-1.5 h per task on 2 cores (SST-2: 64 min)")
    parser.add_argument("--budget", type=int, help="LM calls each contender may spend searching (default 1000; quick 40)")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--lm", default="local/smollm2-135m", help="any litellm model string")
    parser.add_argument("--api-base", help="for an OpenAI-compatible server (vLLM, llama.cpp server, ...)")
    parser.add_argument("--max-tokens", type=int, help="per answer of the task LM (default 48; quick 16)")
    parser.add_argument("--concurrency", type=int, help="parallel evaluations (default 1 for local/ models, else 8)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the tasks' seed: the BBH splits, the searches' seeds (a replicate of the bench)")
    parser.add_argument("--workdir", help="databases, caches, task files and logs (default: a temp dir)")
    parser.add_argument("--save", action="store_true", help="also write the JSON to bench/results/")
    parser.add_argument("--run-task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = MODES[mode_name(args)]
    args.budget = args.budget or mode["budget"]
    args.max_tokens = args.max_tokens or mode["max_tokens"]
    args.concurrency = args.concurrency or (1 if args.lm.startswith("local/") else 8)
    if args.run_task:
        run_task(args)
        return
    missing = [str(path) for name in args.tasks for path in
               ([TASKS[name]["file"]] if "file" in TASKS[name] else TASKS[name]["files"].values()) if not path.exists()]
    if missing:
        raise SystemExit(f"bench/quality.py: data missing (expected ../shared/data beside the project): {missing[0]}")
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="agentsearch-quality-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"bench": "quality", "settings": {
        "mode": mode_name(args), "quick": args.quick, "budget": args.budget, "lm": args.lm, "max_tokens": args.max_tokens,
        "concurrency": args.concurrency, "seed": args.seed, "bootstrap_examples": mode["bootstrap_examples"],
        "proposer_max_tokens": mode["proposer_max_tokens"], "sizes": mode["sizes"],
        "workdir": args.workdir}}
    report["tasks"] = {}
    for task in args.tasks:
        rows = _child(args, task)
        ending = next((row for row in rows if "comparison" in row),
                      {"comparison": {"note": "not compared: the bench process ended first"}})
        rows = [row for row in rows if "comparison" not in row]
        done = {row.get("contender") for row in rows}
        rows += [{"task": task, "contender": c, "error": "not run: the bench process ended first"}
                 for c in args.contenders if c not in done]
        report["tasks"][task] = {"contenders": rows, "agentsearch_vs_dspy": ending["comparison"],
                                 "drop_in": ending.get("drop_in", [])}
    report["wall_s"] = round(time.perf_counter() - started, 1)
    emit(report, "quality" if mode_name(args) == "full" else f"quality-{mode_name(args)}", save=args.save)


if __name__ == "__main__":
    main()
