"""One search on a task, from a fresh database and a fresh LM cache; prints JSON.

    python bench/search_quality.py bench/sst2/task.yaml [--max-candidates N]

Reports the seed program's and the best candidate's dev and test scores, LM calls, tokens and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("task")
    parser.add_argument("--max-candidates", type=int)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="agentsearch-bench-"))
    os.environ["DSPY_CACHEDIR"] = str(workdir / "cache")  # read when dspy is first imported
    import agentsearch

    started = time.perf_counter()
    result = agentsearch.optimize(args.task, storage=f"sqlite:///{workdir / 'bench.db'}",
                                  max_candidates=args.max_candidates)
    json.dump({
        "task": result.task.name,
        "max_candidates": result.task.search.max_candidates,
        "candidates_evaluated": sum(1 for _ in agentsearch.get_storage(f"sqlite:///{workdir / 'bench.db'}")
                                    .list_candidates(result.run.id)),
        "seed_dev": result.seed.dev_score, "seed_test": result.seed.test_score,
        "best_dev": result.best.dev_score, "best_test": result.best.test_score,
        "best_spec": result.best.candidate.spec,
        "lm_calls": result.usage.lm_calls, "tokens": result.usage.tokens, "cost_usd": result.usage.cost_usd,
        "wall_s": round(time.perf_counter() - started, 1), "stop_reason": result.stop_reason,
    }, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
