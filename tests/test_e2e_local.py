"""End-to-end runs on the embedded LM (SmolLM2-135M through llama-cpp-python), on the example's data."""

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

pytest.importorskip("llama_cpp", reason="needs the 'local' extra")

import agentsearch  # noqa: E402
from agentsearch import load_program  # noqa: E402
from agentsearch.search_space import parse_spec  # noqa: E402
from tests.fakes import communicate_or_dump, default_sigint  # noqa: E402

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sentiment"


def small_task(tmp_path: Path, **search) -> Path:
    task = yaml.safe_load((EXAMPLE / "task.yaml").read_text())
    task["data"] = {split: str(EXAMPLE / "data" / f"{split}.jsonl") for split in ("train", "dev", "test")}
    task["data"]["limit"] = {"train": 24, "dev": 12, "test": 12}
    task["search"].update({"max_candidates": 4, "num_instructions": 2, "bootstrap_examples": 6, **search})
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_search_on_the_embedded_lm_improves_on_the_seed_and_round_trips(tmp_path):
    result = agentsearch.optimize(small_task(tmp_path), storage=f"sqlite:///{tmp_path / 'e2e.db'}")
    assert result.run.status == "finished"
    assert result.best.dev_score > result.seed.dev_score
    assert result.best.test_score is not None
    saved = result.save(tmp_path / "best.json")
    loaded = load_program(saved)
    sentences = ["the cast is wonderful.", "the story is a boring mess.", "the ending falls flat."]
    assert [result.best_program(sentence=s).label for s in sentences] == [loaded(sentence=s).label for s in sentences]


