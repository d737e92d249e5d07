"""Overhead, concurrency, repetition and store speed, against a fake LM server with fixed latency; prints JSON.

    python bench/throughput.py [--examples 500] [--latency 0.1] [--concurrency 1 4 16 64] [--repeats 3]
                               [--model openai/fake] [--store-candidates 10000] [--store-results 100] [--postgres URL]
                               [--workers 1 2 4 8] [--worker-concurrency 4] [--candidates-per-worker 8]
                               [--only concurrency repetition store workers] [--save]

- concurrency: one fixed candidate scored by agentsearch (evaluator + store, as a run does) on
  ``--examples`` examples, and by ``dspy.Evaluate`` with the same ``num_threads`` and DSPy's own
  ``dspy.LM`` (as a DSPy user evaluates: its default engine, and the litellm engine agentsearch
  uses) on the same server as the anchors, the two taking turns ``--repeats`` times (the median pass is reported: a
  pass at 64 workers lasts seconds, and one pass varied by 25% between runs); examples/s against
  the ideal ``concurrency / latency``, and the time per LM call that is not spent waiting on the server.
- repetition: a prompt-level search run whole, re-run when finished, and killed after half its
  candidates then resumed; LM calls as the server counted them (not as agentsearch reports them).
- store: recording ``--store-candidates`` candidates x ``--store-results`` example results through
  the storage API, on SQLite and on PostgreSQL, then ``agentsearch candidates RUN --top 10``.
- workers: 1, 2, 4, 8 worker processes (``--workers``) sharing one run on PostgreSQL, each at
  ``--worker-concurrency``, ``--candidates-per-worker`` candidates each, against the server at
  ``--latency``: examples/s while the run scores (first to last stored result), against the ideal
  ``workers x concurrency / latency``, and the wall time of the whole run (process start included).

DSPy's cache is off for the concurrency part (every call must reach the server); the repetition
runs each get a fresh cache directory, so a call saved there was saved by the store.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

from agentsearch import SearchCallback  # noqa: E402

os.environ.setdefault("OPENAI_API_KEY", "sk-fake")  # the fake server ignores it; litellm wants one
ANSWERS = {"label": ["positive", "negative"]}


def _write_task(directory: Path, base_url: str, *, train: int, dev: int, test: int, model: str = "openai/fake",
                **search: Any) -> Path:
    """A sentiment-shaped task on generated sentences (the fake LM answers by hash, not by meaning)."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", train), ("dev", dev), ("test", test)):
        with open(directory / f"{split}.jsonl", "w") as out:
            for i in range(size):
                label = "positive" if (i * 7919 + len(split)) % 2 else "negative"
                out.write(json.dumps({"sentence": f"{split} review number {i}: it was {label}", "label": label}) + "\n")
    task = {
        "name": directory.name,
        "program": {"signature": "sentence -> label", "instructions": "Classify the sentiment."},
        "data": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
        "metric": "exact_match",
        "lm": {"model": model, "api_base": base_url, "max_tokens": 16, "num_retries": 0},
        "search": {"optimizer": "tpe", "levels": ["prompt"], **search},
        "seed": 0,
    }
    path = directory / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


