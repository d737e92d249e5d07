"""The ``agentsearch`` command. Errors a user can cause print one line and exit 2, never a traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from agentsearch.exceptions import AgentSearchError
from agentsearch.lm._secrets import mask_url, redact_secrets, redact_tree
from agentsearch.store._base import DEFAULT_STORAGE, STORAGE_ENV, resolve_storage_url

if TYPE_CHECKING:
    from agentsearch.store import RunRecord
    from agentsearch.task import ProgramConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Search agent programs for a task.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the experiment database.")
app.add_typer(db_app, name="db")
out = Console(log_path=False)
err = Console(stderr=True, log_path=False)

StorageOpt = typer.Option(
    None, "--storage", show_default=False,
    help=f"SQLAlchemy URL of the experiment database. Resolved in this order: --storage, then ${STORAGE_ENV}, "
         f"then the task file's `storage` (commands that read one), then {DEFAULT_STORAGE}.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"agentsearch {version('agentsearch')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Search agent programs for a task."""


def _open_existing(url: str | None) -> Any:
    """Listing commands read a database; they must not create an empty one where a path was mistyped."""
    from agentsearch.store import get_storage

    url = resolve_storage_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise AgentSearchError(f"--storage: no database at {path} (see --help for how storage is chosen)")
    return get_storage(url)


def _emit_json(data: Any) -> None:
    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        return str(value)

    sys.stdout.write(json.dumps(data, default=convert, indent=2) + "\n")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _run_or_fail(storage: Any, name: str) -> Any:
    run = storage.get_run(name)
    if run is None:
        raise AgentSearchError(f"no run {name!r} in {storage.display_url}")
    return run


def _cost_unit(evaluations: list[Any]) -> str:
    """The unit a run priced its calls in: ``usd`` where litellm knew the model's price, else ``tokens``.

    Read from stored costs rather than asked of litellm, whose import takes longer than the query."""
    return "usd" if any(evaluation.cost_usd > 0 for evaluation in evaluations) else "tokens"


@app.command()
def optimize(
    task_file: Path = typer.Argument(..., help="task.yaml"),
    resume: bool = typer.Option(False, "--resume", help="Continue the task's latest unfinished run."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name; an existing run of this name is continued."),
    storage: Optional[str] = StorageOpt,
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", min=1),
    max_lm_calls: Optional[int] = typer.Option(None, "--max-lm-calls", min=1),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also save the best program here."),
    as_json: bool = JsonOpt,
) -> None:
    """Run a search: seed program, bootstrapped demos, proposed instructions, TPE/random search, test report.

    With --run NAME on a PostgreSQL --storage, the same command on several machines joins one run."""
    from agentsearch import optimize as run_search
    from agentsearch.exceptions import TaskSpecError
    from agentsearch.task import load_task

    task = load_task(task_file)
    if out_file is not None and out_file.is_dir():
        raise TaskSpecError(f"--out: {out_file} is a directory")
    url = resolve_storage_url(storage, task.storage)
    again = f"`agentsearch optimize {task_file} --resume" + (f" --storage {mask_url(url)}`" if url != DEFAULT_STORAGE else "`")
    _drive(lambda progress: run_search(task, storage=url, run_name=run, resume=resume, max_candidates=max_candidates,
                                       max_lm_calls=max_lm_calls, concurrency=concurrency, seed=seed,
                                       callback=progress),
           max_candidates or task.search.max_candidates, url=url, again=again, as_json=as_json, out_file=out_file,
           max_lm_calls=max_lm_calls or task.budget.max_lm_calls)


@app.command()
def worker(
    run: str = typer.Argument(..., help="name of the run to join"),
    storage: Optional[str] = StorageOpt,
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256),
    as_json: bool = JsonOpt,
) -> None:
    """Join a run as one more worker, with no task file: the task and its examples are read from the store.

    Workers share the run's candidates (each claimed by one worker at a time), its budget and its
    quota; run as many as the LM's rate limits allow, on as many machines, against one PostgreSQL."""
    from agentsearch.run import work

    url = resolve_storage_url(storage)
    stored = _open_existing(url)
    record = _run_or_fail(stored, run)
    max_candidates = int(record.task.get("search", {}).get("max_candidates") or 0)
    again = f"`agentsearch worker {run}" + (f" --storage {mask_url(url)}`" if url != DEFAULT_STORAGE else "`")
    _drive(lambda progress: work(run, storage=stored, concurrency=concurrency, callback=progress),
           max_candidates, url=url, again=again, as_json=as_json, out_file=None,
           max_lm_calls=(record.task.get("budget") or {}).get("max_lm_calls"))


