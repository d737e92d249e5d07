"""The drop-in comparison as a Markdown table, generated from ``bench/quality.py`` result files.

    python bench/drop_in_table.py bench/results/quality-medium-<date>.json [more files: replicates]

Per task and seed: each contender's test score with its 95% interval and the LM calls its search
spent; then each paired difference (``drop_in``: the same test examples) with its interval and what
it allows one to claim, and, for a task run at several seeds (``--seed``), the difference pooled
over all their test examples. Figures are never copied by hand into prose: paste this output.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _score(row: dict[str, Any]) -> str:
    if "test" not in row:
        return f"— ({row.get('error', 'not run')})"
    low, high = row["test_ci95"]
    return f"{row['test']:.3f} ({low:.3f}–{high:.3f})"


def _pooled(reports: list[dict[str, Any]]) -> list[str]:
    """Per task and pair run at several seeds: the paired difference over all their test examples."""
    from agentsearch._stats import paired_difference, verdict

    scores: dict[tuple[str, str], dict[tuple[int, int], float]] = {}  # keyed by (file, example): pairs within a run
    seeds: dict[str, set[int]] = {}
    seed_of: list[int] = []
    for position, report in enumerate(reports):
        seed = report["settings"].get("seed", 0)
        seed_of.append(seed)
        for task, result in report["tasks"].items():
            seeds.setdefault(task, set()).add(seed)
            for row in result["contenders"]:
                for index, score in enumerate(row.get("test_scores", [])):
                    scores.setdefault((task, row["contender"]), {})[(position, index)] = score
    rows = []
    for (task, first), ours in sorted(scores.items()):
        if len(seeds[task]) < 2:
            continue
        for (other_task, second), theirs in sorted(scores.items()):
            if other_task != task or second == first or (first, second) not in _PAIRS:
                continue
            shared = set(ours) & set(theirs)
            pooled = sorted({seed_of[position] for position, _ in shared})
            if len({position for position, _ in shared}) < 2:
                continue
            difference = paired_difference({str(k): ours[k] for k in shared}, {str(k): theirs[k] for k in shared})
            rows.append(f"| {task} | pooled over seeds {', '.join(map(str, pooled))} | "
                        f"{first} − {second} | {difference.mean:+.3f} ({difference.low:+.3f} to "
                        f"{difference.high:+.3f}) | {verdict(difference)} |")
    return rows


_PAIRS = {("agentsearch_compile", "dspy_bootstrap_rs"), ("agentsearch_compile_modules", "dspy_bootstrap_rs"),
          ("agentsearch_compile_modules", "agentsearch_compile")}


def table(reports: list[dict[str, Any]]) -> str:
    lines = ["| task | seed | contender | test (95% interval) | dev | search LM calls |", "|---|---|---|---|---|---|"]
    pairs = ["| task | seed | difference | test difference (95% paired interval) | verdict |", "|---|---|---|---|---|"]
    for report in reports:
        seed = report["settings"].get("seed", 0)
        for task, result in report["tasks"].items():
            for row in result["contenders"]:
                dev = f"{row['dev']:.2f}" if "dev" in row else "—"
                lines.append(f"| {task} | {seed} | {row['contender']} | {_score(row)} | {dev} | "
                             f"{row.get('search_lm_calls', '—')} |")
            for pair in result.get("drop_in", []):
                low, high = pair["ci95"]
                pairs.append(f"| {task} | {seed} | {pair['first']} − {pair['second']} | "
                             f"{pair['test_difference']:+.3f} ({low:+.3f} to {high:+.3f}) | {pair['verdict']} |")
    return "\n".join(lines) + "\n\n" + "\n".join(pairs + _pooled(reports))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    print(table([json.loads(path.read_text()) for path in args.files]))


if __name__ == "__main__":
    main()