def _rows(db: Path) -> list[tuple]:
    """Stored example results; none while the process has created the file but not yet its tables."""
    try:
        with sqlite3.connect(db) as connection:
            return connection.execute(
                "SELECT id, evaluation_id, example_id, score, lm_calls FROM example_results ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return []


def test_kill_9_mid_run_then_resume_repeats_no_finished_evaluation(tmp_path):
    task = small_task(tmp_path, max_candidates=3)
    db = tmp_path / "kill.db"
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "cache-killed")}
    command = [sys.executable, "-m", "agentsearch", "optimize", str(task), "--storage", f"sqlite:///{db}", "--run", "k"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists() and len(_rows(db)) >= 20:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _rows(db)
    assert len(before) >= 20

    # A fresh cache: anything re-evaluated would have to call the LM again and show in lm_calls.
    env["DSPY_CACHEDIR"] = str(tmp_path / "cache-resumed")
    resumed = subprocess.run(command[:-2] + ["--resume", "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _rows(db)
    assert after[: len(before)] == before  # finished results untouched
    new = after[len(before):]
    assert not {(r[1], r[2]) for r in new} & {(r[1], r[2]) for r in before}  # none evaluated twice
    with sqlite3.connect(db) as connection:
        status, = connection.execute("SELECT status FROM runs WHERE name = 'k'").fetchone()
        sizes = connection.execute("SELECT split, n FROM evaluations WHERE status = 'complete'").fetchall()
    assert status == "finished"
    assert all(n == {"dev": 12, "test": 12, "train": 6}[split] for split, n in sizes)


def _mid_evaluation(db: Path) -> bool:
    """The run is running and one of its evaluations has results but is not complete."""
    try:
        with sqlite3.connect(db) as connection:
            (status,) = connection.execute("SELECT status FROM runs").fetchone()
            unfinished = connection.execute(
                "SELECT count(*) FROM evaluations e WHERE e.status = 'running' AND "
                "(SELECT count(*) FROM example_results r WHERE r.evaluation_id = e.id) > 0").fetchone()[0]
    except (sqlite3.OperationalError, TypeError):
        return False
    return status == "running" and unfinished > 0


def test_ctrl_c_stops_after_saving_and_says_how_to_resume(tmp_path):
    # 30 candidates take many minutes on this model: the SIGINT below cannot come after the run is done
    task = small_task(tmp_path, max_candidates=30)
    db = tmp_path / "int.db"
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "cache")}
    errors = tmp_path / "stderr.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "agentsearch", "optimize", str(task), "--storage", f"sqlite:///{db}", "--run", "i"],
        env=env, stdout=subprocess.DEVNULL, stderr=errors.open("w"), text=True, preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not (db.exists() and _mid_evaluation(db)):
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it was seen mid-evaluation"
    kept = len(_rows(db))
    process.send_signal(signal.SIGINT)
    stderr = communicate_or_dump(process, errors, 120)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    with sqlite3.connect(db) as connection:
        status, = connection.execute("SELECT status FROM runs WHERE name = 'i'").fetchone()
    assert status == "interrupted"
    assert len(_rows(db)) >= kept > 0


def test_json_format_on_the_embedded_lm_is_constrained_to_parseable_json():
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import Evaluator
    from agentsearch.lm import build_lm
    from agentsearch.metrics import BUILTIN_METRICS
    from agentsearch.search_space import CandidateSpec, PredictorSpec, SpecProgram
    from agentsearch.task import LMConfig

    spec = CandidateSpec(predictors=(PredictorSpec(signature="sentence -> label", format="json",
                                                   instructions="Answer positive or negative."),))
    program = SpecProgram(spec, {}, build_lm(LMConfig(model="local/smollm2-135m", max_tokens=40)))
    examples = [LabelledExample(str(i), dspy.Example(sentence=s, label="positive").with_inputs("sentence"))
                for i, s in enumerate(["the cast is wonderful.", "the ending falls flat.", "a joy to watch."])]
    outcomes = Evaluator(BUILTIN_METRICS["exact_match"]).evaluate(program, examples)
    assert [o.error for o in outcomes] == [None, None, None]
    assert all(isinstance(o.prediction["label"], str) for o in outcomes)


def test_module_level_search_on_the_embedded_lm(tmp_path):
    """Module kinds and topologies run on the real tiny model (PoT code in the sandbox among them)."""
    path = small_task(tmp_path, levels=["prompt", "module"], max_candidates=6, formats=["completion"],
                      modules={"kinds": ["predict", "program_of_thought", "self_consistency", "retrieve_demos"],
                               "topologies": ["single", "ensemble", "reflect"], "max_samples": 2, "max_rounds": 1})
    url = f"sqlite:///{tmp_path / 'modules.db'}"
    result = agentsearch.optimize(path, storage=url)
    assert result.run.status == "finished"
    candidates = agentsearch.get_storage(url).list_candidates(result.run.id)
    assert len(candidates) == 6 and {c.level for c in candidates} >= {"module"}
    assert result.best.dev_score >= result.seed.dev_score


def test_agent_level_search_on_the_embedded_lm(tmp_path):
    """The hand-written designs and one the 135M model writes itself run in the sandbox on the real model."""
    path = small_task(tmp_path, levels=["agent"], max_candidates=9, agent={"repairs": 1})
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    result = agentsearch.optimize(path, storage=url)
    assert result.run.status == "finished"
    designs = [c for c in agentsearch.get_storage(url).list_candidates(result.run.id) if c.level == "agent"]
    archive = [c for c in designs if c.optimizer == "archive"]
    written = [c for c in designs if c.optimizer in ("meta_agent", "repair")]
    assert len(archive) == 7 and all(c.status == "complete" and "def forward" in c.spec["code"] for c in archive)
    assert written and all(c.parents for c in written)
    assert all(c.note for c in written if c.status == "failed")  # a failed design keeps its error
    saved = result.save(tmp_path / "best.json")
    loaded = load_program(saved)
    sentences = ["the cast is wonderful.", "the story is a boring mess."]
    assert [result.best_program(sentence=s).label for s in sentences] == [loaded(sentence=s).label for s in sentences]


def test_recombine_search_on_the_embedded_lm(tmp_path):
    """The 135M proposer's drafts are checked against the space; the run stays correct and keeps its lineage."""
    path = small_task(tmp_path, levels=["prompt", "module"], optimizer="recombine", max_candidates=5,
                      formats=["chat", "completion"], modules={"kinds": ["predict", "self_consistency"],
                                                               "topologies": ["single", "ensemble"], "max_samples": 2,
                                                               "max_members": 2})
    url = f"sqlite:///{tmp_path / 'recombine.db'}"
    result = agentsearch.optimize(path, storage=url)
    assert result.run.status == "finished"
    storage = agentsearch.get_storage(url)
    candidates = storage.list_candidates(result.run.id)
    children = [c for c in candidates if c.optimizer == "recombine"]
    assert len(candidates) == 5 and len(children) == 4
    numbers = {c.id: c.number for c in candidates}
    assert all(c.parents and all(numbers[p] < c.number for p in c.parents) for c in children)
    assert all(parse_spec(c.spec).hash == c.spec_hash for c in children)  # stored specs rebuild as proposed
    assert result.best.dev_score >= result.seed.dev_score


def test_tree_search_on_the_embedded_lm(tmp_path):
    """The tree grows from the few-shot design; what the 135M model writes runs (or fails) in the sandbox."""
    path = small_task(tmp_path, levels=["agent"], max_candidates=5, agent={"optimizer": "mcts"})
    url = f"sqlite:///{tmp_path / 'mcts.db'}"
    result = agentsearch.optimize(path, storage=url)
    assert result.run.status == "finished"
    designs = [c for c in agentsearch.get_storage(url).list_candidates(result.run.id) if c.level == "agent"]
    root, grown = designs[0], designs[1:]
    assert root.optimizer == "archive" and root.status == "complete"
    ids = {c.id for c in designs}
    assert grown and all(c.optimizer == "mcts" and c.parents[0] in ids for c in grown)
    assert all(c.note for c in grown if c.status == "failed")