def _drive(search: Any, max_candidates: int, *, url: str, again: str, as_json: bool, out_file: Path | None,
           max_lm_calls: int | None = None) -> None:
    """Run ``search(progress)`` with the live display, Ctrl-C and SIGTERM handled, then print the summary."""
    from agentsearch._progress import RichProgress
    from agentsearch.exceptions import LMUnavailableError
    from agentsearch.run import Terminated

    logging.getLogger("dspy").setLevel(logging.ERROR)  # per-call truncation warnings would flood the display
    display = err if as_json else out
    progress = RichProgress(display, max_candidates, max_lm_calls)

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        with progress:
            result = search(progress)
    except (KeyboardInterrupt, Terminated) as exc:
        cause = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
        err.print(f"{cause}: finished evaluations are saved; continue with {again}", markup=False, highlight=False,
                  soft_wrap=True)
        _exit_now(130 if isinstance(exc, KeyboardInterrupt) else 143)
    except LMUnavailableError as exc:
        err.print(f"error: {redact_secrets(str(exc)).rstrip('.')}. Nothing was scored while it failed; fix it, then "
                  f"continue with {again}", markup=False, highlight=False, soft_wrap=True)
        _exit_now(exc.exit_code)
    if out_file:
        result.save(out_file)
    summary = {
        "run": result.run.name, "status": result.run.status, "stop_reason": result.stop_reason,
        "seed": {"candidate": result.seed.candidate.id, "dev": result.seed.dev_score, "test": result.seed.test_score},
        "best": {"candidate": result.best.candidate.id, "dev": result.best.dev_score, "test": result.best.test_score,
                 "spec": result.best.candidate.spec},
        "intervals_95": result.intervals,
        "pruning": result.pruning,
        "lm_calls": result.usage.lm_calls, "tokens": result.usage.tokens, "cost_usd": result.usage.cost_usd,
        "wall_s": round(result.wall_s, 1),
    }
    if as_json:
        _emit_json(summary)
        return
    for part in result.summary_parts():
        if isinstance(part, str):
            out.print(part, markup=False, highlight=False)
        else:
            out.print(part)
    out.print(f"export the best program: agentsearch export {result.run.name} --out best.json"
              + (f" --storage {mask_url(url)}" if url != DEFAULT_STORAGE else ""), markup=False, highlight=False,
              soft_wrap=True)  # a command to copy: one line, however long


@app.command()
def runs(storage: Optional[str] = StorageOpt, as_json: bool = JsonOpt) -> None:
    """List runs with their status and best dev score."""
    from agentsearch._report import best_candidate

    store = _open_existing(storage)
    rows = []
    for record in store.list_runs():
        found = best_candidate(store, record.id)
        usage = store.run_usage(record.id)
        age = record.seconds_since_heartbeat()
        rows.append({"id": record.id, "name": record.name, "task": record.task_name, "status": record.status,
                     "lost": record.lost, "last_seen_s": None if age is None else round(age, 1),
                     "stop_reason": record.stop_reason, "candidates": len(store.list_candidates(record.id)),
                     "best_dev": found[1].score if found else None, "lm_calls": usage.lm_calls,
                     "cost_usd": usage.cost_usd, "created_at": record.created_at})
    if as_json:
        _emit_json(rows)
        return
    # A run name is what the user types next: it is never cut. On a narrow terminal the table keeps the
    # columns that say how a run is doing, and drops id, task and date (all in --json).
    wide = out.width >= 120
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True, min_width=max((len(row["name"]) for row in rows), default=4))
    extra = ("id", "task", "created") if wide else ()
    table.add_column("status", min_width=len("interrupted"), overflow="fold")
    for column in ("cands", "best dev", "LM calls", *extra):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = row["status"]
        if row["lost"]:
            seen = "never" if row["last_seen_s"] is None else f"{row['last_seen_s'] / 60:.0f} min ago"
            status = f"lost: no heartbeat, last seen {seen}"
        cells = [row["name"], status, str(row["candidates"]), _score(row["best_dev"]), str(row["lm_calls"])]
        if wide:
            cells += [str(row["id"]), row["task"], f"{row['created_at']:%Y-%m-%d %H:%M}"]
        table.add_row(*cells)
    out.print(table)


