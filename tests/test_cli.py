from __future__ import annotations

import json
import sys

import dspy
import pytest

import agentsearch
from agentsearch.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["agentsearch", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


@pytest.fixture
def finished_run(write_task, sqlite_url, fake_lm, monkeypatch, capsys):
    task = write_task()
    code, out, _ = run_cli(monkeypatch, capsys, "optimize", str(task), "--storage", sqlite_url, "--run", "cli-run",
                           "--json")
    assert code == 0
    return task, json.loads(out)


def test_optimize_json_summary(finished_run):
    _, summary = finished_run
    assert summary["run"] == "cli-run" and summary["status"] == "finished"
    assert summary["best"]["dev"] > summary["seed"]["dev"]
    assert summary["lm_calls"] > 0


def test_listing_commands_with_json(finished_run, sqlite_url, monkeypatch, capsys):
    _, summary = finished_run
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--storage", sqlite_url, "--json")
    (run,) = json.loads(out)
    assert code == 0 and run["name"] == "cli-run" and run["candidates"] == 6 and run["best_dev"] == summary["best"]["dev"]

    code, out, _ = run_cli(monkeypatch, capsys, "candidates", "cli-run", "--top", "3", "--storage", sqlite_url, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3 and rows[0]["dev"] == summary["best"]["dev"]
    assert [r["dev"] for r in rows] == sorted((r["dev"] for r in rows), reverse=True)

    code, out, _ = run_cli(monkeypatch, capsys, "show", str(rows[0]["id"]), "--storage", sqlite_url, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["candidate"]["id"] == rows[0]["id"]
    assert {e["split"] for e in shown["evaluations"]} >= {"dev"}


def test_export_then_evaluate_reproduces_the_test_score(finished_run, sqlite_url, tmp_path, monkeypatch, capsys):
    task, summary = finished_run
    best = tmp_path / "best.json"
    code, _, _ = run_cli(monkeypatch, capsys, "export", "cli-run", "--out", str(best), "--storage", sqlite_url)
    assert code == 0 and json.loads(best.read_text())["metadata"]["candidate_id"] == summary["best"]["candidate"]
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(best), str(task), "--split", "test", "--json")
    assert code == 0 and json.loads(out)["score"] == pytest.approx(summary["best"]["test"])


def test_validate_prints_the_plan(write_task, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "validate", str(write_task()), "--json")
    plan = json.loads(out)
    assert code == 0 and plan["examples"] == {"train": 20, "dev": 12, "test": 10}
    assert plan["max_dev_evaluations"] == 6 * 12


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "{task_bad}"),
        ("optimize", "{task_bad}"),
        ("runs", "--storage", "sqlite:///{tmp}/absent.db"),
        ("evaluate", "{tmp}/absent.json", "{task_good}"),
        ("candidates", "nope", "--storage", "{sqlite}"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, write_task, tmp_path, sqlite_url, monkeypatch, capsys):
    from agentsearch.store import get_storage

    get_storage(sqlite_url)
    names = {"task_bad": write_task("bad.yaml", **{"search.max_candidates": 0}), "task_good": write_task(),
             "tmp": tmp_path, "sqlite": sqlite_url}
    code, out, err = run_cli(monkeypatch, capsys, *(a.format(**names) for a in args))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


def test_bad_task_error_names_file_and_field(write_task, monkeypatch, capsys):
    bad = write_task("bad.yaml", **{"search.max_candidates": 0})
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(bad))
    assert code == 2 and f"{bad}: search.max_candidates:" in err


def test_usage_error_exits_2(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "optimize")
    assert code == 2 and "Missing argument" in err


