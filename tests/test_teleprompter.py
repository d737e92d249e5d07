"""AgentSearch as a DSPy optimizer: ``compile`` takes the user's program, dspy.Examples and a DSPy
metric, searches its predictors' prompts through the same loop and store, and returns an optimized
deep copy of the user's class that plain DSPy saves and loads."""

from __future__ import annotations

import dspy
import pytest

import agentsearch
from agentsearch.exceptions import TaskSpecError
from agentsearch.store import get_storage
from tests.conftest import sentiment_rows
from tests.fakes import same_prompts
from tests.user_programs import KeyThenLabel


def examples(offset: int, count: int) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs("sentence") for row in sentiment_rows(offset)[:count]]


def exact(example, prediction, trace=None) -> float:
    return float(example.label == prediction.label)


@pytest.fixture
def teleprompter(sqlite_url):
    def make(**options):
        settings = {"max_candidates": 8, "num_instructions": 2, "max_demos": 4, "num_demo_sets": 3,
                    "bootstrap_examples": 10, **options}
        return agentsearch.AgentSearch(metric=exact, lm=dspy.LM("fake/keyword", num_retries=0, cache=True),
                                       storage=sqlite_url, **settings)
    return make


def test_compile_returns_an_optimized_copy_of_the_users_class(teleprompter, fake_lm, sqlite_url, tmp_path):
    fake_lm.chat_demos_help = True  # the fake answers right in chat with two demos: demos are worth finding
    student = KeyThenLabel()
    optimizer = teleprompter()
    compiled = optimizer.compile(student, trainset=examples(0, 20), valset=examples(100, 12))

    assert isinstance(compiled, KeyThenLabel) and compiled is not student
    assert all(not p.demos for _, p in student.named_predictors())  # the student is untouched
    result = optimizer.result
    assert result.best.dev_score > result.seed.dev_score  # demos help this fake: the search found them
    best = {node.name: node for node in agentsearch.CandidateSpec.model_validate(result.best.candidate.spec).predictors}
    for name, predictor in compiled.named_predictors():
        assert predictor.signature.instructions == best[name].instructions
        assert len(predictor.demos) == len(best[name].demo_ids) >= 2
    # the run is in the store like any other, and its calls are all booked
    runs = get_storage(sqlite_url).list_runs()
    assert [r.name for r in runs] == [result.run.name] and result.run.name.startswith("compile-KeyThenLabel-")
    assert fake_lm.calls == get_storage(sqlite_url).run_usage(result.run.id).lm_calls

    # plain DSPy saves it and loads it into a fresh instance of the user's class: the same prompts
    path = tmp_path / "compiled.json"
    compiled.save(str(path))
    fresh = KeyThenLabel()
    fresh.load(str(path))
    same_prompts(compiled, fresh, [{"key_phrase": "acting"}, {"label": "negative"}] * 2, ["great acting", "dull"])

    # compiling again continues the same (finished) run: nothing is scored twice
    calls = fake_lm.calls
    again = teleprompter().compile(KeyThenLabel(), trainset=examples(0, 20), valset=examples(100, 12))
    assert fake_lm.calls == calls and len(get_storage(sqlite_url).list_runs()) == 1
    assert [p.demos for _, p in again.named_predictors()] == [p.demos for _, p in compiled.named_predictors()]


@pytest.mark.parametrize(("call", "message"), [
    (lambda t: t.compile(dspy.Predict("sentence -> label"), trainset=[]), "trainset is empty"),
    (lambda t: t.compile(lambda **kw: None, trainset=examples(0, 4)), "not a dspy.Module"),
    (lambda t: t.compile(KeyThenLabel(), trainset=[dspy.Example(sentence="a", label="b")]), "names no inputs"),
    (lambda t: t.compile(KeyThenLabel(), trainset=[*examples(0, 2), {"sentence": "x"}]), "not a dspy.Example"),
])
def test_compile_refuses_bad_input_in_one_line(teleprompter, fake_lm, call, message, sqlite_url):
    with pytest.raises(TaskSpecError, match=message):
        call(teleprompter())


