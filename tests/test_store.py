from __future__ import annotations

import pytest
import sqlalchemy

from agentsearch.evaluators import ExampleOutcome
from agentsearch.exceptions import StorageError
from agentsearch.lm import Usage
from agentsearch.store import RDBStorage, get_storage


def _outcome(example_id: str, score: float, error: str | None = None) -> ExampleOutcome:
    return ExampleOutcome(example_id, {"label": "x"}, score, error, Usage(1, 10, 2, 0.001), 0.05)


def test_runs_candidates_evaluations_round_trip(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r1", "toy", {"name": "toy"})
    assert store.get_run("r1") == run and store.get_run(run.id) == run
    seed = store.create_candidate(run.id, {"a": 1}, "h0", level="prompt", optimizer="seed")
    child = store.create_candidate(run.id, {"a": 2}, "h1", level="prompt", optimizer="tpe", parents=(seed.id,),
                                   trial_number=1)
    assert (seed.number, child.number, child.parents) == (0, 1, (seed.id,))
    evaluation = store.get_or_create_evaluation(child.id, "dev")
    assert store.get_or_create_evaluation(child.id, "dev").id == evaluation.id
    store.add_example_results(evaluation.id, [_outcome("a", 1.0), _outcome("b", 0.0, "boom")])
    done = store.complete_evaluation(evaluation.id, 2.5)
    assert (done.status, done.score, done.n, done.n_errors, done.lm_calls, done.tokens) == ("complete", 0.5, 2, 1, 2, 24)
    assert [r.example_id for r in store.list_example_results(evaluation.id)] == ["a", "b"]
    store.add_proposer_usage(run.id, 3, 30, 0.01)
    usage = store.run_usage(run.id)
    assert (usage.lm_calls, usage.tokens) == (5, 54) and usage.cost_usd == pytest.approx(0.012)
    store.set_run_status(run.id, "stopped", "budget")
    assert store.get_run("r1").status == "stopped" and store.get_run("r1").finished_at is not None


def _fresh_evaluation(storage_url: str):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    candidate = store.create_candidate(run.id, {}, "h", level="prompt", optimizer="seed")
    return store, store.get_or_create_evaluation(candidate.id, "dev")


@pytest.mark.parametrize("pruned_because", [None, "pruned after 1 of 2 dev examples"])
def test_finished_evaluations_are_immutable(storage_url, pruned_because):
    store, evaluation = _fresh_evaluation(storage_url)
    store.add_example_results(evaluation.id, [_outcome("a", 1.0)])
    store.complete_evaluation(evaluation.id, 1.0, pruned_because=pruned_because)
    with pytest.raises(StorageError, match="immutable"):
        store.add_example_results(evaluation.id, [_outcome("b", 1.0)])


def test_a_batch_with_a_duplicate_is_refused_whole(storage_url):
    store, evaluation = _fresh_evaluation(storage_url)
    store.add_example_results(evaluation.id, [_outcome("a", 1.0)])
    with pytest.raises(StorageError):
        store.add_example_results(evaluation.id, [_outcome("b", 1.0), _outcome("a", 1.0)])
    assert [r.example_id for r in store.list_example_results(evaluation.id)] == ["a"]


def test_a_candidate_gets_its_trial_number_later_and_a_missing_one_is_an_error(storage_url):
    store, evaluation = _fresh_evaluation(storage_url)
    store.set_candidate_trial(evaluation.candidate_id, 0)
    store.set_candidate_trial(evaluation.candidate_id, 0)  # idempotent
    assert store.get_candidate(evaluation.candidate_id).trial_number == 0
    with pytest.raises(StorageError, match="candidate 999999 does not exist"):
        store.set_candidate_trial(999_999, 0)


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url):
    store = RDBStorage(sqlite_url)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_old_schema_asks_for_upgrade_command(sqlite_url):
    store = RDBStorage(sqlite_url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE agentsearch_alembic_version SET version_num = '0000'")
    store.engine.dispose()
    with pytest.raises(StorageError, match="agentsearch db upgrade --storage"):
        RDBStorage(sqlite_url)


def test_schema_is_documented_tables(storage_url):
    store = get_storage(storage_url)
    names = set(sqlalchemy.inspect(store.engine).get_table_names())
    assert {"runs", "candidates", "evaluations", "example_results", "agentsearch_alembic_version"} <= names


def test_unreachable_database_is_a_storage_error():
    with pytest.raises(StorageError, match="cannot open storage"):
        get_storage("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from agentsearch.store import get_storage; get_storage({url!r}).list_runs()"
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors


def test_best_candidates_ranks_complete_dev_scores_then_the_rest(storage_url):
    store = get_storage(storage_url)
    run = store.create_run("r", "t", {})
    other = store.create_run("other", "t", {})
    scores = {0: [1.0, 0.0], 1: None, 2: [1.0, 1.0], 3: [0.0, 0.0], 4: [1.0, 0.0], 5: "pruned"}
    ids = {}
    for number, results in scores.items():
        candidate = store.create_candidate(run.id, {"n": number}, f"h{number}", level="prompt", optimizer="tpe")
        ids[number] = candidate.id
        if results is None:
            continue
        evaluation = store.get_or_create_evaluation(candidate.id, "dev")
        if results == "pruned":
            store.add_example_results(evaluation.id, [_outcome("a", 1.0)])
            store.complete_evaluation(evaluation.id, 1.0, pruned_because="weak")
            continue
        store.add_example_results(evaluation.id, [_outcome(f"e{i}", s) for i, s in enumerate(results)])
        test = store.get_or_create_evaluation(candidate.id, "test")  # a test score must not rank a candidate
        store.add_example_results(test.id, [_outcome("t", 1.0 - results[0])])
        store.complete_evaluation(test.id, 1.0)
        store.complete_evaluation(evaluation.id, 1.0)
    best = store.create_candidate(other.id, {"n": 9}, "h9", level="prompt", optimizer="tpe")
    evaluation = store.get_or_create_evaluation(best.id, "dev")
    store.add_example_results(evaluation.id, [_outcome("a", 1.0)])
    store.complete_evaluation(evaluation.id, 1.0)
    ranked = [c.number for c in store.best_candidates(run.id, 10)]
    assert ranked == [2, 0, 4, 3, 1, 5]  # 1.0, then 0.5 by number, 0.0, then no complete dev score
    assert [c.id for c in store.best_candidates(run.id, 2)] == [ids[2], ids[0]]


def test_runs_started_at_once_never_collide_on_a_generated_name(storage_url):
    """Several processes (here: storages with engines of their own, in threads) create a run of the same
    generated name at the same moment: each gets a distinct name, none fails."""
    import threading

    from agentsearch.exceptions import StorageError

    stores = [get_storage(storage_url) for _ in range(6)]
    names, errors, gate = [], [], threading.Barrier(len(stores))

    def start(store) -> None:
        gate.wait()
        try:
            names.append(store.create_run("toy-20261130-120000", "toy", {}, unique=True).name)
        except StorageError as exc:  # pragma: no cover - the failure this test is about
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(names)) == 6 and "toy-20261130-120000" in names
    with pytest.raises(StorageError, match="already exists"):
        stores[0].create_run("toy-20261130-120000", "toy", {})  # a name the user chose is never renamed


def test_an_evaluation_keeps_its_most_common_error(storage_url):
    from agentsearch.evaluators import ExampleOutcome
    from agentsearch.lm import Usage

    store = get_storage(storage_url)
    run = store.create_run("e", "toy", {})
    candidate = store.create_candidate(run.id, {}, "h", level="prompt", optimizer="seed")
    evaluation = store.get_or_create_evaluation(candidate.id, "dev")
    errors = ["AdapterParseError: no label in 'foo'\nmore", "AdapterParseError: no label in 'foo'\nother", "Boom", None]
    store.add_example_results(evaluation.id, [ExampleOutcome(f"d{i}", None, 0.0, error, Usage(), 0.1)
                                              for i, error in enumerate(errors)])
    done = store.complete_evaluation(evaluation.id, 1.0)
    assert done.top_error == "AdapterParseError: no label in 'foo'" and done.top_error_count == 2
    assert done.n_errors == 3


def test_a_running_run_whose_process_is_gone_is_lost_at_once(sqlite_url):
    """kill -9 leaves a fresh heartbeat behind: on the same host, the missing pid tells it died."""
    import socket
    import subprocess
    import sys

    import sqlalchemy

    store = get_storage(sqlite_url)
    mine = store.create_run("mine", "toy", {})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = store.create_run("dead", "toy", {})
    with sqlalchemy.create_engine(sqlite_url).begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE runs SET owner = :owner WHERE id = :id"),
                           {"owner": f"{socket.gethostname()}:{gone.stdout.strip()}", "id": dead.id})
    assert not store.get_run("mine").lost and store.get_run("dead").lost
    assert store.get_run("mine").owner == mine.owner and mine.owner.endswith(f":{__import__('os').getpid()}")


