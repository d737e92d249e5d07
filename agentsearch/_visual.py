"""``agentsearch report``: one self-contained HTML page that shows a run, read from the store alone.

``report_data`` gathers what the page shows (plain data, so a test can check it against the store),
``render_report`` draws it: plotly figures (the library Optuna's own visualization uses) with
plotly.js inlined, so the file opens without a network or a server; tables and the right/wrong grid
are HTML. Every text that came from an LM or the data (instructions, predictions, inputs) is escaped:
a prediction that reads ``<script>`` is shown, never run.

History x-axis: the LM calls the run had paid for when each candidate's dev evaluation was done,
counted in candidate order (proposals, made up front, first; test evaluations, made at the end,
left out). Cost per example on the score/cost front: the calls a program makes per dev example,
DSPy's cache hits included, so a re-run from a warm cache does not move the front.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from agentsearch._report import (
    CandidateResult,
    best_candidate,
    pareto_front,
    score_intervals,
)
from agentsearch._stats import bootstrap, verdict
from agentsearch.exceptions import AgentSearchError
from agentsearch.store import (
    BaseStorage,
    EvaluationRecord,
    ExampleResultRecord,
    RunRecord,
    Split,
)

TEXT_CHARS = 400
"""Longest input, gold or prediction text kept per cell (the store has them whole)."""


def _text(value: Any, limit: int = TEXT_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _structure(spec: dict[str, Any]) -> str:
    from agentsearch.search_space import parse_spec

    try:
        return parse_spec(spec).structure()
    except Exception:  # noqa: BLE001 - a spec of a newer version: show it, do not fail the report
        return str(spec.get("topology") or spec.get("kind") or "?")


def _interval(results: Sequence[ExampleResultRecord]) -> dict[str, float] | None:
    if not results:
        return None
    estimate = bootstrap([r.score for r in results])
    return {"mean": estimate.mean, "low": estimate.low, "high": estimate.high, "n": len(results)}


def report_data(storage: BaseStorage, run: RunRecord) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data computed from the run's records."""
    candidates = sorted(storage.list_candidates(run.id), key=lambda c: c.number)
    evaluations = storage.list_evaluations(run_id=run.id)
    by_candidate: dict[int, list[EvaluationRecord]] = defaultdict(list)
    for evaluation in evaluations:
        by_candidate[evaluation.candidate_id].append(evaluation)
    results: dict[int, list[ExampleResultRecord]] = {
        e.id: storage.list_example_results(e.id) for e in evaluations if e.split in (Split.DEV, Split.TEST)}

    def evaluation_of(candidate_id: int, split: Split) -> EvaluationRecord | None:
        return next((e for e in by_candidate[candidate_id] if e.split == split), None)

    def program_calls(evaluation: EvaluationRecord) -> float:
        rows = results.get(evaluation.id) or []
        return sum(r.program_calls for r in rows) / max(1, len(rows))

    spent = run.proposer_lm_calls
    incumbent: float | None = None
    rows: list[dict[str, Any]] = []
    numbers = {c.id: c.number for c in candidates}
    for candidate in candidates:
        spent += sum(e.lm_calls for e in by_candidate[candidate.id] if e.split != Split.TEST)
        dev, test = evaluation_of(candidate.id, Split.DEV), evaluation_of(candidate.id, Split.TEST)
        complete = dev is not None and dev.status == "complete" and dev.score is not None
        if complete and dev is not None and (incumbent is None or (dev.score or 0.0) > incumbent):
            incumbent = dev.score
        rows.append({
            "id": candidate.id, "number": candidate.number, "level": str(candidate.level),
            "optimizer": candidate.optimizer, "parents": list(candidate.parents),
            "parent_numbers": [numbers.get(p) for p in candidate.parents], "status": str(candidate.status),
            "note": candidate.note, "structure": _structure(candidate.spec), "spec": candidate.spec,
            "dev": None if dev is None else dev.score, "dev_status": None if dev is None else str(dev.status),
            "dev_n": 0 if dev is None else dev.n, "dev_errors": 0 if dev is None else dev.n_errors,
            "test": None if test is None or test.status != "complete" else test.score,
            "lm_calls": sum(e.lm_calls for e in by_candidate[candidate.id]),
            "program_calls": None if dev is None else round(program_calls(dev), 3),
            "spent": spent, "incumbent": incumbent,
        })

    found = best_candidate(storage, run.id)
    best_id = None if found is None else found[0].id
    seed_id = candidates[0].id if candidates else None
    tests = {}
    for role, candidate_id in (("seed", seed_id), ("best", best_id)):
        test = None if candidate_id is None else evaluation_of(candidate_id, Split.TEST)
        if test is not None and test.status == "complete":
            tests[role] = {"candidate": candidate_id, **(_interval(results[test.id]) or {})}

    comparison = None
    if best_id is not None and seed_id is not None and best_id != seed_id:
        pair = {candidate_id: CandidateResult(next(c for c in candidates if c.id == candidate_id),
                                              evaluation_of(candidate_id, Split.DEV), evaluation_of(candidate_id, Split.TEST))
                for candidate_id in (best_id, seed_id)}
        intervals = score_intervals(storage, pair[best_id], pair[seed_id])
        for split in ("test", "dev"):
            difference = intervals.get(f"best_minus_seed_{split}")
            if difference is not None:
                comparison = {"split": split, "mean": difference.mean, "low": difference.low,
                              "high": difference.high, "n": difference.n, "verdict": verdict(difference)}
                break

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault((row["level"], row["optimizer"]), {
            "level": row["level"], "optimizer": row["optimizer"], "candidates": 0, "best_dev": None, "lm_calls": 0})
        group["candidates"] += 1
        group["lm_calls"] += row["lm_calls"]
        if row["dev_status"] == "complete" and row["dev"] is not None:
            group["best_dev"] = max(row["dev"], group["best_dev"] if group["best_dev"] is not None else row["dev"])

    measure = "program_calls"
    front = pareto_front(candidates, evaluations, measure, cost_of=program_calls)

    dev_examples = storage.list_examples(run.id, Split.DEV)
    grid = []
    for row in rows:
        dev = evaluation_of(row["id"], Split.DEV)
        if dev is None:
            continue
        cells = {r.example_id: {"score": r.score, "error": _text(r.error) if r.error else None,
                                "prediction": _text(r.prediction or {})} for r in results.get(dev.id, [])}
        grid.append({"candidate": row["id"], "number": row["number"], "dev": row["dev"], "cells": cells})

    usage = storage.run_usage(run.id)
    task = run.task
    budget = task.get("budget") or {}
    return {
        "run": {"id": run.id, "name": run.name, "task": run.task_name, "status": str(run.status),
                "stop_reason": run.stop_reason, "created_at": str(run.created_at),
                "finished_at": None if run.finished_at is None else str(run.finished_at)},
        "settings": {"lm": (task.get("lm") or {}).get("model"), "search": task.get("search") or {},
                     "budget": budget, "concurrency": task.get("concurrency"), "seed": task.get("seed")},
        "usage": {"lm_calls": usage.lm_calls, "tokens": usage.tokens, "cost_usd": usage.cost_usd,
                  "proposer_lm_calls": run.proposer_lm_calls, "max_lm_calls": budget.get("max_lm_calls")},
        "candidates": rows,
        "best": best_id, "seed": seed_id, "tests": tests, "comparison": comparison,
        "groups": sorted(groups.values(), key=lambda g: (g["level"], g["optimizer"])),
        "front": [{"candidate": p.candidate.id, "number": p.candidate.number, "score": p.score, "cost": p.cost}
                  for p in front],
        "lineage": {"nodes": [{"candidate": r["id"], "number": r["number"], "dev": r["dev"]} for r in rows],
                    "edges": [[parent, r["id"]] for r in rows for parent in r["parents"]]},
        "examples": [{"id": e.example_id, "inputs": _text(e.inputs), "gold": _text(e.gold)} for e in dev_examples],
        "grid": grid,
    }


