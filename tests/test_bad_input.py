"""Bad input never starts a search: one line naming the file and field, exit code 2, no database written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import base_task, sentiment_rows, write_jsonl
from tests.test_cli import run_cli


def _expect_refused(monkeypatch, capsys, path: Path, db: Path, *words: str) -> str:
    code, out, err = run_cli(monkeypatch, capsys, "optimize", str(path), "--storage", f"sqlite:///{db}")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert str(path) in lines[0] or path.name in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert not db.exists() and out == ""
    return lines[0]


def test_a_task_file_that_is_not_utf8(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    path = task_dir / "task.yaml"
    path.write_bytes(yaml.safe_dump(base_task()).encode() + b"# caf\xe9\n")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "not UTF-8", "0xe9")


def _with_dev(task_dir: Path, rows: list[dict], name: str = "dev.jsonl") -> Path:
    write_jsonl(task_dir / "data" / name, rows)
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(**{"data.dev": f"data/{name}"})), encoding="utf-8")
    return path


def test_duplicate_ids_name_both_rows(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    rows = [{"id": f"e{i}", **row} for i, row in enumerate(sentiment_rows(100)[:8])]
    rows[5]["id"] = "e2"
    path = _with_dev(task_dir, rows)
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "data.dev", "rows 3 and 6", "'e2'")


@pytest.mark.parametrize(("value", "words"), [(None, "null"), (math.nan, "NaN"), ("  ", "empty")])
def test_missing_null_nan_or_empty_labels(task_dir, tmp_path, monkeypatch, capsys, fake_lm, value, words):
    rows = sentiment_rows(100)[:8]
    rows[4]["label"] = value
    path = task_dir / "task.yaml"
    (task_dir / "data" / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    path.write_text(yaml.safe_dump(base_task()), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "data.dev", "row 5", "'label'", words)


def test_a_csv_row_with_a_missing_value(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    (task_dir / "data" / "dev.csv").write_text("sentence,label\ngreat fun,positive\na dull film\n", encoding="utf-8")
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(**{"data.dev": "data/dev.csv"})), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "data.dev", "row 2", "'label'", "null")


def test_fields_over_the_size_limit_and_huge_instructions(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    rows = sentiment_rows(100)[:8]
    rows[1]["sentence"] = "x" * 1_000_001
    path = _with_dev(task_dir, rows)
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "data.dev", "row 2", "max_field_chars")

    write_jsonl(task_dir / "data" / "dev.jsonl", sentiment_rows(100)[:8])
    path.write_text(yaml.safe_dump(base_task(**{"program.instructions": "Classify. " * 2_500})), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "program.instructions", "20000")


def test_the_field_limit_is_configurable(task_dir, write_task):
    from agentsearch import load_task
    from agentsearch.exceptions import TaskSpecError

    rows = sentiment_rows(100)[:8]
    rows[1]["sentence"] = "x" * 2_000
    write_jsonl(task_dir / "data" / "dev.jsonl", rows)
    assert load_task(write_task()).data.max_field_chars == 100_000  # 2,000 characters are within the default
    with pytest.raises(TaskSpecError, match="max_field_chars=1,000"):
        load_task(write_task(**{"data.max_field_chars": 1000}))


def test_concurrency_over_the_bound(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(concurrency=100_000)), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "concurrency", "256")


def test_a_dollar_budget_on_a_model_nobody_can_price(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(**{"budget.max_cost_usd": 1.0})), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "budget.max_cost_usd", "fake/keyword",
                    "lm.price")
    priced = base_task(**{"budget.max_cost_usd": 1.0})
    priced["lm"]["price"] = {"input_per_million": 0.5, "output_per_million": 1.5}
    path.write_text(yaml.safe_dump(priced), encoding="utf-8")
    from agentsearch import load_task

    assert load_task(path).lm.price.output_per_million == 1.5


def test_a_metric_that_raises_on_every_call(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    (task_dir / "broken_metric.py").write_text("def score(example, prediction):\n    raise KeyError('answer')\n")
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(metric="broken_metric:score")), encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "metric", "raised", "KeyError")


def test_a_metric_that_raises_mid_run_stops_it_as_a_task_error(write_task, task_dir, sqlite_url, fake_lm):
    """It passes on gold answers, then raises on a real prediction: no 0 is stored for it."""
    import agentsearch
    from agentsearch.exceptions import MetricError
    from agentsearch.store import get_storage

    (task_dir / "picky_metric.py").write_text(
        "def score(example, prediction):\n"
        "    if prediction.label != example.label:\n"
        "        raise ValueError('cannot compare ' + prediction.label)\n"
        "    return 1.0\n")
    with pytest.raises(MetricError, match="picky_metric:score raised on dev example"):
        agentsearch.optimize(write_task(metric="picky_metric:score"), storage=sqlite_url, run_name="m")
    store = get_storage(sqlite_url)
    run = store.get_run("m")
    assert run.status == "failed" and "cannot compare" in run.stop_reason
    results = [r for e in store.list_evaluations(run_id=run.id) for r in store.list_example_results(e.id)]
    assert all(r.score == 1.0 for r in results)  # the example it raised on was not stored as a 0


def test_a_credential_in_the_api_base_query_is_refused(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    task = base_task()
    task["lm"] = {"model": "openai/gpt-4o-mini", "api_base": "https://proxy.example/v1?api_key=abc123"}
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    line = _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "lm.api_base", "environment")
    assert "abc123" not in line


def test_a_csv_with_excels_byte_order_mark_reads_its_header(task_dir, fake_lm):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark; it was read as part of the first
    header ("row 1 lacks field 'sentence'" though the header has it)."""
    from agentsearch.data import load_split
    from agentsearch.task import load_task

    rows = "".join(f"{row['sentence']},{row['label']}\r\n" for row in sentiment_rows(100)[:6])
    (task_dir / "data" / "dev.csv").write_bytes(b"\xef\xbb\xbf" + f"sentence,label\r\n{rows}".encode())
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(**{"data.dev": "data/dev.csv"})), encoding="utf-8")
    dev = load_split(load_task(path), "dev")
    assert [item.example.sentence for item in dev] == [row["sentence"] for row in sentiment_rows(100)[:6]]


