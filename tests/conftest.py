from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import yaml

# Every test gets LM caches of its own: no test may pass because another one warmed a cache.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from tests import fakes  # noqa: E402

POSTGRES_ENV = "AGENTSEARCH_TEST_POSTGRES_URL"

POSITIVE = ["a wonderful film", "pure joy to watch", "brilliant acting", "a delight", "great fun", "charming story",
            "I love it", "a brilliant ending", "wonderful music", "a joy"]
NEGATIVE = ["a dull film", "painful to watch", "awful acting", "a mess", "boring", "stale story", "I hate it",
            "a stupid ending", "terrible music", "a bore"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sentiment_rows(offset: int = 0) -> list[dict]:
    rows = []
    for i, (pos, neg) in enumerate(zip(POSITIVE, NEGATIVE, strict=True)):
        rows.append({"sentence": f"{pos} {offset + i}", "label": "positive"})
        rows.append({"sentence": f"{neg} {offset + i}", "label": "negative"})
    return rows


EMBEDDED_LM_FILES = ("tests/test_e2e_local.py", "tests/test_llama_states.py")
"""The files of the tests marked ``e2e`` (the embedded LM): run in one test process, one after another."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With ``-n 2`` (the README's command) the embedded LM's tests go to one worker, every other test
    to whichever is free: two llama.cpp processes on the project's 2 cores slow each other several-fold.
    (pytest-xdist's ``--dist loadgroup`` cannot do it with pytest 9: it marks a group by rewriting an
    attribute pytest 9 no longer reads, pytest-xdist issue #1386.) A ``--dist`` given on the command
    line other than xdist's default is left to xdist."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class EmbeddedLMTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "embedded-lm" if nodeid.split("::", 1)[0] in EMBEDDED_LM_FILES else nodeid

    return EmbeddedLMTogether(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misplaced = [item.nodeid for item in items
                 if item.get_closest_marker("e2e") and item.nodeid.split("::", 1)[0] not in EMBEDDED_LM_FILES]
    if misplaced:
        raise pytest.UsageError(f"e2e tests outside EMBEDDED_LM_FILES (tests/conftest.py): {misplaced[:3]}")


@pytest.fixture(autouse=True)
def fresh_lm_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A memory-and-disk DSPy cache private to the test (DSPy's cache is process-global), also for the
    processes the test starts (``DSPY_CACHEDIR``): tests run side by side must not share one."""
    directory = tmp_path_factory.mktemp("dspy-cache")
    monkeypatch.setenv("DSPY_CACHEDIR", str(directory))
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(directory))
    yield
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)


@pytest.fixture
def fake_lm() -> fakes.KeywordLLM:
    fake = fakes.register()
    fake.calls = 0
    fake.prompts.clear()
    fake.designs_written = 0
    fake.meta_prompts = 0
    fake.repairs_work = True
    fake.recombine_replies = list(fakes.RECOMBINE_REPLIES)
    fake.chat_demos_help = False
    fake.samples_vary = False
    fake._samples.clear()
    return fake


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", sentiment_rows(0))
    write_jsonl(data / "dev.jsonl", sentiment_rows(100)[:12])
    write_jsonl(data / "test.jsonl", sentiment_rows(200)[:10])
    return tmp_path


def base_task(**overrides) -> dict:
    task = {
        "name": "toy",
        "program": {"signature": "sentence -> label", "instructions": "Classify the sentiment."},
        "data": {"train": "data/train.jsonl", "dev": "data/dev.jsonl", "test": "data/test.jsonl"},
        "metric": "exact_match",
        "lm": {"model": "fake/keyword", "num_retries": 0},
        "search": {"max_candidates": 6, "num_instructions": 3, "max_demos": 4, "num_demo_sets": 3,
                   "bootstrap_examples": 8},
        "budget": {},
        "storage": "sqlite:///agentsearch.db",
        "seed": 0,
    }
    for key, value in overrides.items():
        node = task
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return task


@pytest.fixture
def write_task(task_dir: Path):
    def write(name: str = "task.yaml", **overrides) -> Path:
        path = task_dir / name
        path.write_text(yaml.safe_dump(base_task(**overrides)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def postgres_url() -> str:
    """A fresh schema in the PostgreSQL database named by AGENTSEARCH_TEST_POSTGRES_URL (.ci/run sets it)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set")
    import sqlalchemy

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(base)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
