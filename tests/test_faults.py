"""A score means what it says: LM outages against the fault-injecting fake OpenAI server.

An outage (no key, a server that is down, 5xx/429 after retries, hangs) must stop the run with
exit 3 and one line naming the cause, store no score, and leave a run that, once the LM is fixed,
resumes to the very candidates and scores a fault-free run finds. Transient faults must not change
the result at all.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import agentsearch
from agentsearch.exceptions import LMUnavailableError
from agentsearch.store import get_storage
from agentsearch.testing import FakeOpenAIServer, running_server
from tests.conftest import base_task
from tests.fakes import communicate_or_dump, default_sigint

KEY = "fake-provider-key-0123456789"
ANSWERS = {"label": ["positive", "negative"]}


@pytest.fixture(autouse=True)
def provider_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def quick_backoff(monkeypatch):
    """In-process runs need not wait seconds between attempts; what is retried is the same."""
    monkeypatch.setattr("agentsearch.lm._failures.backoff_s", lambda attempt, failure: 0.01)


@pytest.fixture
def server():
    fake = FakeOpenAIServer(latency_s=0.005, answers=ANSWERS, hang_s=30).start()
    yield fake
    fake.stop()


def fake_task(task_dir: Path, base_url: str, name: str = "task.yaml", **overrides) -> Path:
    task = base_task(**{
        "lm": {"model": "openai/fake", "api_base": base_url, "num_retries": 3, "timeout": 1.0},
        "search.formats": ["chat", "completion"], "search.max_candidates": 5, "search.bootstrap_examples": 4,
        "concurrency": 2, **overrides,
    })
    path = task_dir / name
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    return path


def outcome(url: str, run_name: str) -> list[tuple[str, str, float | None]]:
    """What a run found: each candidate's spec hash with its score per split."""
    store = get_storage(url)
    run = store.get_run(run_name)
    scores = {(e.candidate_id, e.split): e.score for e in store.list_evaluations(run_id=run.id)}
    return sorted((c.spec_hash, split, scores[(c.id, split)])
                  for c in store.list_candidates(run.id) for split in ("dev", "test") if (c.id, split) in scores)


def scored_rows(db: Path) -> int:
    """Stored example results; none while the process has created the file but not yet its tables."""
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT count(*) FROM example_results").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))  # for the CLI's child processes


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agentsearch", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("faults", [{"500": 1.0}, {"429": 1.0}])
def test_a_dead_lm_stops_the_run_with_exit_3_then_a_resume_matches_a_fault_free_run(task_dir, tmp_path, faults):
    with running_server(0.005, ANSWERS, faults=faults) as live:
        path = fake_task(task_dir, live.base_url, **{"lm.num_retries": 1})
        db = tmp_path / "dead.db"
        started = time.monotonic()
        failed = run_cli("optimize", str(path), "--storage", f"sqlite:///{db}", "--run", "r")
        took = time.monotonic() - started
        assert failed.returncode == 3, failed.stderr
        (line,) = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
        cause = "server error" if faults.get("500") else "rate limited"
        assert "openai/fake" in line and cause in line and "--resume" in line and "Traceback" not in failed.stderr
        assert took < 60  # the preflight failed: no example was tried, let alone 200 of them
        run = get_storage(f"sqlite:///{db}").get_run("r")
        assert run.status == "failed" and cause in run.stop_reason and scored_rows(db) == 0
        assert get_storage(f"sqlite:///{db}").run_usage(run.id).lm_calls == 2  # both attempts are counted

        live.configure(faults={})  # the provider recovers
        resumed = run_cli("optimize", str(path), "--storage", f"sqlite:///{db}", "--resume", "--json")
        assert resumed.returncode == 0, resumed.stderr
        clean = run_cli("optimize", str(path), "--storage", f"sqlite:///{tmp_path / 'clean.db'}", "--run", "r", "--json")
        assert clean.returncode == 0, clean.stderr
    assert outcome(f"sqlite:///{db}", "r") == outcome(f"sqlite:///{tmp_path / 'clean.db'}", "r")


def test_no_key_and_a_server_that_is_down_fail_fast_naming_the_cause(task_dir, tmp_path):
    with running_server(0.005, ANSWERS, api_key="the-right-key-12345") as live:
        path = fake_task(task_dir, live.base_url)
        wrong = run_cli("optimize", str(path), "--storage", f"sqlite:///{tmp_path / 'a.db'}")
        assert wrong.returncode == 3 and "authentication failed" in wrong.stderr, wrong.stderr
        assert live.stats().faults["unauthorized"] == 1  # a bad key is not retried
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        missing = subprocess.run([sys.executable, "-m", "agentsearch", "optimize", str(path), "--storage",
                                  f"sqlite:///{tmp_path / 'b.db'}"], capture_output=True, text=True, env=env, timeout=120)
        assert missing.returncode == 3 and "authentication failed" in missing.stderr, missing.stderr
    down = fake_task(task_dir, "http://127.0.0.1:9/v1", name="down.yaml", **{"lm.num_retries": 1})
    result = run_cli("optimize", str(down), "--storage", f"sqlite:///{tmp_path / 'c.db'}")
    assert result.returncode == 3 and "cannot connect" in result.stderr, result.stderr
    for db in ("a.db", "b.db", "c.db"):
        (run,) = get_storage(f"sqlite:///{tmp_path / db}").list_runs()
        assert run.status == "failed" and scored_rows(tmp_path / db) == 0


@pytest.mark.parametrize("faults", [{"429": 0.05, "500": 0.05}, {"429": 0.1, "500": 0.1, "hang": 0.1},
                                    {"500": 0.2, "truncate": 0.1}])  # 10% and 30% of all requests