def test_a_folder_given_as_a_data_file_is_named_a_folder(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    (task_dir / "data" / "dev_dir").mkdir()
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(**{"data.dev": "data/dev_dir"})), encoding="utf-8")
    line = _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "data.dev", "is a folder")
    assert "not found" not in line


STORAGE_URLS = [
    ("sqlit:///runs.db", "unknown database 'sqlit'; did you mean sqlite:///runs.db?"),
    ("postgresq://u@127.0.0.1/test", "unknown database 'postgresq'; did you mean postgresql://u@127.0.0.1/test?"),
    ("runs.db", "is a file name, not a URL: write sqlite:///runs.db"),
    ("sqlite://runs.db", "names no file (SQLite URLs take three slashes"),
    ("sqlite:///:memory:", "in-memory database"),
]


@pytest.mark.parametrize(("url", "said"), STORAGE_URLS)
def test_validate_refuses_a_mistyped_storage_url_in_one_line(task_dir, monkeypatch, capsys, fake_lm, url, said):
    """``validate`` passed these (SQLAlchemy only met them when a run opened the store, with
    "Can't load plugin: sqlalchemy.dialects:sqlit" or a five-line list of URL forms)."""
    monkeypatch.chdir(task_dir)
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(base_task(storage=url)), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "validate", str(path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and "storage:" in lines[0] and said in lines[0], lines[0]
    assert not any(task_dir.glob("*.db")) and not (task_dir / "runs.db").exists()


@pytest.mark.parametrize(("url", "said"), STORAGE_URLS)
def test_a_mistyped_storage_option_is_one_line_naming_it(tmp_path, monkeypatch, capsys, url, said):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "runs", "--storage", url)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and said in lines[0] and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_agentsearch_refuses_a_mistyped_storage_url_when_built(fake_lm):
    import agentsearch
    from agentsearch.exceptions import TaskSpecError

    with pytest.raises(TaskSpecError, match=r"AgentSearch: storage: 'sqlit:///r.db': unknown database 'sqlit'"):
        agentsearch.AgentSearch(metric=lambda example, prediction, trace=None: 1.0, storage="sqlit:///r.db")


def test_a_huge_task_file_is_refused_before_it_is_parsed(task_dir, tmp_path, monkeypatch, capsys, fake_lm):
    """A 50 MB task file took 3 minutes to be refused (YAML parsed whole first); the size is checked first."""
    path = task_dir / "task.yaml"
    body = yaml.safe_dump(base_task())
    path.write_text(body + "notes: |\n" + "  " + "x" * 100 + "\n" * 1 + ("  " + "y" * 200 + "\n") * 250_000,
                    encoding="utf-8")
    _expect_refused(monkeypatch, capsys, path, tmp_path / "s.db", "48.4 MiB", "examples go in data files")
