"""Start-up cost of the sandbox: seconds per sandboxed example, median of 50, for both entry points.

`run_agent` runs a design that makes one LM call (answered at once by the parent) and returns;
`run_python` runs ``print(1)``; ``probe`` is the check ``isolation()`` makes once per process. Each figure is the wall-clock time of the whole call, so it holds
the launcher (bubblewrap), the interpreter's start, the confinement layers, the exchange with the
parent and the teardown: what every sandboxed example pays before the design's own work.

    python bench/sandbox.py [--runs 50] [--save]     # about 20 s on 2 cores

Prints JSON; with --save also writes bench/results/sandbox-<date>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

from agentsearch.evaluators import AgentLimits, run_agent, run_python  # noqa: E402

DESIGN = "def forward(inputs, lm):\n    return {'label': lm('Say yes.')}\n"


def _time(call: Any, runs: int) -> dict[str, float]:
    call()  # warm the page cache and any per-process set-up
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {"median_s": round(statistics.median(seconds), 4), "p90_s": round(seconds[int(0.9 * (runs - 1))], 4),
            "min_s": round(seconds[0], 4), "max_s": round(seconds[-1], 4), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()

    def agent() -> None:
        result = run_agent(DESIGN, {}, lambda request: "yes", limits=AgentLimits())
        assert result.outputs == {"label": "yes"}, result

    def script() -> None:
        result = run_python("print(1)")
        assert result.stdout.strip() == "1", result

    report: dict[str, Any] = {"run_agent": _time(agent, args.runs), "run_python": _time(script, args.runs)}
    try:
        from agentsearch.evaluators import isolation

        report["isolation"] = isolation().describe()
        report["probe"] = _time(lambda: isolation(refresh=True), 10)  # once per process, before the first sandbox
    except ImportError:
        report["isolation"] = "python-level guards, rlimits, network and mount namespaces (before issue 13)"
    emit(report, "sandbox", save=args.save)


if __name__ == "__main__":
    main()