# concurrency -------------------------------------------------------------------------------------
def concurrency(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import dspy

    import agentsearch
    from agentsearch.data import load_split
    from agentsearch.metrics import resolve_metric
    from agentsearch.testing import running_server

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    rows = []
    with running_server(args.latency, ANSWERS) as server:
        task_file = _write_task(work / "concurrency", server.base_url, train=4, dev=args.examples, test=1,
                                model=args.model, max_candidates=1)
        task = agentsearch.load_task(task_file)
        metric = resolve_metric(task.metric)
        devset = [item.example for item in load_split(task, "dev")]
        for level in args.concurrency:
            ours: list[dict[str, Any]] = []
            anchors: dict[str, list[dict[str, Any]]] = {"dspy_evaluate": [], "dspy_evaluate_litellm": []}
            for attempt in range(args.repeats):  # the sides take turns, so drift on the machine hits all
                timer = _EvaluationTimer(server)
                agentsearch.optimize(task, storage=f"sqlite:///{work / f'concurrency-{level}-{attempt}.db'}",
                                     concurrency=level, callback=timer)
                ours.append(_figures(args, level, timer.dev_wall_s, timer.dev_lm_calls))
                # DSPy's own LM on the same server and settings, as a DSPy user evaluates: its default engine
                # ("auto": DSPy 3.4's native lm15 client where it can), and litellm's, which agentsearch uses
                for name, engine in (("dspy_evaluate", "auto"), ("dspy_evaluate_litellm", "litellm")):
                    program = dspy.Predict(dspy.Signature("sentence -> label", task.program.instructions))
                    before = server.stats()
                    anchor_lm = dspy.LM(task.lm.model, api_base=task.lm.api_base, max_tokens=task.lm.max_tokens,
                                        temperature=task.lm.temperature, num_retries=0, cache=False, engine=engine)
                    with dspy.context(lm=anchor_lm):
                        evaluate = dspy.Evaluate(devset=devset, metric=lambda gold, pred, trace=None: metric(gold, pred),
                                                 num_threads=level, display_progress=False, max_errors=len(devset))
                        started = time.perf_counter()
                        evaluate(program)
                        anchor_wall = time.perf_counter() - started
                    anchors[name].append(_figures(args, level, anchor_wall, server.stats().requests - before.requests))
            rows.append({"concurrency": level, "ideal_examples_per_s": round(level / args.latency, 1),
                         "agentsearch": _median(ours), **{name: _median(runs) for name, runs in anchors.items()}})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


class _EvaluationTimer(SearchCallback):
    """Times the seed's dev evaluation: scoring and storing every example, as in a search."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._started = 0.0
        self._requests = 0
        self.dev_wall_s = 0.0
        self.dev_lm_calls = 0

    def on_evaluation_start(self, candidate, split, total, done) -> None:  # noqa: ANN001
        if split == "dev":
            self._requests = self.server.stats().requests
            self._started = time.perf_counter()

    def on_evaluation_end(self, candidate, evaluation, best_dev) -> None:  # noqa: ANN001
        if evaluation.split == "dev":
            self.dev_wall_s = time.perf_counter() - self._started
            self.dev_lm_calls = self.server.stats().requests - self._requests


def _median(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The pass with the median wall time, with every pass's examples/s beside it."""
    chosen = sorted(passes, key=lambda figures: figures["wall_s"])[len(passes) // 2]
    return {**chosen, "examples_per_s_each_pass": [figures["examples_per_s"] for figures in passes]}


def _figures(args: argparse.Namespace, level: int, wall_s: float, calls: int) -> dict[str, Any]:
    """Throughput, its share of the ideal, and per-call time not spent waiting (wall x workers / calls - latency)."""
    return {
        "wall_s": round(wall_s, 2), "lm_calls": calls,
        "examples_per_s": round(args.examples / wall_s, 1),
        "share_of_ideal": round(args.examples / wall_s / (level / args.latency), 3),
        "overhead_ms_per_call": round((wall_s * level / calls - args.latency) * 1000, 2),
    }


# repetition --------------------------------------------------------------------------------------
def _optimize_process(task: Path, db: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DSPY_CACHEDIR": str(cache)}
    command = [sys.executable, "-m", "agentsearch", "optimize", str(task), "--storage", f"sqlite:///{db}", "--json", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"agentsearch optimize failed ({process.returncode}): {err.strip().splitlines()[-1:]}")


def _finished_candidates(db: Path) -> int:
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT count(*) FROM candidates WHERE status != 'pending'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _run_summary(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as connection:
        status, reason = connection.execute("SELECT status, stop_reason FROM runs").fetchone()
        best = connection.execute(
            "SELECT max(score) FROM evaluations WHERE split = 'dev' AND status = 'complete'").fetchone()[0]
        candidates = connection.execute("SELECT count(*) FROM candidates").fetchone()[0]
    return {"status": status, "stop_reason": reason, "best_dev": best, "candidates": candidates}


def repetition(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from agentsearch.testing import running_server

    max_candidates = 10
    with running_server(args.repetition_latency, ANSWERS) as server:
        task = _write_task(work / "repetition", server.base_url, train=40, dev=40, test=20,
                           max_candidates=max_candidates, num_instructions=3, max_demos=4, bootstrap_examples=16)
        calls = server.stats().requests

        def spent() -> int:
            nonlocal calls
            now = server.stats().requests
            calls, used = now, now - calls
            return used

        _finish(_optimize_process(task, work / "whole.db", work / "cache-whole", "--run", "whole"))
        whole = {"lm_calls": spent(), **_run_summary(work / "whole.db")}
        _finish(_optimize_process(task, work / "whole.db", work / "cache-rerun", "--run", "whole"))
        rerun = {"lm_calls": spent(), **_run_summary(work / "whole.db")}

        killed = _optimize_process(task, work / "killed.db", work / "cache-killed", "--run", "killed")
        while killed.poll() is None and _finished_candidates(work / "killed.db") < max_candidates // 2:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        at_kill = {"lm_calls": spent(), "finished_candidates": _finished_candidates(work / "killed.db")}
        _finish(_optimize_process(task, work / "killed.db", work / "cache-resumed", "--resume"))
        resumed = {"lm_calls": spent(), **_run_summary(work / "killed.db")}
    return {
        "search": f"tpe, prompt level, {max_candidates} candidates, dev 40, test 20, latency {args.repetition_latency} s",
        "uninterrupted": whole,
        "rerun_finished": rerun,
        "killed": at_kill,
        "resumed": resumed,
        "killed_plus_resumed_lm_calls": at_kill["lm_calls"] + resumed["lm_calls"],
        "extra_lm_calls_from_the_kill": at_kill["lm_calls"] + resumed["lm_calls"] - whole["lm_calls"],
    }


# store -------------------------------------------------------------------------------------------
def _outcome(i: int, j: int) -> Any:
    from agentsearch.evaluators import ExampleOutcome
    from agentsearch.lm import Usage

    score = float((i + j) % 3 == 0)
    return ExampleOutcome(f"ex-{j}", {"label": "positive" if score else "negative"}, score, None,
                          Usage(1, 120, 4, 0.0), 0.1, 1)


def _record(url: str, candidates: int, results: int, batch: int) -> dict[str, Any]:
    """Write as a run does: each candidate, its dev evaluation, its results ``batch`` per transaction, the close."""
    from agentsearch import get_storage
    from agentsearch.search_space import CandidateSpec, PredictorSpec

    storage = get_storage(url)
    run = storage.create_run("store-bench", "store-bench", {"name": "store-bench", "lm": {"model": "openai/fake"}})
    started = time.perf_counter()
    for i in range(candidates):
        spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", instructions=f"instruction {i}",
                                                       demo_ids=(f"d{i % 7}",)),))
        candidate = storage.create_candidate(run.id, spec.model_dump(mode="json"), spec.hash, level="prompt",
                                             optimizer="bench")
        evaluation = storage.get_or_create_evaluation(candidate.id, "dev")
        for start in range(0, results, batch):
            storage.add_example_results(evaluation.id, [_outcome(i, j) for j in range(start, min(results, start + batch))])
        storage.complete_evaluation(evaluation.id, 1.0)
        storage.set_candidate_status(candidate.id, "complete")
        if i and i % 1000 == 0:
            print(f"store {url.split(':')[0]}: {i} candidates, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    record_s = time.perf_counter() - started
    started = time.perf_counter()
    listing = subprocess.run([sys.executable, "-m", "agentsearch", "candidates", "store-bench", "--top", "10",
                              "--storage", url, "--json"], capture_output=True, text=True)
    top_s = time.perf_counter() - started
    if listing.returncode != 0:
        raise SystemExit(f"agentsearch candidates failed: {listing.stderr.strip()}")
    return {"candidates": candidates, "results": candidates * results, "results_per_transaction": batch,
            "record_s": round(record_s, 1),
            "results_per_s": round(candidates * results / record_s), "candidates_top10_s": round(top_s, 2),
            "top10_rows": len(json.loads(listing.stdout))}


def _fresh_postgres(url: str) -> tuple[str, Any]:
    """A new database beside the one ``url`` names (dropped after), so the timing starts from empty tables."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"agentsearch_bench_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def store(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Per batch size: 1 is a run at concurrency 1 (each result its own commit); larger ones are what
    the evaluator hands over when several examples finish together."""
    postgres = args.postgres or os.environ.get("AGENTSEARCH_TEST_POSTGRES_URL")
    report: dict[str, Any] = {"sqlite": [], "postgresql": []}
    for batch in args.store_batch:
        report["sqlite"].append(_record(f"sqlite:///{work / f'store-{batch}.db'}", args.store_candidates,
                                        args.store_results, batch))
        print(json.dumps(report["sqlite"][-1]), file=sys.stderr)
        if not postgres:
            report["postgresql"] = "skipped: give --postgres URL or set AGENTSEARCH_TEST_POSTGRES_URL"
            continue
        url, drop = _fresh_postgres(postgres)
        try:
            report["postgresql"].append(_record(url, args.store_candidates, args.store_results, batch))
            print(json.dumps(report["postgresql"][-1]), file=sys.stderr)
        finally:
            drop()
    return report


# workers -----------------------------------------------------------------------------------------
def _scored(url: str, run_name: str) -> tuple[int, float]:
    """Results stored by the run and the seconds from its first to its last."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as connection:
        count, first, last = connection.execute(text(
            "SELECT count(*), min(r.created_at), max(r.created_at) FROM example_results r "
            "JOIN evaluations e ON e.id = r.evaluation_id JOIN candidates c ON c.id = e.candidate_id "
            "JOIN runs ON runs.id = c.run_id WHERE runs.name = :name"), {"name": run_name}).one()
    engine.dispose()
    return int(count), (last - first).total_seconds()


def workers(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from agentsearch.testing import running_server

    postgres = args.postgres or os.environ.get("AGENTSEARCH_TEST_POSTGRES_URL")
    if not postgres:
        raise SystemExit("the workers part needs PostgreSQL: give --postgres URL or set AGENTSEARCH_TEST_POSTGRES_URL")
    rows = []
    with running_server(args.latency, ANSWERS) as server:
        for count in args.workers:
            url, drop = _fresh_postgres(postgres)
            try:
                task = _write_task(work / f"workers-{count}", server.base_url, train=40, dev=40, test=20,
                                   levels=["prompt", "module"], optimizer="random", pruner="none",
                                   max_candidates=args.candidates_per_worker * count, num_instructions=3,
                                   max_demos=4, num_demo_sets=3, bootstrap_examples=8, formats=["chat", "json"],
                                   modules={"kinds": ["predict", "chain_of_thought"], "topologies": ["single"]})
                # the URL (and any password in it) through the environment: a command line is readable by anyone
                env = {**os.environ, "DSPY_CACHEDIR": str(work / f"cache-workers-{count}"), "AGENTSEARCH_STORAGE": url}
                command = [sys.executable, "-m", "agentsearch", "optimize", str(task), "--run", "bench",
                           "--concurrency", str(args.worker_concurrency), "--json"]
                requests = server.stats().requests
                started = time.perf_counter()
                processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              text=True) for _ in range(count)]
                for process in processes:
                    _finish(process)
                wall_s = time.perf_counter() - started
                scored, span_s = _scored(url, "bench")
            finally:
                drop()
            ideal = count * args.worker_concurrency / args.latency
            rows.append({"workers": count, "concurrency_each": args.worker_concurrency,
                         "candidates": args.candidates_per_worker * count, "examples_scored": scored,
                         "lm_calls": server.stats().requests - requests, "scoring_s": round(span_s, 1),
                         "examples_per_s": round(scored / span_s, 1), "ideal_per_s": round(ideal, 1),
                         "share_of_ideal": round(scored / span_s / ideal, 3), "wall_s": round(wall_s, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the fake server waits per call")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--model", default="openai/fake",
                        help="the model name sent to the fake server in the concurrency part: a name litellm and "
                             "DSPy price (openai/gpt-4o-mini) makes both sides price each call as for a hosted model")
    parser.add_argument("--repeats", type=int, default=3, help="passes per concurrency level; the median is reported")
    parser.add_argument("--repetition-latency", type=float, default=0.01)
    parser.add_argument("--store-candidates", type=int, default=10_000)
    parser.add_argument("--store-results", type=int, default=100)
    parser.add_argument("--store-batch", type=int, nargs="+", default=[1, 100],
                        help="results per transaction (1: each as it finishes; 100: a whole evaluation)")
    parser.add_argument("--postgres", help="PostgreSQL URL (a fresh database is created beside it and dropped)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--candidates-per-worker", type=int, default=8)
    parser.add_argument("--only", nargs="+", choices=["concurrency", "repetition", "store", "workers"])
    parser.add_argument("--save", action="store_true", help="also write the JSON to bench/results/")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentsearch-throughput-"))
    parts = args.only or ["concurrency", "repetition", "store", "workers"]
    settings = {k: v for k, v in vars(args).items() if k not in ("only", "save", "postgres")}
    report: dict[str, Any] = {"bench": "throughput", "settings": settings}
    for part in parts:
        started = time.perf_counter()
        report[part] = {"concurrency": concurrency, "repetition": repetition, "store": store,
                        "workers": workers}[part](args, work)
        print(f"{part}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    emit(report, "throughput", save=args.save)


if __name__ == "__main__":
    main()