@app.command()
def candidates(
    run: str = typer.Argument(..., help="run name or id"),
    top: int = typer.Option(10, "--top", min=1),
    pareto: bool = typer.Option(False, "--pareto", help="only the dev score / cost-per-example Pareto front"),
    storage: Optional[str] = StorageOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The best candidates of a run by dev score, or its score/cost Pareto front."""
    from agentsearch._report import cost_per_example, pareto_front
    from agentsearch.search_space import parse_spec

    store = _open_existing(storage)
    record = _run_or_fail(store, run)
    if pareto:
        evaluations = store.list_evaluations(run_id=record.id)
        measure = _cost_unit(evaluations)
        chosen = [point.candidate for point in pareto_front(store.list_candidates(record.id), evaluations, measure)]
    else:
        chosen = store.best_candidates(record.id, top)
    by_candidate = {c.id: {e.split: e for e in store.list_evaluations(candidate_id=c.id)} for c in chosen}
    if not pareto:
        measure = _cost_unit([e for splits in by_candidate.values() for e in splits.values()])
    rows = []
    for candidate in chosen:
        splits = by_candidate[candidate.id]
        dev, test = splits.get("dev"), splits.get("test")
        spec = parse_spec(candidate.spec)
        predictors = getattr(spec, "predictors", ())  # an agent design has code, not predictors
        rows.append({
            "id": candidate.id, "number": candidate.number, "status": candidate.status,
            "optimizer": candidate.optimizer, "structure": spec.structure(),
            "format": ",".join(dict.fromkeys(p.format for p in predictors)) or "-",
            "demos": sum(len(p.demo_ids) for p in predictors if p.module != "retrieve_demos"),
            "instructions": predictors[0].instructions if predictors else getattr(spec, "rationale", ""),
            "dev": dev.score if dev and dev.status == "complete" else None,
            "dev_partial": dev.score if dev and dev.status == "pruned" else None,
            "test": test.score if test and test.status == "complete" else None,
            "lm_calls_per_example": dev.lm_calls / dev.n if dev and dev.n else None,
            "tokens_per_example": dev.tokens / dev.n if dev and dev.n else None,
            "cost_per_example": cost_per_example(dev, measure) if dev and dev.n else None, "cost_unit": measure,
            "lm_calls": sum(e.lm_calls for e in splits.values()), "cost_usd": sum(e.cost_usd for e in splits.values()),
        })
    if pareto:
        rows.sort(key=lambda row: (row["cost_per_example"], -(row["dev"] or 0.0)))
    if as_json:
        _emit_json(rows)
        return
    title = f"run {record.name}" + (f": dev score / {measure} per example Pareto front" if pareto else "")
    table = Table(title=title)
    for column in ("id", "#", "dev", "test", "structure", "format", "demos", "calls/ex", "tokens/ex", "instructions"):
        table.add_column(column, overflow="fold")
    for row in rows:
        dev = _score(row["dev"]) if row["dev_partial"] is None else f"({_score(row['dev_partial'])} pruned)"
        per_call = "-" if row["lm_calls_per_example"] is None else f"{row['lm_calls_per_example']:.1f}"
        per_token = "-" if row["tokens_per_example"] is None else f"{row['tokens_per_example']:.0f}"
        table.add_row(str(row["id"]), str(row["number"]), dev, _score(row["test"]), row["structure"], row["format"],
                      str(row["demos"]), per_call, per_token, row["instructions"][:50])
    out.print(table)


@app.command()
def show(candidate_id: int = typer.Argument(..., help="candidate id"), storage: Optional[str] = StorageOpt,
         as_json: bool = JsonOpt) -> None:
    """One candidate: its spec (an agent design's code), scores per split, cost and lineage."""
    from rich.syntax import Syntax

    from agentsearch.search_space import DesignSpec, parse_spec

    store = _open_existing(storage)
    candidate = store.get_candidate(candidate_id)
    if candidate is None:
        raise AgentSearchError(f"no candidate {candidate_id} in {store.display_url}")
    lineage, parents = [], list(candidate.parents)
    while parents:
        parent = store.get_candidate(parents[0])
        if parent is None:
            break
        lineage.append({"id": parent.id, "number": parent.number, "optimizer": parent.optimizer})
        parents = list(parent.parents)
    data = {"candidate": candidate, "run": _run_or_fail(store, candidate.run_id).name,
            "evaluations": store.list_evaluations(candidate_id=candidate.id), "lineage": lineage}
    if as_json:
        _emit_json(data)
        return
    out.print(f"[bold]candidate {candidate.id}[/] (#{candidate.number} of run {data['run']}), {candidate.level} level,"
              f" {candidate.optimizer}, {candidate.status}, hash {candidate.spec_hash}")
    if candidate.note:
        out.print(f"note: {candidate.note}")
    spec = parse_spec(candidate.spec)
    if isinstance(spec, DesignSpec):
        out.print(f"design {spec.name!r}: {spec.rationale}")
        out.print(Syntax(spec.code, "python", line_numbers=True))
    else:
        out.print_json(json.dumps(candidate.spec))
    for evaluation in data["evaluations"]:
        out.print(f"{evaluation.split}: {_score(evaluation.score)} on {evaluation.n} examples ({evaluation.status}), "
                  f"{evaluation.n_errors} errors, {evaluation.lm_calls} LM calls, {evaluation.tokens} tokens, "
                  f"${evaluation.cost_usd:.4f}, {evaluation.wall_s:.1f} s")
        if evaluation.note:
            out.print(f"  {evaluation.note}", markup=False)
        if evaluation.top_error:
            out.print(f"  most common error ({evaluation.top_error_count} of {evaluation.n_errors}): "
                      f"{evaluation.top_error}", markup=False, highlight=False)
    out.print("lineage: " + (" <- ".join(f"#{p['number']} ({p['optimizer']})" for p in lineage) or "none"))


@app.command()
def examples(
    candidate_id: int = typer.Argument(..., help="candidate id (see `agentsearch candidates RUN`)"),
    split: str = typer.Option("dev", "--split", help="train, dev or test"),
    failed: bool = typer.Option(False, "--failed", help="only examples scored below 1 or with an error"),
    storage: Optional[str] = StorageOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Per example of a candidate: input, gold answer, prediction, score and error, read from the database alone."""
    from agentsearch.task import SPLITS

    if split not in SPLITS:
        raise AgentSearchError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    store = _open_existing(storage)
    candidate = store.get_candidate(candidate_id)
    if candidate is None:
        raise AgentSearchError(f"no candidate {candidate_id} in {store.display_url}")
    evaluation = next((e for e in store.list_evaluations(candidate_id=candidate_id) if e.split == split), None)
    if evaluation is None:
        raise AgentSearchError(f"candidate {candidate_id} has no {split} evaluation")
    kept = {example.example_id: example for example in store.list_examples(candidate.run_id, split)}
    rows = []
    for result in store.list_example_results(evaluation.id):
        if failed and result.score >= 1.0 and result.error is None:
            continue
        example = kept.get(result.example_id)
        rows.append({"example_id": result.example_id, "inputs": example.inputs if example else None,
                     "gold": example.gold if example else None, "prediction": result.prediction,
                     "score": result.score, "error": result.error, "lm_calls": result.program_calls})
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"candidate {candidate_id} on {split}: {_score(evaluation.score)} over {evaluation.n} examples"
                        f" ({evaluation.status}); {len(rows)} shown")
    for column in ("id", "input", "gold", "prediction", "score", "error"):
        table.add_column(column, overflow="fold")

    def fields(values: dict[str, Any] | None) -> str:
        return "-" if values is None else "; ".join(f"{k}: {v}" for k, v in values.items())

    for row in rows:
        table.add_row(row["example_id"], fields(row["inputs"])[:200], fields(row["gold"])[:100],
                      fields(row["prediction"])[:200], f"{row['score']:.2f}", (row["error"] or "")[:200])
    out.print(table)


@app.command()
def report(run: str = typer.Argument(..., help="run name or id"),
           out_file: Path = typer.Option(Path("report.html"), "--out", help="the HTML file to write"),
           storage: Optional[str] = StorageOpt) -> None:
    """Draw a run as one self-contained HTML page (no network or server needed to open it): the search
    history, each level's and optimizer's share, the score/cost front, the lineage and the right/wrong
    grid of candidates by dev examples. Needs the report extra: pip install 'agentsearch[report]'."""
    from agentsearch._visual import write_report

    store = _open_existing(storage)
    record = _run_or_fail(store, run)
    if out_file.is_dir():
        raise AgentSearchError(f"--out: {out_file} is a directory")
    write_report(store, record, out_file)
    out.print(f"wrote {out_file}: run {record.name}, {len(store.list_candidates(record.id))} candidates; "
              "open it in a browser", markup=False, highlight=False, soft_wrap=True)


@app.command()
def dashboard(storage: Optional[str] = StorageOpt,
              host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (this machine only by default)"),
              port: int = typer.Option(8080, "--port", min=1, max=65535)) -> None:
    """Start optuna-dashboard on the runs' database: each run's study, its trials labelled with their
    candidates (ids, levels, modules, formats, instructions, demo counts). Needs the report extra."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise AgentSearchError("agentsearch dashboard runs optuna-dashboard: pip install 'agentsearch[report]'") from None
    url = resolve_storage_url(storage)
    _open_existing(url)  # an existing database only, not an empty one where a path was mistyped
    out.print(f"optuna-dashboard on {mask_url(url)}: http://{host}:{port}/ (Ctrl-C stops it)", markup=False,
              highlight=False, soft_wrap=True)
    run_server(url, host=host, port=port)


@app.command()
def export(run: str = typer.Argument(..., help="run name or id"),
           out_file: Path = typer.Option(..., "--out", help="where to write the program JSON"),
           file_format: str = typer.Option("agentsearch", "--format",
                                            help="agentsearch (load_program reads it) or dspy (a single Predict "
                                                 "or ChainOfThought node, or your own program, as DSPy's own "
                                                 "state file)"),
           storage: Optional[str] = StorageOpt) -> None:
    """Save the run's best program (by dev score) as a self-contained JSON file (and an agent design as .py too)."""
    from agentsearch._report import CandidateResult, best_candidate
    from agentsearch.run import program_metadata
    from agentsearch.search_space import (
        DesignSpec,
        build_program,
        parse_spec,
        save_program,
    )

    if file_format not in ("agentsearch", "dspy"):
        raise AgentSearchError(f"--format: expected agentsearch or dspy, got {file_format!r}")
    store = _open_existing(storage)
    record = _run_or_fail(store, run)
    if out_file.is_dir():
        raise AgentSearchError(f"--out: {out_file} is a directory")
    found = best_candidate(store, record.id)
    if found is None:
        raise AgentSearchError(f"run {record.name} has no candidate with a dev score yet")
    candidate, dev = found
    test = next((e for e in store.list_evaluations(candidate_id=candidate.id) if e.split == "test"), None)
    spec = parse_spec(candidate.spec)
    metadata = program_metadata(record, CandidateResult(candidate, dev, test))
    lm = redact_tree(record.task["lm"])  # stored masked; runs of older versions may not be
    demos = (record.space or {}).get("demos", {})
    student = _stored_program(record)  # AgentSearch.compile's student: how to build it, its DSPy state
    if file_format == "dspy" and student is not None and student.state is not None and spec.topology == "program":
        from agentsearch._export import write_student_state

        loader = write_student_state(student.state, str(spec.program), spec, demos, out_file)  # no class needed
        out.print(f"wrote {out_file}: candidate {candidate.id} (#{candidate.number}), dev {_score(dev.score)}, as "
                  f"DSPy state; load it with:\n{loader}", markup=False, highlight=False, soft_wrap=True)
        return
    # your own program (program.module) is imported from where you run export, as from beside the task file
    program = build_program(spec, demos, base_dir=Path.cwd())
    if file_format == "dspy":
        from agentsearch._export import write_dspy_state

        loader = write_dspy_state(program, out_file)  # refuses, writing nothing, what DSPy cannot load
        out.print(f"wrote {out_file}: candidate {candidate.id} (#{candidate.number}), dev {_score(dev.score)}, as "
                  f"DSPy state; load it with:\n{loader}", markup=False, highlight=False, soft_wrap=True)
        return
    save_program(program, out_file, lm=lm, metadata=metadata)
    out.print(f"wrote {out_file}: candidate {candidate.id} (#{candidate.number}), dev {_score(dev.score)}")
    if isinstance(spec, DesignSpec):
        from agentsearch._export import lm_options, write_standalone_design

        standalone = write_standalone_design(spec, out_file.with_suffix(".py"), model=lm["model"],
                                             lm_options=lm_options(lm), metadata=metadata)
        out.print(f"wrote {standalone}: the design as a standalone Python program")


def _stored_program(record: RunRecord) -> ProgramConfig | None:
    """The run's ``program`` block, read so this process can build the program it names (a compiled
    student's DSPy state is kept there); None for a run of a program built from a signature."""
    from pydantic import ValidationError

    from agentsearch.task import ProgramConfig as Config

    block = record.task.get("program") or {}
    if not block.get("module"):
        return None
    try:
        return Config.model_validate(block)
    except ValidationError as exc:
        raise AgentSearchError(f"run {record.name}: its stored program block cannot be read ({exc.errors()[0]['msg']})")


@app.command()
def evaluate(
    program_file: Path = typer.Argument(..., help="a program saved by export or --out"),
    task_file: Path = typer.Argument(..., help="task.yaml whose data and metric to use"),
    split: str = typer.Option("test", "--split", help="train, dev or test"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=256),
    as_json: bool = JsonOpt,
) -> None:
    """Re-score a saved program on a split of a task."""
    from agentsearch.data import load_split
    from agentsearch.evaluators import Evaluator
    from agentsearch.lm import Usage
    from agentsearch.metrics import task_metric
    from agentsearch.search_space import load_program
    from agentsearch.task import SPLITS, load_task

    if split not in SPLITS:
        raise AgentSearchError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    task = load_task(task_file)
    # tools and rewards import from beside the task; a design whose calls sample is scored as the search did
    program = load_program(program_file, base_dir=task.base_dir, repeats=task.search.agent.repeats)
    logging.getLogger("dspy").setLevel(logging.ERROR)
    evaluator = Evaluator(task_metric(task), concurrency=concurrency or task.concurrency, metric_name=task.metric)
    outcomes = evaluator.evaluate(program, load_split(task, split))  # no score over an outage: it raises
    usage = Usage()
    for outcome in outcomes:
        usage.add(outcome.usage)
    result = {"split": split, "n": len(outcomes), "score": sum(o.score for o in outcomes) / len(outcomes),
              "errors": sum(o.error is not None for o in outcomes), "lm_calls": usage.lm_calls,
              "tokens": usage.tokens, "cost_usd": usage.cost_usd}
    if as_json:
        _emit_json(result)
    else:
        out.print(f"{split}: {result['score']:.3f} on {result['n']} examples, {result['errors']} errors, "
                  f"{result['lm_calls']} LM calls")


@app.command()
def validate(task_file: Path = typer.Argument(..., help="task.yaml"), as_json: bool = JsonOpt) -> None:
    """Check a task file and print what a search would do."""
    from agentsearch.data import load_split
    from agentsearch.optimizers._optuna import prompt_trials
    from agentsearch.run import planned_space
    from agentsearch.task import SPLITS, load_task

    task = load_task(task_file)
    counts = {split: len(load_split(task, split)) for split in SPLITS if task.data_path(split) is not None}
    space = planned_space(task, train_size=counts["train"])
    sandbox = "not needed (no LM-written code runs)"
    if task.search.runs_llm_code:
        from agentsearch.evaluators import isolation

        sandbox = isolation().describe()  # IsolationUnavailableError: exit 2, naming what to install
    plan = {
        "task": task.name, "signature": task.program.signature, "metric": task.metric, "lm": task.lm.model,
        "proposer_lm": task.effective_proposer_lm.model, "examples": counts, "optimizer": task.search.optimizer,
        "levels": task.search.levels, "objectives": task.search.objectives, "space_size": space.size(),
        "module_kinds": list(space.kinds), "topologies": list(space.topologies), "formats": list(space.formats),
        "max_candidates": task.search.max_candidates, "prompt_stage_trials": prompt_trials(task, space),
        "agent_designs": task.search.max_candidates - task.search.space_candidates,
        "max_dev_evaluations": task.search.max_candidates * counts["dev"],
        "budget": task.budget.model_dump(), "storage": mask_url(resolve_storage_url(None, task.storage)),
        "sandbox": sandbox,
    }
    if as_json:
        _emit_json(plan)
        return
    out.print(f"[green]ok[/] {task_file}: task {task.name!r}, signature {task.program.signature!r}, metric {task.metric}")
    out.print("examples: " + ", ".join(f"{split} {n}" for split, n in counts.items()))
    out.print(f"search: {task.search.optimizer} over {task.search.levels}, up to {task.search.max_candidates} candidates"
              f" (at most {plan['max_dev_evaluations']} dev example evaluations) on {task.lm.model}")
    if task.search.space_levels:
        out.print(f"space: {plan['space_size']:.3g} configurations (topologies {', '.join(space.topologies)}; "
                  f"modules {', '.join(space.kinds)}; formats {', '.join(space.formats)}; "
                  f"up to {task.search.num_instructions} instructions and {task.search.num_demo_sets} demo sets)")
    if plan["agent_designs"]:
        agent = task.search.agent
        out.print(f"agent level: {plan['agent_designs']} designs (the hand-written patterns first, then written by "
                  f"{task.effective_proposer_lm.model}), up to {agent.repairs} repairs each; sandbox per example: "
                  f"{agent.cpu_s} s CPU, {agent.wall_s:g} s wall, {agent.memory_mb} MB, {agent.max_lm_calls} LM calls")
    out.print(f"sandbox: {sandbox}", markup=False, highlight=False)
    if plan["prompt_stage_trials"]:
        out.print(f"staged: the first {plan['prompt_stage_trials']} trials (the seed's included) at the prompt level, "
                  f"then module-level lifts of the best prompts, then the whole space")
    out.print(f"objectives: {', '.join(task.search.objectives)}; pruner: {task.search.pruner}")
    out.print(f"budget: {task.budget.model_dump()}; storage: {plan['storage']}", markup=False, highlight=False)


@db_app.command("upgrade")
def db_upgrade(storage: Optional[str] = StorageOpt) -> None:
    """Bring the database schema to this version of agentsearch."""
    from agentsearch.store import get_storage

    store = get_storage(resolve_storage_url(storage), upgrade=True)
    out.print(f"{store.display_url}: schema is current", markup=False, highlight=False)


GRACE_S = 2.0
"""How long a stopping run waits for LM calls in flight before leaving them behind."""


def _exit_now(code: int) -> None:
    """Exit with ``code``; worker threads still in an LM call after GRACE_S (a hung call holds its
    thread until the timeout) are left behind, as everything finished is already in the store."""
    import threading
    import time

    deadline = time.monotonic() + GRACE_S
    for thread in threading.enumerate():
        if thread.name.startswith("agentsearch-eval"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.name.startswith("agentsearch-eval") and thread.is_alive() for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def main() -> None:
    """Entry point: click reports usage errors (exit 2) itself; our own errors get one line and their
    exit code (2 for bad input, 3 for an LM that cannot be reached), with any secret masked."""
    import faulthandler

    from agentsearch.lm._secrets import redact_secrets as redact

    stderr = sys.__stderr__
    if hasattr(signal, "SIGUSR1") and stderr is not None:  # `kill -USR1 <pid>`: every thread's stack on stderr
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no real stderr (embedded, captured): skip
            faulthandler.register(signal.SIGUSR1, file=stderr, all_threads=True)
    try:
        app()
    except AgentSearchError as exc:
        err.print(f"error: {redact(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
