"""Many workers on one run, as separate processes against one PostgreSQL store and the fake OpenAI server.

What must hold however the workers interleave: the run ends with exactly ``max_candidates``
candidates, none left pending; no example of an evaluation is scored twice; a worker killed with
SIGKILL mid-candidate loses only its lease, and another worker scores only what it left unscored;
32 workers started at once all finish; the LM-call budget is one counter, so the server sees no
more than the budget plus the calls in flight. And SQLite, which serves one process, refuses a
second process on a running run with a one-line pointer to PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agentsearch.store import get_storage
from agentsearch.store._base import CANDIDATE_LEASE
from agentsearch.testing import running_server
from tests.conftest import base_task

KEY = "fake-provider-key-0123456789"
ANSWERS = {"label": ["positive", "negative"]}
RUN = "shared"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": KEY, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}


def task_file(task_dir: Path, base_url: str, **overrides) -> Path:
    task = base_task(**{
        "lm": {"model": "openai/fake", "api_base": base_url, "num_retries": 3, "timeout": 5.0},
        "search.levels": ["prompt", "module"], "search.optimizer": "random", "search.formats": ["chat", "json"],
        "search.modules": {"kinds": ["predict", "chain_of_thought"], "topologies": ["single", "pipeline", "ensemble"],
                           "max_members": 2},
        "concurrency": 1, **overrides,
    })
    path = task_dir / "task.yaml"
    path.write_text(yaml.safe_dump(task), encoding="utf-8")
    return path


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agentsearch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, timeout: float = 900) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_until(condition, timeout: float = 300, what: str = "") -> None:
    """Poll the store for a state (never a fixed sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("optimizer, count", [("random", 160), ("recombine", 60)])
def test_eight_workers_end_a_run_with_exactly_its_candidates(task_dir, postgres_url, env, optimizer, count):
    with running_server(0.02 if optimizer == "random" else 0.1, ANSWERS) as live:
        path = task_file(task_dir, live.base_url, **{"search.max_candidates": count, "search.optimizer": optimizer})
        first = start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
        store = get_storage(postgres_url)
        wait_until(lambda: store.get_run(RUN) is not None, what="the run")
        others = [start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
                  for _ in range(3)]
        others += [start(env, "worker", RUN, "--storage", postgres_url, "--json") for _ in range(4)]
        done = [finish(process) for process in [first, *others]]
        stats = live.stats()
    for code, _, err in done:
        assert code == 0, err[:8000]
    summaries = [json.loads(out) for _, out, _ in done]
    run = store.get_run(RUN)
    assert run.status == "finished" and run.counted_candidates == count
    candidates = store.list_candidates(run.id)
    assert len(candidates) == count and [c.number for c in candidates] == list(range(count))
    assert all(c.status in ("complete", "pruned") for c in candidates)
    # Every request the server answered is booked to the run (a result, a proposal, a preflight):
    # no worker paid for an example and then threw the score away (a double evaluation would).
    assert stats.requests == store.run_usage(run.id).lm_calls
    evaluations = store.list_evaluations(run_id=run.id)
    tested = [e for e in evaluations if e.split == "test"]
    best = {s["best"]["candidate"] for s in summaries}
    assert len(best) == 1  # every worker reports the one result the store holds
    assert {e.candidate_id for e in tested} == best | {candidates[0].id} and len(tested) <= 2
    assert stats.max_in_flight >= 4  # the workers really ran side by side (each has concurrency 1)


def test_workers_grow_one_tree_of_designs(task_dir, postgres_url, env):
    """Four processes run one mcts search: one root design, every other design a child of an earlier one, no
    design created twice, every request booked. (Whether two workers race to one design here depends on timing;
    the race itself is provoked in test_store_workers.test_workers_racing_to_one_spec_create_it_once.)"""
    designs = [f"NAME: Constant {i}\nRATIONALE: answers without the LM.\n```python\ndef forward(inputs, lm):\n"
               f"    return {{'label': {('positive', 'negative')[i % 2]!r}}}  # variant {i}\n```\n" for i in range(16)]
    with running_server(0.05, {**ANSWERS, "text": designs}) as live:
        path = task_file(task_dir, live.base_url, **{"search.levels": ["agent"], "search.max_candidates": 8,
                                                     "search.agent": {"optimizer": "mcts", "patience": 20}})
        first = start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
        store = get_storage(postgres_url)
        wait_until(lambda: store.get_run(RUN) is not None, what="the run")
        others = [start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")]
        others += [start(env, "worker", RUN, "--storage", postgres_url, "--json") for _ in range(2)]
        done = [finish(process) for process in [first, *others]]
        stats = live.stats()
    for code, _, err in done:
        assert code == 0, err[-3000:]
    run = store.get_run(RUN)
    assert run.status == "finished"
    candidates = store.list_candidates(run.id)
    assert [c.number for c in candidates] == list(range(len(candidates))) and 5 <= len(candidates) <= 8
    assert all(c.status in ("complete", "failed") for c in candidates)
    assert len({c.spec_hash for c in candidates}) == len(candidates)
    seed, *tree = candidates
    assert all(c.level == "agent" for c in tree)
    (root,) = [c for c in tree if c.parents == (seed.id,)]
    assert root.optimizer == "archive" and root.number == 1
    earlier = {root.id}
    for design in tree[1:]:
        assert design.optimizer == "mcts" and design.parents[0] in earlier
        earlier.add(design.id)
    assert stats.requests == store.run_usage(run.id).lm_calls


def test_a_worker_killed_mid_candidate_leaves_only_its_unscored_examples(task_dir, postgres_url, env):
    with running_server(0.15, ANSWERS) as live:
        path = task_file(task_dir, live.base_url, **{"search.max_candidates": 8, "search.pruner": "none",
                                                     "search.levels": ["prompt"], "search.num_instructions": 1})
        victim = start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url)
        store = get_storage(postgres_url)
        wait_until(lambda: store.get_run(RUN) is not None, what="the run")
        run = store.get_run(RUN)
        survivor = start(env, "worker", RUN, "--storage", postgres_url, "--json")
        marker = f":{victim.pid}:"

        def victim_mid_candidate() -> int | None:
            for name, holder in store.live_leases(run.id, CANDIDATE_LEASE).items():
                candidate = store.get_candidate(int(name.split(":")[1]))
                if marker not in holder or candidate is None or candidate.number == 0:
                    continue
                dev = [e for e in store.list_evaluations(candidate_id=candidate.id) if e.split == "dev"]
                if dev and 2 <= len(store.list_example_results(dev[0].id)) < 10:
                    return candidate.id
            return None

        held: list[int] = []

        def caught() -> bool:
            candidate_id = victim_mid_candidate()
            held.extend([] if candidate_id is None else [candidate_id])
            return candidate_id is not None

        wait_until(caught, what="the victim to be mid-candidate")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        # the victim's candidate (the survivor may be mid-candidate too, on another)
        (evaluation,) = [e for e in store.list_evaluations(candidate_id=held[-1]) if e.split == "dev"]
        before = {(r.example_id, r.score, r.latency_s) for r in store.list_example_results(evaluation.id)}
        code, out, err = finish(survivor)
    assert code == 0, err[-3000:]
    after = store.list_example_results(evaluation.id)
    done = store.list_evaluations(candidate_id=evaluation.candidate_id)
    assert [e.status for e in done if e.split == "dev"] == ["complete"]
    assert before <= {(r.example_id, r.score, r.latency_s) for r in after}  # kept as the victim stored them
    assert len(after) == len({r.example_id for r in after}) == 12  # the rest scored once, by the survivor
    assert store.get_candidate(evaluation.candidate_id).status == "complete"
    assert store.get_run(RUN).status == "finished" and len(store.list_candidates(run.id)) == 8


def test_thirty_two_workers_started_at_once_all_finish(task_dir, postgres_url, env):
    with running_server(0.01, ANSWERS) as live:
        # 32 interpreters on two cores can hold a reply past a 5 s attempt: the retry would be a
        # second request for one booked call, so each attempt here may take as long as it needs
        path = task_file(task_dir, live.base_url, **{"search.max_candidates": 20, "search.levels": ["prompt"],
                                                     "search.num_instructions": 1, "lm.timeout": 300.0})
        workers = [start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
                   for _ in range(32)]
        done = [finish(process) for process in workers]
        requests = live.stats().requests
    for code, _, err in done:
        assert code == 0 and "lock" not in err.lower(), err[-3000:]
    store = get_storage(postgres_url)
    run = store.get_run(RUN)
    assert run.status == "finished" and len(store.list_candidates(run.id)) == 20  # the space holds 26
    assert requests == store.run_usage(run.id).lm_calls


def test_a_budget_shared_by_eight_workers_reaches_the_server_at_most_budget_plus_in_flight(task_dir, postgres_url,
                                                                                       env):
    with running_server(0.05, ANSWERS) as live:
        path = task_file(task_dir, live.base_url, **{"search.max_candidates": 200, "budget.max_lm_calls": 200,
                                                     "concurrency": 4})
        first = start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
        store = get_storage(postgres_url)
        wait_until(lambda: store.get_run(RUN) is not None, what="the run")
        workers = [first] + [start(env, "optimize", str(path), "--run", RUN, "--storage", postgres_url, "--json")
                             for _ in range(7)]
        done = [finish(process) for process in workers]
        requests = live.stats().requests
    for code, _, err in done:
        # a worker that starts once the budget is spent stops at once, saying so
        assert code == 0 or (code == 2 and "budget" in err), err[-3000:]
    assert requests <= 200 + 8 * 4
    run = store.get_run(RUN)
    assert run.status == "stopped" and "max_lm_calls=200" in run.stop_reason
    assert store.run_usage(run.id).lm_calls <= 200 + 8 * 4
    print(f"budget 200: the server answered {requests} requests, the run booked "
          f"{store.run_usage(run.id).lm_calls} calls")


def test_sqlite_refuses_a_second_process_on_a_running_run(task_dir, tmp_path, env):
    with running_server(0.3, ANSWERS) as live:
        path = task_file(task_dir, live.base_url, **{"search.levels": ["prompt"]})
        url = f"sqlite:///{tmp_path / 'one.db'}"
        first = start(env, "optimize", str(path), "--run", RUN, "--storage", url)
        try:
            store = get_storage(url)
            wait_until(lambda: (run := store.get_run(RUN)) is not None and store.live_workers(run.id),
                       what="the first process to join")
            second = subprocess.run([sys.executable, "-m", "agentsearch", "optimize", str(path), "--run", RUN,
                                     "--storage", url], capture_output=True, text=True, env=env, timeout=120)
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=60)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert "running in another process" in line and "PostgreSQL" in line
