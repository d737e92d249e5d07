"""What a user sees when the LM fails: every case of issue 12, measured against the fault-injecting fake server.

Each case runs `agentsearch optimize` as a user would (a child process, the CLI, default retries and
backoff) on a small generated sentiment task, and records the exit code, the seconds until the
process ended, the requests the server answered and the faults it injected, the run's status, and
the number of scored results. Fault-rate cases compare what the run found (each candidate's spec
hash and dev/test scores) with a fault-free run of the same task.

    python bench/failures.py [--save]        # about 5 minutes on 2 cores

Prints JSON; with --save also writes bench/results/failures-<date>.json.
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

from agentsearch.testing import running_server  # noqa: E402

ANSWERS = {"label": ["positive", "negative"]}
KEY = "bench-provider-key-0123456789"
WORDS = (("wonderful", "positive"), ("dull", "negative"), ("brilliant", "positive"), ("awful", "negative"))


def _data(folder: Path) -> None:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, size in (("train", 20), ("dev", 16), ("test", 16)):
        rows = [{"sentence": f"a {WORDS[i % 4][0]} film, number {split} {i}", "label": WORDS[i % 4][1]}
                for i in range(size)]
        (folder / "data" / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _task(folder: Path, base_url: str, name: str, **lm: Any) -> Path:
    task = {
        "name": "bench", "program": {"signature": "sentence -> label", "instructions": "Classify the sentiment."},
        "data": {"train": "data/train.jsonl", "dev": "data/dev.jsonl", "test": "data/test.jsonl"},
        "metric": "exact_match", "lm": {"model": "openai/fake", "api_base": base_url, **lm},
        "search": {"max_candidates": 6, "num_instructions": 3, "max_demos": 4, "num_demo_sets": 3,
                   "bootstrap_examples": 8, "formats": ["chat", "completion"]},
        "concurrency": 2,
    }
    path = folder / name
    path.write_text(yaml.safe_dump(task))
    return path


def _run(args: list[str], folder: Path, env: dict[str, str], *, signal_after_hang: Any = None) -> dict[str, Any]:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "agentsearch", *args], cwd=folder, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signalled = None
    if signal_after_hang is not None:
        live, sig = signal_after_hang
        while live.stats().faults.get("hang", 0) == 0 and process.poll() is None:
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=1800)
    ended = time.monotonic()
    error = [line for line in stderr.splitlines() if line.startswith(("error:", "interrupted:", "terminated:"))]
    return {"exit_code": process.returncode, "seconds": round(ended - started, 2),
            "seconds_after_signal": None if signalled is None else round(ended - signalled, 2),
            "message": error[0] if error else None, "stdout_tail": stdout.strip().splitlines()[-1:]}


def _store(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT name, status, stop_reason FROM runs").fetchall()
        rows = connection.execute("SELECT count(*) FROM example_results").fetchone()[0]
        found = connection.execute(
            "SELECT c.spec_hash, e.split, e.score FROM candidates c JOIN evaluations e ON e.candidate_id = c.id "
            "WHERE e.split IN ('dev', 'test') ORDER BY c.spec_hash, e.split").fetchall()
    return {"runs": [{"name": n, "status": s, "stop_reason": (r or "")[:160]} for n, s, r in runs],
            "scored_results": rows, "found": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", action="store_true")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="agentsearch-failures-"))
    _data(folder)
    env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPY_CACHEDIR": str(folder / "cache")}
    env.pop("AGENTSEARCH_STORAGE", None)
    cases: dict[str, Any] = {}

    def case(name: str, live: Any, args: list[str], db: Path, **extra: Any) -> dict[str, Any]:
        before = live.stats() if live is not None else None
        result = _run(args, folder, extra.pop("env", env), **extra)
        after = live.stats() if live is not None else None
        if after is not None and before is not None:
            result["requests_answered"] = after.requests - before.requests
            result["faults_served"] = {k: v - before.faults.get(k, 0) for k, v in after.faults.items()}
        result.update({k: v for k, v in _store(db).items() if k != "found"})
        cases[name] = result
        return result

    with running_server(0.02, ANSWERS) as live:
        task = _task(folder, live.base_url, "task.yaml")
        clean_db = folder / "clean.db"
        case("fault-free", live, ["optimize", str(task), "--storage", f"sqlite:///{clean_db}", "--run", "r"], clean_db)
        reference = _store(clean_db)["found"]

        for name, faults in (("100% HTTP 500", {"500": 1.0}), ("100% HTTP 429", {"429": 1.0})):
            db = folder / f"{name[:4].strip('%')}-{faults and list(faults)[0]}.db"
            live.configure(faults=faults)
            result = case(name, live, ["optimize", str(task), "--storage", f"sqlite:///{db}", "--run", "r"], db)
            live.configure(faults={})
            resumed = _run(["optimize", str(task), "--storage", f"sqlite:///{db}", "--resume"], folder, env)
            result["after_fix_resume"] = {"exit_code": resumed["exit_code"],
                                          "same_candidates_and_scores": _store(db)["found"] == reference}

        for name, faults in (("10% 429/500/hang", {"429": 0.04, "500": 0.03, "hang": 0.03}),
                             ("30% 429/500/hang/truncated", {"429": 0.1, "500": 0.1, "hang": 0.05, "truncate": 0.05})):
            db = folder / f"rate-{len(cases)}.db"
            fresh = {**env, "DSPY_CACHEDIR": str(folder / f"cache-{len(cases)}")}  # every call meets the faults
            timed = _task(folder, live.base_url, "timed.yaml", timeout=5)
            live.configure(faults=faults, hang_s=600)
            result = case(name, live, ["optimize", str(timed), "--storage", f"sqlite:///{db}", "--run", "r"], db,
                          env=fresh)
            result["same_candidates_and_scores"] = _store(db)["found"] == reference
        live.configure(faults={})

    with running_server(0.02, ANSWERS, api_key="the-right-key-0123456789") as live:
        task = _task(folder, live.base_url, "auth.yaml")
        case("wrong API key", live, ["optimize", str(task), "--storage", f"sqlite:///{folder / 'wrong.db'}"],
             folder / "wrong.db")
        nokey = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
        case("no API key", live, ["optimize", str(task), "--storage", f"sqlite:///{folder / 'nokey.db'}"],
             folder / "nokey.db", env=nokey)

    down = _task(folder, "http://127.0.0.1:9/v1", "down.yaml")
    case("server down", None, ["optimize", str(down), "--storage", f"sqlite:///{folder / 'down.db'}"],
         folder / "down.db")

    for name, sig in (("Ctrl-C during a hung call", signal.SIGINT), ("SIGTERM during a hung call", signal.SIGTERM)):
        with running_server(0.02, ANSWERS, faults={"hang": 0.05}, hang_s=3600) as live:
            task = _task(folder, live.base_url, "hang.yaml", timeout=120)
            db = folder / f"hang-{sig}.db"
            case(name, live, ["optimize", str(task), "--storage", f"sqlite:///{db}", "--run", "h"], db,
                 signal_after_hang=(live, sig))

    emit({"cases": cases, "reference_candidates": len({row[0] for row in reference})}, "failures",
         save=options.save)


if __name__ == "__main__":
    main()
