"""kill -9 a search mid-run, resume it, and compare its LM calls with an uninterrupted run; prints JSON.

    python bench/resume_after_kill.py examples/sentiment/task.yaml [--kill-after 150]

Each run gets a fresh database and a fresh LM cache (the resumed process a fresh one too), so an
evaluation repeated after the kill would show as extra LM calls. Calls are read from the store,
which is exactly what survives a kill; the at most `concurrency` examples in flight at the kill
are lost and paid again.
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


def results(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute("SELECT count(*) FROM example_results").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def usage(db: Path) -> dict:
    with sqlite3.connect(db) as connection:
        examples, calls = connection.execute("SELECT count(*), coalesce(sum(lm_calls), 0) FROM example_results").fetchone()
        proposer = connection.execute("SELECT coalesce(sum(proposer_lm_calls), 0) FROM runs").fetchone()[0]
        status, reason = connection.execute("SELECT status, stop_reason FROM runs").fetchone()
        best = connection.execute(
            "SELECT max(score) FROM evaluations WHERE split = 'dev' AND status = 'complete'").fetchone()[0]
    return {"example_results": examples, "lm_calls": calls + proposer, "status": status, "stop_reason": reason,
            "best_dev": best}


def optimize(task: str, db: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DSPY_CACHEDIR": str(cache)}
    command = [sys.executable, "-m", "agentsearch", "optimize", task, "--storage", f"sqlite:///{db}", "--json", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task")
    parser.add_argument("--kill-after", type=int, default=150, help="example results stored before the kill")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentsearch-kill-"))

    started = time.perf_counter()
    optimize(args.task, work / "whole.db", work / "cache-whole", "--run", "whole").wait()
    whole_s = time.perf_counter() - started

    started = time.perf_counter()
    killed = optimize(args.task, work / "killed.db", work / "cache-killed", "--run", "killed")
    while killed.poll() is None and results(work / "killed.db") < args.kill_after:
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    at_kill = usage(work / "killed.db")
    optimize(args.task, work / "killed.db", work / "cache-resumed", "--resume").wait()
    resumed = usage(work / "killed.db")
    json.dump({
        "uninterrupted": {**usage(work / "whole.db"), "wall_s": round(whole_s, 1)},
        "killed_at": at_kill,
        "killed_plus_resumed": {**resumed, "wall_s": round(time.perf_counter() - started, 1)},
    }, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
