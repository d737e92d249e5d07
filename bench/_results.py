"""What every bench adds to its JSON: the machine, the software and the date; and where it is saved."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=RESULTS.parent).stdout.strip()
    # files of the package or the benches changed since that commit: the figures are theirs, not the commit's
    changed = subprocess.run(["git", "status", "--porcelain", "--", "agentsearch", "bench"], capture_output=True,
                             text=True, cwd=RESULTS.parent.parent).stdout.splitlines()
    return {
        "platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
        "python": sys.version.split()[0], "commit": commit or None,
        "uncommitted": sorted(line[3:] for line in changed if not line[3:].startswith("bench/results/")),
        "packages": {name: _version(name) for name in ("agentsearch", "dspy", "litellm", "optuna", "sqlalchemy",
                                                        "llama_cpp_python")},
    }


def emit(report: dict[str, Any], name: str, *, save: bool) -> None:
    """Print the report with the machine and date; with ``save``, also write bench/results/<name>-<date>.json."""
    now = dt.datetime.now(dt.timezone.utc)
    full = {"date": now.isoformat(timespec="seconds"), "machine": machine(), **report}
    text = json.dumps(full, indent=2)
    print(text)
    if save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}-{now:%Y%m%dT%H%M%S}.json"
        path.write_text(text + "\n")
        print(f"saved {path}", file=sys.stderr)