# ---- drawing ------------------------------------------------------------------------------------
def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        import plotly.offline  # noqa: F401 - get_plotlyjs, to inline plotly.js
    except ImportError:
        raise AgentSearchError("agentsearch report draws with plotly: pip install 'agentsearch[report]'") from None
    return go


def _depths(data: dict[str, Any]) -> dict[int, int]:
    """Generation of each candidate: 0 for those without parents, else one more than its deepest parent."""
    depth: dict[int, int] = {}
    for row in data["candidates"]:  # parents are always earlier candidates
        depth[row["id"]] = 1 + max((depth.get(p, 0) for p in row["parents"]), default=-1)
    return depth


def _figures(data: dict[str, Any]) -> dict[str, Any]:
    go = _plotly()
    rows = data["candidates"]
    layout = {"margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 420, "template": "plotly_white"}

    history = go.Figure(layout={**layout, "title": "Dev score against LM calls spent",
                                "xaxis": {"title": "LM calls spent (proposals and evaluations so far)"},
                                "yaxis": {"title": "score", "range": [-0.05, 1.05]}})
    def marker(row: dict[str, Any]) -> str | None:
        """How a candidate is drawn: failed (at 0), else its dev evaluation's status; None: not scored yet."""
        if row["status"] == "failed":
            return "failed"
        return row["dev_status"] if row["dev"] is not None else None

    symbols = {"complete": "circle", "pruned": "x", "failed": "triangle-down"}
    for status, symbol in symbols.items():
        picked = [r for r in rows if marker(r) == status]
        if not picked:
            continue
        history.add_trace(go.Scatter(
            x=[r["spent"] for r in picked], y=[r["dev"] if r["dev"] is not None else 0.0 for r in picked],
            mode="markers", name=f"{status} ({len(picked)})", marker={"symbol": symbol, "size": 9},
            customdata=[r["id"] for r in picked],
            text=[f"#{r['number']} {html.escape(r['structure'])}<br>{r['level']} / {r['optimizer']}"
                  + (f"<br>{html.escape(_text(r['note'], 120))}" if r["note"] else "") for r in picked],
            hovertemplate="%{text}<br>dev %{y:.3f} after %{x} calls<extra></extra>"))
    steps = [r for r in rows if r["incumbent"] is not None]
    if steps:
        history.add_trace(go.Scatter(x=[r["spent"] for r in steps], y=[r["incumbent"] for r in steps],
                                     mode="lines", line={"shape": "hv", "width": 2}, name="best so far (dev)",
                                     hoverinfo="skip"))
    end = rows[-1]["spent"] if rows else 0
    for role, test in data["tests"].items():
        history.add_trace(go.Scatter(
            x=[end], y=[test["mean"]], mode="markers", name=f"{role} on test (95% interval)",
            marker={"symbol": "diamond", "size": 12},
            error_y={"type": "data", "symmetric": False, "array": [test["high"] - test["mean"]],
                     "arrayminus": [test["mean"] - test["low"]]},
            hovertemplate=f"{role} test %{{y:.3f}} [{test['low']:.3f}, {test['high']:.3f}] on {test['n']}<extra></extra>"))

    scored = [r for r in rows if r["dev_status"] == "complete" and r["dev"] is not None]
    front_ids = {p["candidate"] for p in data["front"]}
    front = go.Figure(layout={**layout, "title": "Score/cost front",
                              "xaxis": {"title": "LM calls the program makes per dev example (cache hits included)"},
                              "yaxis": {"title": "dev score", "range": [-0.05, 1.05]}})
    front.add_trace(go.Scatter(
        x=[r["program_calls"] for r in scored if r["id"] not in front_ids],
        y=[r["dev"] for r in scored if r["id"] not in front_ids], mode="markers", name="dominated",
        marker={"color": "#bbbbbb", "size": 8}, customdata=[r["id"] for r in scored if r["id"] not in front_ids],
        text=[f"#{r['number']} {html.escape(r['structure'])}" for r in scored if r["id"] not in front_ids],
        hovertemplate="%{text}<br>dev %{y:.3f}, %{x} calls/example<extra></extra>"))
    front.add_trace(go.Scatter(
        x=[p["cost"] for p in data["front"]], y=[p["score"] for p in data["front"]], mode="lines+markers",
        name="front", line={"shape": "hv"}, marker={"size": 11}, customdata=[p["candidate"] for p in data["front"]],
        text=[f"#{p['number']}" for p in data["front"]],
        hovertemplate="%{text}<br>dev %{y:.3f}, %{x} calls/example<extra></extra>"))

    depth = _depths(data)
    by_id = {r["id"]: r for r in rows}
    lineage = go.Figure(layout={**layout, "title": "Lineage (click a candidate to see its spec)",
                                "xaxis": {"title": "candidate number"}, "yaxis": {"title": "generation"}})
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for parent, child in data["lineage"]["edges"]:
        if parent in by_id:
            edge_x += [by_id[parent]["number"], by_id[child]["number"], None]
            edge_y += [depth[parent], depth[child], None]
    lineage.add_trace(go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#cccccc", "width": 1},
                                 hoverinfo="skip", showlegend=False))
    lineage.add_trace(go.Scatter(
        x=[r["number"] for r in rows], y=[depth[r["id"]] for r in rows], mode="markers", showlegend=False,
        marker={"size": 12, "color": [r["dev"] if r["dev"] is not None else 0.0 for r in rows],
                "colorscale": "Viridis", "cmin": 0, "cmax": 1, "colorbar": {"title": "dev"},
                "line": {"color": ["#d62728" if r["status"] == "failed" else "#333333" for r in rows], "width": 1}},
        customdata=[r["id"] for r in rows],
        text=[f"#{r['number']} {html.escape(r['structure'])} ({r['optimizer']})" for r in rows],
        hovertemplate="%{text}<br>dev %{marker.color:.3f}<extra></extra>"))
    return {name: json.loads(figure.to_json()) for name, figure in
            (("history", history), ("front", front), ("lineage", lineage))}


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no ``<``, ``>`` or ``&`` left for the HTML parser to act on
    (a prediction reading ``</script><script>...`` stays text)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_report(storage: BaseStorage, run: RunRecord) -> str:
    """The run's report as one HTML document (plotly.js inlined)."""
    from agentsearch.optimizers._templates import render_html

    _plotly()
    from plotly.offline import get_plotlyjs

    data = report_data(storage, run)
    figures = _figures(data)
    return render_html("report.html.j2", data=data, data_json=_script_json(data),
                       figures_json=_script_json(figures), plotlyjs=get_plotlyjs())


def write_report(storage: BaseStorage, run: RunRecord, path: Any) -> None:
    from pathlib import Path

    Path(path).write_text(render_report(storage, run), encoding="utf-8")

