from __future__ import annotations

from pathlib import Path

import pytest

from agentsearch import load_task
from agentsearch.exceptions import TaskSpecError
from tests.conftest import write_jsonl


def test_valid_task_loads_with_paths_relative_to_the_file(write_task, task_dir: Path):
    task = load_task(write_task())
    assert task.name == "toy"
    assert task.data_path("dev") == task_dir / "data/dev.jsonl"
    assert task.lm.model == "fake/keyword"
    assert task.effective_proposer_lm == task.lm


def test_lm_may_be_a_plain_model_string(write_task):
    task = load_task(write_task(lm="openai/gpt-4o-mini"))
    assert task.lm.model == "openai/gpt-4o-mini" and task.lm.temperature == 0.0


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"program": {"instructions": "x"}}, "program.signature", "Field required"),
        ({"search.max_candidates": "many"}, "search.max_candidates", "integer"),
        ({"search.max_candidats": 3}, "search.max_candidats", "Extra inputs"),
        ({"data.dev": "data/missing.jsonl"}, "data.dev", "file not found"),
        ({"metric": "no_such_module_xyz:score"}, "metric", "cannot import"),
        ({"metric": "levenshtein"}, "metric", "unknown metric"),
        ({"program.signature": "sentence -> label, missing_field"}, "data.train", "missing_field"),
        ({"search.optimizer": "annealing"}, "search.optimizer", "tpe"),
        ({"program.signature": "no arrow here"}, "program.signature", "not a DSPy signature"),
    ],
)
def test_bad_task_names_file_and_field(write_task, overrides, field, words):
    path = write_task(**overrides)
    with pytest.raises(TaskSpecError) as raised:
        load_task(path)
    message = str(raised.value)
    assert message.startswith(str(path)), message
    assert f": {field}" in message and words in message, message
    assert "\n" not in message


def test_empty_split_is_an_error(write_task, task_dir: Path):
    write_jsonl(task_dir / "data" / "test.jsonl", [])
    with pytest.raises(TaskSpecError, match=r"data\.test: .*has no examples"):
        load_task(write_task())


def test_not_yaml_and_not_a_mapping(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(TaskSpecError, match="not valid YAML"):
        load_task(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(TaskSpecError, match="mapping"):
        load_task(listing)
    with pytest.raises(TaskSpecError, match="cannot read task file"):
        load_task(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(TaskSpecError, match="not valid YAML"):
        load_task(evil)


def test_user_metric_from_the_task_folder(write_task, task_dir: Path):
    (task_dir / "my_metrics_mod.py").write_text("def first_letter(example, prediction):\n"
                                                "    return float(example.label[0] == prediction.label[0])\n")
    task = load_task(write_task(metric="my_metrics_mod:first_letter"))
    from agentsearch.metrics import resolve_metric

    assert resolve_metric(task.metric, base_dir=task.base_dir).__name__ == "first_letter"


def test_csv_data_and_limits(write_task, task_dir: Path):
    (task_dir / "data" / "dev.csv").write_text("id,sentence,label\nr1,good,positive\nr2,bad,negative\nr3,ok,positive\n")
    task = load_task(write_task(**{"data.dev": "data/dev.csv", "data.limit": {"dev": 2}}))
    from agentsearch.data import load_split

    dev = load_split(task, "dev")
    assert [item.id for item in dev] == ["r1", "r2"]
    assert dev[0].example.inputs().toDict() == {"sentence": "good"}


def test_unknown_local_model_is_named(write_task):
    with pytest.raises(TaskSpecError, match=r"lm\.model: unknown local model 'local/gpt-9'"):
        load_task(write_task(lm="local/gpt-9"))
