"""One search on a task, from a fresh database and a fresh LM cache; prints JSON.

    python bench/search_quality.py bench/sst2/modules.yaml [--max-candidates N] [--set search.pruner=none]
                                   [--audit-pruning] [--keep DIR [--run NAME]]

Reports the seed program's and the best candidate's dev and test scores (with bootstrap 95%
intervals and the paired gain over the seed), LM calls, tokens, wall time, the module kinds and
topologies evaluated, and what pruning saved. ``--audit-pruning`` then finishes every pruned
candidate's dev evaluation outside the run, to measure exactly what pruning saved and whether a
pruned candidate would have beaten the chosen one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml


def _audit_pruning(result, storage) -> dict:
    """Score each pruned candidate on the dev examples it skipped (not stored: the run stays as it was)."""
    from agentsearch.data import load_split
    from agentsearch.evaluators import Evaluator
    from agentsearch.lm import build_lm
    from agentsearch.metrics import resolve_metric
    from agentsearch.search_space import SearchSpace, build_program, parse_spec

    task = result.task
    dev = load_split(task, "dev")
    space = SearchSpace.from_dict(storage.get_run(result.run.id).space)
    evaluator = Evaluator(resolve_metric(task.metric, base_dir=task.base_dir), concurrency=task.concurrency)
    lm = build_lm(task.lm)
    audited, calls = [], 0
    for evaluation in storage.list_evaluations(run_id=result.run.id):
        if evaluation.status != "pruned":
            continue
        seen = {r.example_id: r.score for r in storage.list_example_results(evaluation.id)}
        candidate = storage.get_candidate(evaluation.candidate_id)
        program = build_program(parse_spec(candidate.spec), space.demos, lm, base_dir=task.base_dir)
        rest = evaluator.evaluate(program, [item for item in dev if item.id not in seen])
        calls += sum(outcome.usage.lm_calls for outcome in rest)
        full = (sum(seen.values()) + sum(outcome.score for outcome in rest)) / len(dev)
        audited.append({"candidate": candidate.number, "partial_dev": evaluation.score, "n": evaluation.n,
                        "full_dev": full})
    best_pruned = max((a["full_dev"] for a in audited), default=None)
    return {
        "pruned_candidates": audited,
        "lm_calls_to_finish_pruned": calls,
        "best_pruned_full_dev": best_pruned,
        "same_final_choice": best_pruned is None or best_pruned <= result.best.dev_score,
    }


def _test_outside_budget(result) -> float:
    """The best program's test score when the budget ended the run before its test evaluation
    (a budget-matched comparison still needs one); not stored, so the run stays as it was."""
    from agentsearch.data import load_split
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric

    task = result.task
    outcomes = Evaluator(resolve_metric(task.metric, base_dir=task.base_dir), concurrency=task.concurrency).evaluate(
        result.best_program, load_split(task, "test"))
    return sum(outcome.score for outcome in outcomes) / len(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task")
    parser.add_argument("--max-candidates", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=YAML",
                        help="override a task field, e.g. search.levels=[prompt]")
    parser.add_argument("--audit-pruning", action="store_true")
    parser.add_argument("--keep", type=Path, help="directory for the database and LM cache (default: a temp dir)")
    parser.add_argument("--run", help="run name; naming a finished run in --keep reports it without new LM calls")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="agentsearch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["DSPY_CACHEDIR"] = str(workdir / "cache")  # read when dspy is first imported
    import agentsearch
    from agentsearch.search_space import parse_spec

    overrides = {}
    for item in args.set:
        field, _, value = item.partition("=")
        overrides[field] = yaml.safe_load(value)
    task = agentsearch.load_task(args.task).with_overrides(**overrides)
    url = f"sqlite:///{workdir / 'bench.db'}"
    started = time.perf_counter()
    result = agentsearch.optimize(task, storage=url, run_name=args.run, max_candidates=args.max_candidates)
    wall = time.perf_counter() - started
    storage = agentsearch.get_storage(url)
    candidates = storage.list_candidates(result.run.id)
    specs = [parse_spec(c.spec) for c in candidates]
    best_test, test_note = result.best.test_score, None
    if best_test is None and result.stop_reason:
        best_test, test_note = _test_outside_budget(result), "scored by the bench after the run's budget ran out"
    report = {
        "task": result.task.name, "run": result.run.name, "database": url,
        "levels": result.task.search.levels, "max_candidates": result.task.search.max_candidates,
        "candidates_evaluated": len(specs),
        "topologies": dict(Counter(s.topology for s in specs)),
        "module_kinds": dict(Counter(kind for s in specs for kind in s.modules())),
        "seed_dev": result.seed.dev_score, "seed_test": result.seed.test_score,
        "best_dev": result.best.dev_score, "best_test": best_test, "best_test_note": test_note,
        "by_optimizer": dict(Counter(c.optimizer for c in candidates)),
        "by_status": dict(Counter(c.status for c in candidates)),
        "intervals": {name: [round(e.low, 3), round(e.high, 3)] for name, e in result.intervals.items()},
        "best_spec": result.best.candidate.spec,
        "lm_calls": result.usage.lm_calls, "tokens": result.usage.tokens, "cost_usd": result.usage.cost_usd,
        "pruning": {"pruned": result.pruning.pruned, "lm_calls_spent_on_pruned": result.pruning.lm_calls_spent,
                    "lm_calls_saved_estimate": result.pruning.lm_calls_saved},
        "wall_s": round(wall, 1), "stop_reason": result.stop_reason,
    }
    if args.audit_pruning:
        report["pruning_audit"] = _audit_pruning(result, storage)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