def test_database_queries_do_not_import_dspy_or_litellm(finished_run, sqlite_url):
    """Reading the store must not pay seconds of DSPy and litellm imports per command."""
    import subprocess

    code = (
        "import sys\n"
        "from agentsearch.cli import main\n"
        f"for args in (['runs'], ['candidates', 'cli-run', '--top', '3'], ['show', '1']):\n"
        f"    sys.argv = ['agentsearch', *args, '--storage', {sqlite_url!r}, '--json']\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n"
        "heavy = sorted(name for name in ('dspy', 'litellm', 'optuna') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_public_api_loads_on_first_use():
    import subprocess

    code = ("import sys, agentsearch\n"
            "assert 'dspy' not in sys.modules\n"
            "assert callable(agentsearch.optimize) and 'dspy' in sys.modules\n"
            "from agentsearch import *\n"
            "assert set(agentsearch.__all__) <= set(dir(agentsearch))\n"
            "try:\n"
            "    agentsearch.nothing\n"
            "except AttributeError as error:\n"
            "    assert 'nothing' in str(error)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_examples_lists_input_gold_prediction_and_error_from_the_database_alone(finished_run, sqlite_url, tmp_path,
                                                                                monkeypatch, capsys):
    task, summary = finished_run
    for data in (task.parent / "data").iterdir():
        data.unlink()  # the data files are gone: the store must answer on its own
    seed = summary["seed"]["candidate"]
    code, out, _ = run_cli(monkeypatch, capsys, "examples", str(seed), "--storage", sqlite_url, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 12
    row = rows[0]
    assert set(row["inputs"]) == {"sentence"} and set(row["gold"]) == {"label"}
    assert row["prediction"] == {"label": "positive"}  # the fake answers the seed's chat prompt "positive"
    assert row["score"] == float(row["gold"]["label"] == "positive")
    code, out, _ = run_cli(monkeypatch, capsys, "examples", str(seed), "--failed", "--storage", sqlite_url, "--json")
    failed = json.loads(out)
    assert code == 0 and failed and all(r["score"] < 1.0 or r["error"] for r in failed) and len(failed) < len(rows)
    code, out, _ = run_cli(monkeypatch, capsys, "examples", str(seed), "--split", "test", "--storage", sqlite_url,
                           "--json")
    assert code == 0 and "a wonderful film 200" in {row["inputs"]["sentence"] for row in json.loads(out)}
    code, out, _ = run_cli(monkeypatch, capsys, "examples", str(seed), "--storage", sqlite_url)
    assert code == 0 and f"candidate {seed} on dev" in out and "positive" in out


def test_show_prints_the_most_common_error(write_task, task_dir, sqlite_url, fake_lm, monkeypatch, capsys):
    from tests.conftest import sentiment_rows, write_jsonl

    write_jsonl(task_dir / "data" / "dev.jsonl",
                [{**row, "sentence": f"TOOLONG {row['sentence']}"} for row in sentiment_rows(100)[:4]])
    code, _, _ = run_cli(monkeypatch, capsys, "optimize", str(write_task(**{"search.max_candidates": 2})),
                         "--storage", sqlite_url, "--run", "e")
    code, out, _ = run_cli(monkeypatch, capsys, "show", "1", "--storage", sqlite_url)
    assert code == 0 and "most common error (4 of 4)" in out and "context window" in out


def test_runs_shows_a_run_whose_process_died_and_never_cuts_a_name(sqlite_url, monkeypatch, capsys):
    import datetime as dt

    import sqlalchemy

    from agentsearch.store import get_storage

    store = get_storage(sqlite_url)
    long_name = "movie-review-sentiment-20261130-235959~12"
    store.create_run(long_name, "movie-review-sentiment", {})
    dead = store.create_run("killed", "toy", {})
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.begin() as connection:  # its process stopped beating five minutes ago
        connection.execute(sqlalchemy.text("UPDATE runs SET heartbeat_at = :at WHERE id = :id"),
                           {"at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=5),
                            "id": dead.id})
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--storage", sqlite_url)
    assert code == 0 and long_name in out and max(len(line) for line in out.splitlines()) <= 80
    assert "running" in out and "lost:" in out  # the rest folds: "no heartbeat, last seen 5 min ago"
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--storage", sqlite_url, "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["killed"]["lost"] and not rows[long_name]["lost"]


def test_version_and_how_storage_is_chosen(write_task, tmp_path, fake_lm, monkeypatch, capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and version("agentsearch") in out
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--help")
    flat = " ".join(out.replace("│", " ").split())
    assert "AGENTSEARCH_STORAGE" in flat and "sqlite:///agentsearch.db" in flat and "task file" in flat

    # the environment comes before the task file's storage, and the export hint names what was used
    env_db = tmp_path / "from-env.db"
    monkeypatch.setenv("AGENTSEARCH_STORAGE", f"sqlite:///{env_db}")
    task = write_task(**{"search.max_candidates": 2, "storage": f"sqlite:///{tmp_path / 'from-task.db'}"})
    code, out, _ = run_cli(monkeypatch, capsys, "optimize", str(task), "--run", "s")
    assert code == 0 and env_db.exists() and not (tmp_path / "from-task.db").exists()
    assert f"agentsearch export s --out best.json --storage sqlite:///{env_db}" in " ".join(out.split())
    code, out, _ = run_cli(monkeypatch, capsys, "runs", "--json")  # the same rule for every command
    assert code == 0 and [row["name"] for row in json.loads(out)] == ["s"]


def test_export_as_dspy_state_loads_into_plain_dspy_and_prompts_the_same(write_task, sqlite_url, tmp_path, fake_lm,
                                                                         monkeypatch, capsys):
    """`export --format dspy` writes DSPy's own state: a fresh dspy.Predict loads it with plain DSPy
    and sends the LM exactly the prompts agentsearch's loaded program sends (so: the same answers).
    The loaded agentsearch program follows dspy.context(lm=...) (it used to keep its file's LM)."""
    from tests.fakes import same_prompts

    task = write_task(**{"search.formats": ["chat"]})
    code, _, _ = run_cli(monkeypatch, capsys, "optimize", str(task), "--storage", sqlite_url, "--run", "plain")
    assert code == 0
    plain, ours = tmp_path / "plain.json", tmp_path / "ours.json"
    code, out, _ = run_cli(monkeypatch, capsys, "export", "plain", "--out", str(plain), "--format", "dspy",
                           "--storage", sqlite_url)
    assert code == 0 and 'dspy.Predict("sentence -> label")' in out and 'program.load("plain.json")' in out
    code, _, _ = run_cli(monkeypatch, capsys, "export", "plain", "--out", str(ours), "--storage", sqlite_url)
    assert code == 0
    ours_program = agentsearch.load_program(ours)
    plain_program = dspy.Predict("sentence -> label")
    plain_program.load(str(plain))  # plain DSPy: no KeyError 'dependency_versions'
    assert plain_program.signature.instructions == ours_program.spec.predictors[0].instructions
    answers = [{"label": "positive"}, {"label": "negative"}, {"label": "positive"}]
    labels = same_prompts(ours_program, plain_program, answers, ["a fine film", "dull and long", "it was ok"])
    assert labels == ["positive", "negative", "positive"]  # the loaded program ran on the context's LM


def test_export_as_dspy_refuses_what_plain_dspy_cannot_load_and_writes_nothing(tmp_path):
    from agentsearch._export import write_dspy_state
    from agentsearch.exceptions import ExportError
    from agentsearch.search_space import CandidateSpec, PredictorSpec, SpecProgram

    def node(name="answer", **options):
        return PredictorSpec(name=name, signature="sentence -> label", instructions="Classify.", **options)

    path = tmp_path / "x.json"
    refused = {
        "ensemble": CandidateSpec(topology="ensemble", predictors=(node("member_1"), node("member_2"))),
        "self_consistency": CandidateSpec(predictors=(node(module="self_consistency", samples=3),)),
        "CompletionAdapter": CandidateSpec(predictors=(node(format="completion"),)),
    }
    for reason, spec in refused.items():
        with pytest.raises(ExportError, match=reason):
            write_dspy_state(SpecProgram(spec, {}), path)
        assert not path.exists()
    loader = write_dspy_state(SpecProgram(CandidateSpec(predictors=(node(module="chain_of_thought", format="json"),)),
                                          {}), path)
    assert 'dspy.ChainOfThought("sentence -> label")' in loader and "JSONModeAdapter()" in loader
    loaded = dspy.ChainOfThought("sentence -> label")
    loaded.load(str(path))
    assert loaded.predict.signature.instructions == "Classify."