def test_text_with_a_nul_is_stored_in_every_text_field_on_both_databases(storage_url):
    """PostgreSQL refuses NUL in text (SQLite keeps it): a design raising ``ValueError('no answer\\x00here')``
    stopped a PostgreSQL run with a StorageError, again on every resume. Every text the store writes
    is now kept: as written on SQLite, visibly escaped (``\\x00``) on PostgreSQL; JSON as written on both."""
    def kept_as(text: str) -> str:
        return text if storage_url.startswith("sqlite") else text.replace("\x00", "\\x00")

    nul = "no answer\x00here"
    store = get_storage(storage_url)
    run = store.create_run("r\x00n", "t\x00k", {"instructions": nul})
    candidate = store.create_candidate(run.id, {"instructions": nul}, "h", level="prompt", optimizer="seed")
    store.set_candidate_status(candidate.id, "failed", note=nul)
    evaluation = store.get_or_create_evaluation(candidate.id, "dev")
    store.add_example_results(evaluation.id, [
        ExampleOutcome("e\x001", {"label": nul}, 0.0, f"ValueError: {nul}", Usage(1, 10, 2, 0.0), 0.05)])
    store.complete_evaluation(evaluation.id, 1.0, pruned_because=nul)
    store.add_examples(run.id, "dev", [("x\x00y", {"sentence": nul}, {"label": nul})])
    store.add_run_note(run.id, "meta", nul)
    store.set_run_status(run.id, "stopped", nul)

    again = get_storage(storage_url)
    kept = again.get_run(run.id)
    assert (kept.name, kept.task_name, kept.stop_reason) == (kept_as("r\x00n"), kept_as("t\x00k"), kept_as(nul))
    assert kept.task == {"instructions": nul}
    (candidate,) = again.list_candidates(run.id)
    assert (candidate.note, candidate.spec) == (kept_as(nul), {"instructions": nul})
    (result,) = again.list_example_results(evaluation.id)
    assert (result.example_id, result.error, result.prediction) == (
        kept_as("e\x001"), kept_as(f"ValueError: {nul}"), {"label": nul})
    (evaluated,) = again.list_evaluations(run_id=run.id)
    assert (evaluated.note, evaluated.top_error) == (kept_as(nul), kept_as(f"ValueError: {nul}"))
    (example,) = again.list_examples(run.id, "dev")
    assert (example.example_id, example.inputs, example.gold) == (kept_as("x\x00y"), {"sentence": nul}, {"label": nul})
    assert again.list_run_notes(run.id, "meta") == [kept_as(nul)]


def test_a_run_whose_program_raises_a_nul_finishes_on_postgresql(write_task, task_dir, postgres_url, fake_lm):
    """The case as met: a program's error text with a NUL, stored as the example's error, once stopped
    the run (and every resume) with a StorageError on PostgreSQL."""
    import agentsearch

    (task_dir / "nul_program.py").write_text(
        "import dspy\n\n\n"
        "class Nul(dspy.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.answer = dspy.Predict('sentence -> label')\n\n"
        "    def forward(self, sentence):\n"
        "        if sentence.endswith('1'):\n"
        "            raise ValueError('no answer\\x00here')\n"
        "        return self.answer(sentence=sentence)\n")
    task = write_task(**{"program.module": "nul_program:Nul", "search.max_candidates": 3})
    result = agentsearch.optimize(task, storage=postgres_url)
    assert result.run.status == "finished"
    store = get_storage(postgres_url)
    errors = [r.error for e in store.list_evaluations(run_id=result.run.id) for r in store.list_example_results(e.id)
              if r.error]
    assert errors and all("no answer\\x00here" in error for error in errors)
