"""How well recombine's predictor ranks candidates before they are evaluated, measured on stored runs.

``optimizer: recombine`` screens its drafts with a similarity-weighted nearest-neighbour predictor
(``agentsearch.optimizers._recombine.predict_score``): a draft's predicted dev score is the mean of
its three most similar scored candidates, weighted by similarity. This bench replays that on runs
already in a database: for every candidate with a complete dev score, in the order the run scored
them, it predicts the score from the candidates completed before it (the archive the predictor
would have had), and compares the predictions with the dev scores the candidates then got:

- Spearman's rank correlation (scipy) between prediction and dev score, with its p-value: does
  the predictor put better candidates above worse ones?
- mean absolute error of the prediction, beside that of the uninformed guess (the archive's mean
  score) on the same candidates: is the similarity weighting worth anything over no predictor?

Candidates predicted from fewer than ``--min-archive`` earlier ones are left out. A SQLite file is
read from a copy (upgraded there to this version's schema when older), never changed. Runs of any
search over module-level specs (random, tpe, evolve, recombine) can be replayed; agent designs
are skipped (the predictor does not apply to them).

    python bench/predictor.py W/*.db [--save]     # e.g. the databases of a bench/quality.py --workdir W
    python bench/predictor.py --search DIR [--save]   # first a random search to replay (embedded LM, SST-2)

A bench run keeps few scored candidates (300 calls buy five or six on 50 dev examples), too few to
rank. ``--search DIR`` first runs a search made for this: random over the prompt and module levels
on SST-2 (train 100, dev 20, test 20) with the embedded SmolLM2-135M, up to 40 candidates within
1500 LM calls (the budget ended the measured run at 39, 14 min), kept in ``DIR/predictor-sst2.db`` (started again, it resumes), then replays it.

Prints JSON; with --save also writes bench/results/predictor-<date>.json.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

import agentsearch  # noqa: E402
from agentsearch.optimizers import ScoredCandidate  # noqa: E402
from agentsearch.optimizers._recombine import predict_score  # noqa: E402
from agentsearch.search_space import CandidateSpec, parse_spec  # noqa: E402
from agentsearch.store import EvaluationStatus, Split, get_storage  # noqa: E402

MIN_RANKED = 10
"""Predictions a run needs for its rank correlation to enter the summary."""
SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def search(folder: Path) -> Path:
    """A random search over [prompt, module] on SST-2 with the embedded LM, resumed if one was started."""
    folder.mkdir(parents=True, exist_ok=True)
    lm = {"model": "local/smollm2-135m", "max_tokens": 16}
    task = {
        "name": "predictor-sst2",
        "program": {"signature": "sentence -> label",
                    "instructions": "Classify the sentiment of a movie review sentence as positive or negative."},
        "data": {**{split: str(SST2 / f"{split}.jsonl") for split in ("train", "dev", "test")},
                 "limit": {"train": 100, "dev": 20, "test": 20}},
        "metric": "exact_match", "lm": lm, "proposer_lm": {**lm, "max_tokens": 256},
        "search": {"optimizer": "random", "levels": ["prompt", "module"], "max_candidates": 40, "max_demos": 8,
                   "bootstrap_examples": 16, "pruner": "none"},
        "budget": {"max_lm_calls": 1500}, "seed": 0,
    }
    path = folder / "predictor-sst2.yaml"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    database = folder / "predictor-sst2.db"
    url = f"sqlite:///{database}"
    started = database.exists() and any(run.name == "predictor" for run in get_storage(url).list_runs())
    agentsearch.optimize(path, storage=url, run_name="predictor", resume=started)
    return database


def replay(url: str, min_archive: int) -> list[dict[str, Any]]:
    """One row per run in the database: its predictions against its dev scores."""
    storage = get_storage(url)
    rows = []
    for run in storage.list_runs():
        dev = {e.candidate_id: e for e in storage.list_evaluations(run_id=run.id)
               if e.split == Split.DEV and e.status is EvaluationStatus.COMPLETE and e.score is not None}
        scored = []
        for candidate in storage.list_candidates(run.id):
            spec = parse_spec(candidate.spec)
            if candidate.id in dev and isinstance(spec, CandidateSpec):
                evaluation = dev[candidate.id]
                scored.append((evaluation.finished_at, candidate.number,
                               ScoredCandidate(candidate.id, spec, {0: float(evaluation.score or 0.0)},
                                               number=candidate.number)))
        scored.sort(key=lambda item: (item[0] is None, item[0], item[1]))
        predicted, actual, uninformed = [], [], []
        for index, (_, _, candidate) in enumerate(scored):
            archive = [entry for _, _, entry in scored[:index]]
            if len(archive) < min_archive:
                continue
            guess = predict_score(candidate.spec, archive)
            assert guess is not None
            predicted.append(guess)
            actual.append(candidate.mean)
            uninformed.append(sum(entry.mean for entry in archive) / len(archive))
        row: dict[str, Any] = {"database": Path(url.removeprefix("sqlite:///")).name.split("-", 1)[-1],
                               "run": run.name,
                               "scored": len(scored), "predicted": len(predicted)}
        if len(predicted) >= 3 and len(set(actual)) > 1 and len(set(predicted)) > 1:
            rho = stats.spearmanr(predicted, actual)
            row.update(spearman=round(float(rho.statistic), 3), p_value=round(float(rho.pvalue), 4))
        else:
            row.update(spearman=None, p_value=None)
        if predicted:
            row["mae"] = round(sum(abs(p - a) for p, a in zip(predicted, actual)) / len(actual), 3)
            row["mae_uninformed"] = round(sum(abs(u - a) for u, a in zip(uninformed, actual)) / len(actual), 3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("databases", nargs="*", help="SQLite files (or SQLAlchemy URLs) holding runs")
    parser.add_argument("--search", metavar="DIR", help="first run the random search to replay, kept in DIR")
    parser.add_argument("--min-archive", type=int, default=3, help="earlier scored candidates a prediction needs")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    if args.search:
        args.databases.append(str(search(Path(args.search))))
    if not args.databases:
        parser.error("name the databases to replay, or --search DIR")
    rows = []
    with tempfile.TemporaryDirectory(prefix="agentsearch-predictor-") as scratch:
        for index, database in enumerate(args.databases):
            if "://" in database:
                url = database
            else:
                copy = Path(scratch) / f"{index}-{Path(database).name}"
                # SQLite's backup, not a file copy: a run's last writes may still be in its write-ahead log
                with sqlite3.connect(f"file:{Path(database).resolve()}?mode=ro", uri=True) as source, \
                        sqlite3.connect(copy) as target:
                    source.backup(target)
                url = f"sqlite:///{copy}"
                get_storage(url, upgrade=True)
            rows += replay(url, args.min_archive)
    # runs with enough predictions to rank (a bench run keeps a handful of candidates: its 2 or 3
    # predictions say nothing); the others are listed under "runs" only
    ranked = [row for row in rows if row["predicted"] >= MIN_RANKED and row["spearman"] is not None]
    count = sum(row["predicted"] for row in ranked)
    summary = {
        "runs": len(rows), "runs_ranked": len(ranked), "predictions_ranked": count,
        "spearman_by_run": {f'{row["database"]}:{row["run"]}': row["spearman"] for row in ranked},
        "mae": round(sum(row["mae"] * row["predicted"] for row in ranked) / count, 3) if count else None,
        "mae_uninformed": round(sum(row["mae_uninformed"] * row["predicted"] for row in ranked) / count, 3)
        if count else None,
    }
    emit({"bench": "predictor", "min_archive": args.min_archive, "summary": summary, "runs": rows}, "predictor",
         save=args.save)


if __name__ == "__main__":
    main()