def test_a_compile_killed_mid_search_resumes_with_no_finished_evaluation_repeated(tmp_path):
    """kill -9 in the middle of the search (after 40 stored example results), then the same compile
    again: the fake LM (DSPy's cache off in these processes, so every call reaches it) answers the
    killed and the resumed process together exactly as many calls as one uninterrupted compile, plus
    the resumed process's preflight check; the candidates are the uninterrupted compile's."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    def child(url: str, kill_after: int, cache: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / cache), "TMPDIR": str(tmp_path / "tmp")}
        (tmp_path / "tmp").mkdir(exist_ok=True)
        return subprocess.run([sys.executable, "-m", "tests.compile_child", url, str(kill_after)], capture_output=True,
                              text=True, env=env, cwd=Path(__file__).parent.parent, timeout=600)

    whole = child(f"sqlite:///{tmp_path / 'whole.db'}", 0, "c1")
    assert whole.returncode == 0, whole.stderr[-2000:]
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    killed = child(url, 40, "c2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    store = get_storage(url)
    (run,) = store.list_runs()
    stored = [(e.id, r.example_id) for e in store.list_evaluations(run_id=run.id) for r in store.list_example_results(e.id)]
    assert len(stored) == 40 and run.status == "running"
    killed_calls = store.run_usage(run.id).lm_calls  # what the killed process made and kept
    resumed = child(url, 0, "c3")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    first, second = json.loads(whole.stdout), json.loads(resumed.stdout)
    assert second["run"] == run.name and second["best_dev"] == first["best_dev"] and second["demos"] == first["demos"]
    assert killed_calls + second["calls"] == first["calls"] + 1  # + the resumed process's preflight
    results = [(e.candidate_id, r.example_id) for e in store.list_evaluations(run_id=run.id)
               for r in store.list_example_results(e.id)]
    assert len(results) == len(set(results))
    whole_store = get_storage(f"sqlite:///{tmp_path / 'whole.db'}")
    (whole_run,) = whole_store.list_runs()
    assert [(c.spec_hash, c.status) for c in store.list_candidates(run.id)] == \
        [(c.spec_hash, c.status) for c in whole_store.list_candidates(whole_run.id)]


def test_compile_searches_a_chain_of_thought_student_and_its_demos_keep_the_reasoning(teleprompter, fake_lm):
    fake_lm.chat_demos_help = True
    student = dspy.ChainOfThought("sentence -> label")
    compiled = teleprompter().compile(student, trainset=examples(0, 20), valset=examples(100, 12))
    assert isinstance(compiled, dspy.ChainOfThought) and compiled is not student
    (name, predictor), = compiled.named_predictors()
    assert name == "predict" and predictor.demos
    assert all({"sentence", "reasoning", "label"} <= set(dict(demo)) for demo in predictor.demos)


def test_compile_scores_the_student_with_its_bootstrapped_demos_first(teleprompter, fake_lm, sqlite_url):
    """Trial 1 of a compile is BootstrapFewShot's program: every predictor as written (instructions,
    chat) with the demo set that leads with the student's own passing traces, in full (then one
    trial per demo set, a third of the candidates: here one)."""
    from agentsearch.search_space import SearchSpace

    optimizer = teleprompter(max_candidates=3, num_instructions=4)
    optimizer.compile(KeyThenLabel(), trainset=examples(0, 20), valset=examples(100, 12))
    storage = get_storage(sqlite_url)
    run = optimizer.result.run
    space = SearchSpace.from_dict(storage.get_run(run.id).space)
    seed, first = (agentsearch.CandidateSpec.model_validate(c.spec)
                   for c in sorted(storage.list_candidates(run.id), key=lambda c: c.number)[:2])
    for written, node in zip(seed.predictors, first.predictors):
        assert (node.instructions, node.format, node.module) == (written.instructions, written.format, "predict")
        assert node.demo_ids == space.node_demos(node.name, space.demo_sets[0][:4]) and node.demo_ids


def _compile_child_on(tmp_path, stderr_to_terminal: bool) -> tuple[int, str]:
    """tests/compile_child.py with its stderr on a 100x40 pseudo-terminal, or on a pipe; its exit code
    and all it wrote to stderr."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    from pathlib import Path

    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "cache"), "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "tests.compile_child", f"sqlite:///{tmp_path / 'runs.db'}", "0"]
    root = Path(__file__).parent.parent
    if not stderr_to_terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=600)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, env=env, cwd=root)
    os.close(follower)
    written = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end (EIO on Linux)
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    return child.wait(timeout=600), written.decode("utf-8", "replace")


def test_compile_on_a_terminal_shows_the_live_display_under_its_log_lines(tmp_path):
    """As DSPy users see bars in a terminal: the CLI's live display (candidates scored of the budget,
    best dev, LM calls) with each log line printed once above it; on a pipe the log lines alone."""
    import re

    code, shown = _compile_child_on(tmp_path, stderr_to_terminal=True)
    assert code == 0, shown[-2000:]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # the terminal's control sequences
    assert re.search(r"candidates .*━.* \d+/8 ", text), text[-2000:]  # the bar, the count of 8
    assert "best dev" in text and "LM calls" in text
    for number in range(3):  # a log line, not a redrawn frame: once each
        assert len(re.findall(rf"candidate #{number} \[", text)) == 1, text[-3000:]

    (tmp_path / "piped").mkdir()
    code, piped = _compile_child_on(tmp_path / "piped", stderr_to_terminal=False)
    assert code == 0, piped[-2000:]
    assert "INFO agentsearch: candidate #0 [" in piped
    assert "━" not in piped and "\x1b[" not in piped  # no frames in a log