def test_transient_faults_leave_the_result_unchanged(task_dir, tmp_path, server, quick_backoff, faults):
    path = fake_task(task_dir, server.base_url)
    agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'clean.db'}", run_name="r")
    server.configure(faults=faults)
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call goes to the faults
    result = agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'faulty.db'}", run_name="r")
    assert result.run.status == "finished"
    assert sum(server.stats().faults.values()) > 0
    assert outcome(f"sqlite:///{tmp_path / 'faulty.db'}", "r") == outcome(f"sqlite:///{tmp_path / 'clean.db'}", "r")


def test_an_outage_mid_run_stores_no_score_and_the_resume_scores_what_it_left(task_dir, tmp_path, server,
                                                                             quick_backoff):
    path = fake_task(task_dir, server.base_url)
    agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'clean.db'}", run_name="r")

    class BreakAfter(agentsearch.SearchCallback):
        """The server starts failing every call after 3 examples of the first searched candidate's dev."""

        def __init__(self) -> None:
            self.seen = -1

        def on_evaluation_start(self, candidate, split, total, done) -> None:
            if candidate.number == 1 and split == "dev":
                self.seen = 0

        def on_example(self, outcome, usage) -> None:
            if self.seen >= 0:
                self.seen += 1
                if self.seen == 3:
                    server.configure(faults={"500": 1.0})

    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call goes to the server
    url = f"sqlite:///{tmp_path / 'cut.db'}"
    with pytest.raises(LMUnavailableError, match="server error.*examples left unscored"):
        agentsearch.optimize(path, storage=url, run_name="r", callback=BreakAfter())
    store = get_storage(url)
    run = store.get_run("r")
    assert run.status == "failed" and run.unscored_lm_calls > 0, run.stop_reason
    results = [r for e in store.list_evaluations(run_id=run.id) for r in store.list_example_results(e.id)]
    assert all(r.error is None or "server error" not in r.error for r in results)  # no outage stored as a result
    server.configure(faults={})
    resumed = agentsearch.optimize(path, storage=url, resume=True)
    assert resumed.run.status == "finished"
    assert outcome(url, "r") == outcome(f"sqlite:///{tmp_path / 'clean.db'}", "r")


def test_hanging_calls_end_at_the_timeout_and_the_run_completes(task_dir, tmp_path, server, quick_backoff):
    path = fake_task(task_dir, server.base_url, **{"lm.timeout": 0.5, "lm.num_retries": 4})
    agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'clean.db'}", run_name="r")
    server.configure(faults={"hang": 0.2})
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    result = agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'hung.db'}", run_name="r")
    assert result.run.status == "finished" and server.stats().faults["hang"] > 0
    assert outcome(f"sqlite:///{tmp_path / 'hung.db'}", "r") == outcome(f"sqlite:///{tmp_path / 'clean.db'}", "r")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_hung_call_stops_within_seconds_and_keeps_what_finished(task_dir, tmp_path, sig):
    with running_server(0.005, ANSWERS, hang_s=300) as live:
        path = fake_task(task_dir, live.base_url, **{"lm.timeout": 120, "concurrency": 1})
        db = tmp_path / "hang.db"
        errors = tmp_path / "stderr.txt"
        process = subprocess.Popen([sys.executable, "-m", "agentsearch", "optimize", str(path), "--storage",
                                    f"sqlite:///{db}", "--run", "h"], stdout=subprocess.DEVNULL,
                                   stderr=errors.open("w"), text=True, preexec_fn=default_sigint)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (not db.exists() or scored_rows(db) < 3):
                assert process.poll() is None, errors.read_text()
                time.sleep(0.1)
            live.configure(faults={"hang": 1.0})
            while live.stats().faults.get("hang", 0) == 0:  # a call is now held by the server: mid-evaluation
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
            kept = scored_rows(db)
            sent = time.monotonic()
            process.send_signal(sig)
            stderr = communicate_or_dump(process, errors, 60)
            took = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == (130 if sig == signal.SIGINT else 143), stderr
    assert took < 15, took  # the hung call would hold it for 120 s (the timeout) without the fix
    assert "--resume" in stderr and "Traceback" not in stderr
    run = get_storage(f"sqlite:///{db}").get_run("h")
    assert run.status == "interrupted" and scored_rows(db) >= kept


def test_a_search_from_the_cli_shows_no_library_warnings(task_dir, tmp_path):
    """Optuna's ExperimentalWarnings (multivariate TPE, the Wilcoxon pruner) are not the user's concern."""
    with running_server(0.005, ANSWERS) as live:
        path = fake_task(task_dir, live.base_url)
        done = run_cli("optimize", str(path), "--storage", f"sqlite:///{tmp_path / 'w.db'}")
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr + done.stdout, done.stderr


def test_evaluate_gives_no_score_while_the_lm_is_down(task_dir, tmp_path):
    with running_server(0.005, ANSWERS) as live:
        path = fake_task(task_dir, live.base_url, **{"search.max_candidates": 2, "lm.num_retries": 0})
        assert run_cli("optimize", str(path), "--storage", f"sqlite:///{tmp_path / 'e.db'}", "--run", "e",
                       "--out", str(tmp_path / "best.json")).returncode == 0
        live.configure(faults={"500": 1.0})
        # train: most of it was never sent while the LM was up, so DSPy's cache cannot answer for it
        done = run_cli("evaluate", str(tmp_path / "best.json"), str(path), "--split", "train", "--json")
    assert done.returncode == 3 and "server error" in done.stderr and done.stdout == "", done.stderr
    assert "examples left unscored" in done.stderr
