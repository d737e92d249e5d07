"""The store's contract for many workers: counters, set-once fields, leases and budget reservations
hold when many writers race (separate storages, each with its own engine and connections, in threads:
on PostgreSQL these are separate database sessions, as separate processes would be)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentsearch.evaluators import ExampleOutcome
from agentsearch.exceptions import StorageError
from agentsearch.lm import Usage
from agentsearch.store import CandidateStatus, DuplicateCandidate, get_storage

RACERS = 8


def race(storage_url: str, act: Callable[[Any, int], Any], racers: int = RACERS) -> list[Any]:
    """``act(store, i)`` from ``racers`` threads released at once, each with a storage of its own."""
    stores = [get_storage(storage_url) for _ in range(racers)]
    results: list[Any] = [None] * racers
    errors: list[BaseException] = []
    gate = threading.Barrier(racers)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = act(stores[i], i)
        except BaseException as exc:  # pragma: no cover - what the tests are about
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def dead_holder() -> str:
    pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{socket.gethostname()}:{pid.stdout.strip()}:dead"


def test_a_quota_taken_by_racing_workers_is_never_passed(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})

    def create(other, i: int) -> list[int]:
        made = []
        while (candidate := other.create_candidate(run.id, {"i": i}, f"h{i}", level="prompt", optimizer="tpe",
                                                   limit=20)) is not None:
            made.append(candidate.number)
        return made

    numbers = sorted(n for made in race(storage_url, create) for n in made)
    assert numbers == list(range(20))  # dense, unique, exactly the quota
    assert store.get_run(run.id).counted_candidates == 20
    # a repair does not count, and may be created past the quota
    extra = store.create_candidate(run.id, {}, "r", level="agent", optimizer="repair", limit=20, counted=False)
    assert extra is not None and extra.number == 20 and store.get_run(run.id).counted_candidates == 20


def test_workers_racing_to_one_spec_create_it_once(storage_url):
    """Eight workers create the same five specs at once, ``unique``: each spec is created by one of them, the
    others are handed that candidate; a spec not asked unique (a test's, a tool's) may still be written twice."""
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})

    def create(other, i: int) -> list[tuple[str, int, bool]]:
        made = []
        for spec in range(5):
            try:
                candidate = other.create_candidate(run.id, {"spec": spec}, f"h{spec}", level="prompt",
                                                   optimizer="tpe", limit=100, unique=True)
                made.append((candidate.spec_hash, candidate.id, True))
            except DuplicateCandidate as found:
                made.append((found.twin.spec_hash, found.twin.id, False))
        return made

    outcomes = [item for made in race(storage_url, create) for item in made]
    created = [(spec, cid) for spec, cid, new in outcomes if new]
    assert sorted(spec for spec, _ in created) == [f"h{spec}" for spec in range(5)]  # each spec once
    ids = dict(created)
    assert all(ids[spec] == cid for spec, cid, _ in outcomes)  # every other worker got that candidate
    assert [c.spec_hash for c in store.list_candidates(run.id)] == sorted(ids, key=ids.get)
    assert store.get_run(run.id).counted_candidates == 5
    store.create_candidate(run.id, {"spec": 0}, "h0", level="prompt", optimizer="tpe")
    assert len(store.list_candidates(run.id)) == 6


def test_run_notes_are_kept_in_order_for_every_reader(storage_url):
    store = get_storage(storage_url)
    run, other = store.create_run("r", "t", {}), store.create_run("o", "t", {})
    race(storage_url, lambda each, i: [each.add_run_note(run.id, "recombine", f"w{i} n{k}") for k in range(5)])
    notes = get_storage(storage_url).list_run_notes(run.id, "recombine")
    assert len(notes) == 40 and all(notes.index(f"w{i} n{k}") < notes.index(f"w{i} n{k + 1}")
                                    for i in range(RACERS) for k in range(4))
    assert store.list_run_notes(run.id, "recombine", last=3) == notes[-3:]
    store.add_run_note(run.id, "mcts", "another optimizer's note")
    store.add_run_note(other.id, "recombine", "another run's note")
    assert store.list_run_notes(run.id, "recombine") == notes and store.list_run_notes(10_000, "recombine") == []
    with pytest.raises(StorageError):
        store.add_run_note(10_000, "recombine", "no such run")


def test_the_seed_and_the_space_are_set_once_by_whoever_comes_first(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    seeds = race(storage_url, lambda other, i: other.seed_candidate(run.id, {"seed": i}, f"s{i}"))
    assert len({seed.id for seed in seeds}) == 1 and seeds[0].number == 0
    spaces = race(storage_url, lambda other, i: other.set_run_space(run.id, {"space": i}))
    assert len({s["space"] for s in spaces}) == 1 and store.get_run(run.id).space == spaces[0]
    assert store.create_candidate(run.id, {}, "h", level="prompt", optimizer="tpe").number == 1


def test_reservations_never_exceed_the_budget(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})

    def reserve(other, i: int) -> int:
        total = 0
        while granted := other.reserve_lm_calls(run.id, 3, 100):
            total += granted
        return total

    assert sum(race(storage_url, reserve)) == 100
    assert store.get_run(run.id).reserved_lm_calls == 100
    store.release_lm_calls(run.id, 7)
    assert store.reserve_lm_calls(run.id, 10, 100) == 7


def test_a_pending_candidate_is_claimed_by_one_worker_only(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    made = [store.create_candidate(run.id, {"i": i}, f"h{i}", level="prompt", optimizer="tpe") for i in range(5)]
    claims = race(storage_url, lambda other, i: [c.id for c in iter(
        lambda: other.claim_candidate(run.id, f"{socket.gethostname()}:{os.getpid()}:w{i}", 60.0), None)])
    flat = [cid for claimed in claims for cid in claimed]
    assert sorted(flat) == sorted(c.id for c in made)  # each claimed once, by one worker


def test_a_lease_passes_on_when_it_expires_or_its_holder_is_dead(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    me, other = f"{socket.gethostname()}:{os.getpid()}:me", "elsewhere:42:x"
    assert store.acquire_lease(run.id, "finish", other, 60.0)
    assert not store.acquire_lease(run.id, "finish", me, 60.0) and store.lease_holder(run.id, "finish") == other
    assert store.acquire_lease(run.id, "finish", other, 60.0)  # a holder renews its own
    store.release_lease(run.id, "finish", me)  # not mine: left alone
    assert store.lease_holder(run.id, "finish") == other
    assert store.acquire_lease(run.id, "space", other, -1.0)  # expired at once
    assert store.acquire_lease(run.id, "space", me, 60.0)
    dead = dead_holder()
    assert store.acquire_lease(run.id, "candidate:1", dead, 60.0)
    assert store.lease_holder(run.id, "candidate:1") is None  # a holder on this host whose pid is gone
    assert store.acquire_lease(run.id, "candidate:1", me, 60.0)
    assert store.renew_leases(me, 60.0) == 2
    store.release_leases(me)
    assert store.live_leases(run.id) == {"finish": other}


def test_the_first_worker_restarts_the_run_and_later_ones_join_it(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    candidate = store.create_candidate(run.id, {}, "h", level="prompt", optimizer="seed")
    evaluation = store.get_or_create_evaluation(candidate.id, "dev")
    store.add_example_results(evaluation.id, [ExampleOutcome("a", {}, 1.0, None, Usage(3, 1, 1), 0.1)])
    store.reserve_lm_calls(run.id, 50, 100)  # a dead worker's reservation
    store.set_run_status(run.id, "failed", "boom")
    first, second = f"{socket.gethostname()}:{os.getpid()}:a", "elsewhere:2:b"
    assert store.join_run(run.id, first) == 0
    record = store.get_run(run.id)
    assert record.status == "running" and record.stop_reason is None
    assert record.reserved_lm_calls == 3  # set back to what was spent
    assert store.join_run(run.id, second) == 1 and store.live_workers(run.id) == sorted([first, second])


def test_a_claimed_candidate_lease_ends_with_the_candidate(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    me = f"{socket.gethostname()}:{os.getpid()}:me"
    candidate = store.create_candidate(run.id, {}, "h", level="prompt", optimizer="tpe", holder=me)
    assert store.live_leases(run.id) == {f"candidate:{candidate.id}": me}
    assert store.claim_candidate(run.id, "elsewhere:2:x", 60.0) is None
    store.set_candidate_status(candidate.id, CandidateStatus.COMPLETE)
    assert store.live_leases(run.id) == {}


def test_writes_to_missing_ids_raise(storage_url):
    store = get_storage(storage_url)
    for write in (lambda: store.join_run(999, "h:1:x"), lambda: store.reserve_lm_calls(999, 1, 10),
                  lambda: store.set_run_space(999, {}), lambda: store.seed_candidate(999, {}, "h")):
        with pytest.raises(StorageError, match="does not exist"):
            write()
    assert store.get_candidate(999) is None and store.list_candidates(999) == []


def test_usage_booked_by_racing_workers_is_never_lost(storage_url):
    """Proposal, preflight and unscored calls add to counters on the run's row: 8 workers booking at
    once (32 workers' preflight checks did) must all count, not overwrite each other's sums."""
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})

    def book(other, i: int) -> None:
        for _ in range(10):
            other.add_proposer_usage(run.id, 1, 7, 0.5)
            other.add_unscored_usage(run.id, 2, 3)

    race(storage_url, book)
    usage = store.run_usage(run.id)
    assert (usage.lm_calls, usage.tokens, usage.cost_usd) == (RACERS * 10 * 3, RACERS * 10 * 10, RACERS * 10 * 0.5)


def test_a_database_error_from_optunas_storage_is_one_line_without_the_password():
    """Optuna's study storage shares the run's database: its failures (a full server) must reach the
    user as the store's one-line error, never as a traceback or with the URL's password."""
    import optuna
    from sqlalchemy.exc import OperationalError

    from agentsearch.store._rdb.storage import database_failure

    driver = OperationalError("connect", {}, Exception(
        "connection to postgresql://search:hunter2-secret@db:5432 failed: FATAL:  sorry, too many clients already\n"
        "second line"))
    try:
        raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from driver
    except optuna.exceptions.StorageInternalError as wrapped:
        failure = database_failure(wrapped, "the run's Optuna study")
    assert failure is not None and "\n" not in str(failure)
    assert "too many clients" in str(failure) and "hunter2-secret" not in str(failure)
    assert str(failure).startswith("the run's Optuna study: ")
    assert database_failure(ValueError("not a database's"), "x") is None
