"""No secret out: canaries planted in the key variable, the storage URL's password and the api_base's
credentials are searched for in every output of failing and succeeding searches, in the database
(a pg_dump of it, and the SQLite file's bytes), in DSPy's disk cache and in the exported program."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from agentsearch.testing import running_server
from tests.conftest import base_task

KEY_CANARY = "canary-key-7f3a9c2e51"
STORAGE_CANARY = "canarypw4d8b6e"
BASE_CANARY = "canarybase92c1f0"
CANARIES = (KEY_CANARY, STORAGE_CANARY, BASE_CANARY)


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    return f"{scheme}://{userinfo.split(':', 1)[0]}:{password}@{host}"


def _cli(*args: str, cwd: Path) -> str:
    env = {**os.environ, "OPENAI_API_KEY": KEY_CANARY, "DSPY_CACHEDIR": str(cwd / "cache")}
    env.pop("AGENTSEARCH_STORAGE", None)
    done = subprocess.run([sys.executable, "-m", "agentsearch", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def _task(task_dir: Path, base_url: str, storage: str, name: str) -> Path:
    parts = urlsplit(base_url)
    api_base = f"{parts.scheme}://agent:{BASE_CANARY}@{parts.netloc}{parts.path}"
    task = base_task(name=name, storage=storage, **{
        "lm": {"model": "openai/fake", "api_base": api_base, "num_retries": 1, "timeout": 5},
        "search.max_candidates": 3, "search.bootstrap_examples": 4})
    path = task_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    return path


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_canaries_never_leave_the_process(task_dir, tmp_path, request, backend):
    if backend == "postgresql":
        storage = _with_password(request.getfixturevalue("postgres_url"), STORAGE_CANARY)
    else:
        storage = f"sqlite:///{tmp_path / 'canary.db'}"
    outputs = []
    with running_server(0.005, {"label": ["positive", "negative"]}, faults={"500": 1.0}) as live:
        failing = _task(task_dir, live.base_url, storage, "failing")
        outputs.append(_cli("validate", str(failing), cwd=tmp_path))
        outputs.append(_cli("optimize", str(failing), "--run", "dead", cwd=tmp_path))  # storage from the task file
        assert outputs[-1].startswith("exit 3"), outputs[-1]
        live.configure(faults={})
        working = _task(task_dir, live.base_url, storage, "working")
        outputs.append(_cli("optimize", str(working), "--storage", storage, "--run", "alive", "--out",
                            str(tmp_path / "out.json"), cwd=tmp_path))
        assert outputs[-1].startswith("exit 0"), outputs[-1]
        outputs.append(_cli("optimize", str(failing), "--storage", storage, "--resume", cwd=tmp_path))
    for command in (["runs"], ["candidates", "alive"], ["show", "1"], ["examples", "2"], ["export", "alive", "--out",
                    str(tmp_path / "best.json")], ["runs", "--json"]):
        outputs.append(_cli(*command, "--storage", storage, cwd=tmp_path))
    wrong_port = storage.replace(":5432/", ":1/") if backend == "postgresql" else _with_password(
        "postgresql+psycopg://postgres:x@127.0.0.1:1/test", STORAGE_CANARY)
    outputs.append(_cli("runs", "--storage", wrong_port, cwd=tmp_path))
    assert "***" in outputs[-1] and outputs[-1].startswith("exit 2"), outputs[-1]

    exported = [path.read_text() for path in tmp_path.iterdir() if path.suffix in (".json", ".py")]
    assert len(exported) >= 2
    if backend == "postgresql":
        url = urlsplit(request.getfixturevalue("postgres_url"))
        schema = url.query.split("%3D", 1)[1]
        dump = subprocess.run([shutil.which("pg_dump") or "pg_dump", "-h", url.hostname, "-p", str(url.port),
                               "-U", url.username, "-n", schema, url.path.lstrip("/")], capture_output=True,
                              text=True, check=True).stdout
        assert "alive" in dump  # the dump holds the runs
    else:
        dump = (tmp_path / "canary.db").read_bytes().decode("latin-1")
        assert "alive" in dump
    cache = [path.read_bytes().decode("latin-1") for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert cache  # DSPy's disk cache holds the runs' LM calls: it is a store too
    everything = "\n".join([*outputs, *exported, dump, *cache])
    for canary in CANARIES:
        assert canary not in everything, canary
    assert "***" in everything  # the masked URLs are there, without what they masked


def test_url_credentials_are_sent_as_the_header_they_mean_and_kept_out_of_responses(monkeypatch, tmp_path):
    """``user:pass@`` in an api_base means HTTP Basic auth; litellm copies the api_base it was given into
    every response, which DSPy's disk cache keeps, so the password goes as the header instead."""
    import dspy

    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig
    from agentsearch.testing import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "a-key-for-the-fake-server")
    seen = []

    class Recording(FakeOpenAIServer):
        async def _chat(self, request, headers):
            seen.append(headers.get("authorization"))
            return await super()._chat(request, headers)

    server = Recording(latency_s=0.001).start()
    try:
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(tmp_path / "c"))
        lm = build_lm(LMConfig(model="openai/fake", api_base=server.base_url.replace("//", f"//agent:{BASE_CANARY}@")))
        lm("hello")
    finally:
        server.stop()
    assert seen == ["Basic " + __import__("base64").b64encode(f"agent:{BASE_CANARY}".encode()).decode()]
    stored = b"".join(path.read_bytes() for path in (tmp_path / "c").rglob("*") if path.is_file())
    assert stored and BASE_CANARY.encode() not in stored


def test_a_server_that_quotes_the_basic_auth_header_it_got_shows_no_password(task_dir, tmp_path):
    """``user:pass@`` in an api_base is sent as ``Authorization: Basic base64(user:pass)``; a server
    quoting that header in its 401 once had it printed and kept in ``runs.stop_reason`` unmasked, and
    it decodes to the password. Forms derived from a secret are masked by value, like the secret."""
    import base64

    encoded = base64.b64encode(f"agent:{BASE_CANARY}".encode()).decode()
    storage = f"sqlite:///{tmp_path / 'basic.db'}"
    with running_server(0.005, {"label": ["positive", "negative"]}, api_key="the-right-key-1234",
                        echo_auth=True) as live:
        path = _task(task_dir, live.base_url, storage, "basic")
        refused = _cli("optimize", str(path), "--run", "basic", cwd=tmp_path)
        listed = _cli("runs", "--json", "--storage", storage, cwd=tmp_path)
    assert refused.startswith("exit 3") and "Incorrect API key provided (Basic ***)" in refused, refused
    stored = (tmp_path / "basic.db").read_bytes().decode("latin-1")
    for text in (refused, listed, stored):
        assert encoded not in text and BASE_CANARY not in text
