"""Seeing a search: the HTML report (its content checked against the store, opened in headless
Chromium), Optuna trials that say which candidate they are (read back through optuna-dashboard's
API), and the live display's best program and calls left."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

import agentsearch
from agentsearch._visual import render_report, report_data
from agentsearch.search_space import parse_spec
from agentsearch.store import get_storage
from tests.test_cli import run_cli

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def finished_run(write_task, sqlite_url, fake_lm):
    """A finished prompt-level run on the fake LM whose instructions carry markup (an LM could write it)."""
    task = write_task(**{"program.instructions": f"Classify the sentiment. {SCRIPT}", "search.max_candidates": 10,
                         "search.num_instructions": 3})
    result = agentsearch.optimize(task, storage=sqlite_url, run_name="seen")
    return get_storage(sqlite_url), result


def test_the_report_shows_every_candidate_as_the_store_has_it(finished_run):
    store, result = finished_run
    run = store.get_run("seen")
    data = report_data(store, run)
    candidates = store.list_candidates(run.id)
    assert [row["id"] for row in data["candidates"]] == [c.id for c in sorted(candidates, key=lambda c: c.number)]
    dev = {e.candidate_id: e for e in store.list_evaluations(run_id=run.id) if e.split == "dev"}
    for row in data["candidates"]:
        assert row["dev"] == dev[row["id"]].score and row["dev_status"] == dev[row["id"]].status
    # history: calls only grow, and end at what the run booked before its test phase
    spent = [row["spent"] for row in data["candidates"]]
    tests = sum(e.lm_calls for e in store.list_evaluations(run_id=run.id) if e.split == "test")
    assert spent == sorted(spent) and spent[-1] == store.run_usage(run.id).lm_calls - tests  # proposals included
    incumbents = [row["incumbent"] for row in data["candidates"]]
    assert incumbents[-1] == max(e.score for e in dev.values() if e.status == "complete")
    # the best and the seed on test, with intervals around their means
    assert data["best"] == result.best.candidate.id and data["seed"] == result.seed.candidate.id
    for role in ("seed", "best"):
        test = data["tests"][role]
        assert test["low"] <= test["mean"] <= test["high"] and test["n"] == 10
    assert data["comparison"]["verdict"].startswith(("better", "worse", "within noise"))
    # the front: no complete candidate beats a front point on score without costing more
    complete = [row for row in data["candidates"] if row["dev_status"] == "complete"]
    for point in data["front"]:
        assert not any(r["dev"] > point["score"] and r["program_calls"] <= point["cost"] for r in complete)
    assert {p["candidate"] for p in data["front"]} <= {r["id"] for r in complete}
    # the lineage is the store's parents; the grid has a row per evaluated candidate, a cell per example scored
    assert sorted(map(tuple, data["lineage"]["edges"])) == sorted((p, c.id) for c in candidates for p in c.parents)
    assert [row["candidate"] for row in data["grid"]] == [row["id"] for row in data["candidates"]]
    for row in data["grid"]:
        assert len(row["cells"]) == dev[row["candidate"]].n
    assert {e["id"] for e in data["examples"]} == {e.example_id for e in store.list_examples(run.id, "dev")}
    # levels and optimizers add up to the candidates
    assert sum(group["candidates"] for group in data["groups"]) == len(candidates)

    page = render_report(store, run)
    assert SCRIPT not in page  # markup from a spec is shown as text, never run
    assert "\\u003cscript\\u003e" in page  # ... kept in the page's data, escaped
    assert all(f'data-candidate="{c.id}"' in page for c in candidates)


def test_report_from_the_cli_and_without_plotly(finished_run, sqlite_url, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report.html"
    code, printed, _ = run_cli(monkeypatch, capsys, "report", "seen", "--out", str(out), "--storage", sqlite_url)
    assert code == 0 and out.stat().st_size > 1_000_000  # plotly.js inlined: opens with no network
    assert "https://" not in re.sub(r"<script>.*?</script>", "", out.read_text(), flags=re.DOTALL)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)  # the report extra not installed
    code, _, err = run_cli(monkeypatch, capsys, "report", "seen", "--out", str(tmp_path / "b.html"),
                           "--storage", sqlite_url)
    assert code == 2 and "pip install 'agentsearch[report]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium_without_errors(finished_run, tmp_path):
    store, _ = finished_run
    page = tmp_path / "report.html"
    page.write_text(render_report(store, store.get_run("seen")), encoding="utf-8")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body and 'data-ready="1"' in body.group(0) and 'data-errors="0"' in body.group(0)
    assert dom.count('class="main-svg"') >= 3  # plotly drew the history, the front and the lineage
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                   capture_output=True, timeout=180)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def _trials(storage_url: str, run_name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=f"agentsearch:{run_name}", storage=storage_url)
    return study.get_trials(deepcopy=False)


def test_optuna_trials_say_which_candidate_they_are(finished_run, sqlite_url):
    store, result = finished_run
    trials = _trials(sqlite_url, "seen")
    by_trial = {c.trial_number: c for c in store.list_candidates(result.run.id) if c.trial_number is not None}
    seed = result.seed.candidate
    assert trials[0].user_attrs["candidate_id"] == seed.id and trials[0].user_attrs["candidate_number"] == 0
    for trial in trials[1:]:
        attrs = trial.user_attrs
        if attrs.get("duplicate"):  # a repeated proposal: no candidate of its own, its twin named
            assert trial.number not in by_trial and "duplicate_of_candidate_id" in attrs
            continue
        candidate = by_trial[trial.number]
        assert attrs["candidate_id"] == candidate.id and attrs["candidate_number"] == candidate.number
        spec = parse_spec(candidate.spec)
        node = spec.predictors[0]
        assert attrs["level"] == candidate.level and attrs["structure"] == spec.structure()
        assert attrs["answer.format"] == node.format and attrs["answer.demos"] == len(node.demo_ids)
        assert attrs["answer.instructions"] == node.instructions[:300] + ("…" if len(node.instructions) > 300 else "")
    assert by_trial[0].id == seed.id  # the store says so too
    assert len(trials) == len(by_trial) + sum(bool(t.user_attrs.get("duplicate")) for t in trials)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_optuna_dashboard_serves_the_trials_with_their_candidates(finished_run, sqlite_url, tmp_path):
    pytest.importorskip("optuna_dashboard")
    store, result = finished_run
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "agentsearch", "dashboard", "--storage", sqlite_url,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # wait for the server to answer, not for a fixed time
            try:
                studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=5))
                break
            except OSError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "optuna-dashboard did not answer within 60 s"
                time.sleep(0.2)
        summary = next(s for s in studies["study_summaries"] if s["study_name"] == "agentsearch:seen")
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{summary['study_id']}?after=0", timeout=10))
        attrs = [{a["key"]: a["value"] for a in trial["user_attrs"]} for trial in detail["trials"]]
        seed = result.seed.candidate
        assert attrs[0]["candidate_id"] == str(seed.id) and attrs[0]["level"] == "prompt"
        assert all("candidate_id" in a or "duplicate_of_candidate_id" in a for a in attrs)
        assert all("answer.instructions" in a and "answer.format" in a for a in attrs)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_live_display_shows_the_best_program_and_the_calls_left(write_task, sqlite_url, fake_lm):
    from rich.console import Console

    from agentsearch._progress import RichProgress

    console = Console(record=True, width=250, force_terminal=False)
    progress = RichProgress(console, 6, max_lm_calls=500)
    with progress:
        agentsearch.optimize(write_task(**{"search.max_candidates": 6}), storage=sqlite_url, callback=progress)
    status = progress._status()
    used = progress.usage.lm_calls
    assert f"LM calls {used}, {500 - used} left" in status
    assert progress.best_program is not None and progress.best_program in status
    assert re.search(r"single: predict; (chat|completion); \d+ demos?", progress.best_program)
    # as the terminal shows it: the brackets are text, not rich markup that swallows the description
    assert f"[{progress.best_program}] | LM calls {used}, {500 - used} left" in console.export_text()


def test_the_live_display_keeps_its_count_and_time_at_80_columns(write_task, sqlite_url, fake_lm):
    """At 80 columns the bars keep their count and elapsed time and the status wraps under them, whole:
    once in one row with the bars, it was cut to ``can… best dev …`` (and stayed so in a piped log)."""
    from rich.console import Console

    from agentsearch._progress import RichProgress

    console = Console(record=True, width=80, force_terminal=False)
    progress = RichProgress(console, 6, max_lm_calls=500)
    with progress:
        agentsearch.optimize(write_task(**{"search.max_candidates": 6}), storage=sqlite_url, callback=progress)
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any(re.fullmatch(r"candidates +━+ +6/6 +\d:\d\d:\d\d", line.strip()) for line in lines), lines[-6:]
    status = " ".join(line.strip() for line in lines[lines.index(next(l for l in lines if l.startswith("best dev"))):])
    assert progress._status() in status
    assert "…" not in "\n".join(lines)
