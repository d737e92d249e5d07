"""AgentSearch as a DSPy user adopts it: what was scored is what comes back under the user's own
``dspy.LM``; the LM is called as the user configured it (model, server, key, options) and a
configuration error stops before anything is scored; the constructor takes DSPy's names; progress
goes through logging; user programs are searched prompts first, kinds on top.

Every test talks to the fake OpenAI-compatible server (``agentsearch.testing``), the real HTTP path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import dspy
import pytest

import agentsearch
from agentsearch._report import best_candidate
from agentsearch.exceptions import LMUnavailableError, TaskSpecError
from agentsearch.search_space import (
    build_program,
    module_lifts,
    parse_spec,
    prompt_level,
    stages_prompt_first,
)
from agentsearch.store import get_storage
from agentsearch.testing import FakeOpenAIServer
from tests.conftest import sentiment_rows
from tests.user_programs import KeyThenLabel

ROOT = Path(__file__).parent.parent
ANSWERS = {"label": ["positive", "negative"], "key_phrase": ["the acting", "the plot"]}
KEY = "sk-dropin-test-4f1c9a2b7e"


def examples(offset: int, count: int) -> list[dspy.Example]:
    return [dspy.Example(**row).with_inputs("sentence") for row in sentiment_rows(offset)[:count]]


def exact(example, prediction, trace=None) -> float:
    return float(example.label == prediction.label)


@pytest.fixture
def server():
    # answers picked by the whole request: a search LM sending other options than the user's would score otherwise
    fake = FakeOpenAIServer(latency_s=0.0, answers=ANSWERS, api_key=KEY, answer_by="request").start()
    yield fake
    fake.stop()


def user_lm(server: FakeOpenAIServer, **options) -> dspy.LM:
    """The LM a user writes: DSPy's default engine, their key, their server, DSPy's cache off."""
    return dspy.LM("openai/fake", api_base=server.base_url, api_key=KEY, cache=False,
                   **{"max_tokens": 1000, "top_p": 0.9, **options})


def user_score(program: dspy.Module, lm: dspy.LM, devset: list[dspy.Example]) -> float:
    """The program scored as the user would: ``dspy.Evaluate`` under their LM."""
    with dspy.context(lm=lm):
        evaluate = dspy.Evaluate(devset=devset, metric=exact, num_threads=1, display_progress=False,
                                 max_errors=len(devset) + 1, provide_traceback=False)
        results = evaluate(program).results  # its .score is a rounded percentage
        return sum(float(score) for _, _, score in results) / len(results)


@pytest.mark.parametrize("prompt_format", ["chat", "json", "xml", "completion"])
def test_every_scored_candidate_scores_the_same_under_the_users_own_lm(server, sqlite_url, monkeypatch, prompt_format):
    """For each format and every kind a predictor of the user's program can take: each candidate the
    run scored on all of dev, rebuilt as ``compile`` returns its best (the user's class), scores
    exactly its stored dev score under a plain ``dspy.LM`` (no JSON mode declared, no cache, no
    agentsearch LM anywhere). The returned program scores the best's."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the key comes from the user's dspy.LM alone
    lm = user_lm(server)
    dev = examples(100, 8)
    optimizer = agentsearch.AgentSearch(exact, lm=lm, storage=sqlite_url, max_candidates=14, levels=["prompt", "module"],
                                        formats=[prompt_format], prompt_share=0.2, num_instructions=2, max_demos=2,
                                        num_demo_sets=2, bootstrap_examples=6, pruner="none", verbose=False)
    compiled = optimizer.compile(KeyThenLabel(), trainset=examples(0, 12), valset=dev)
    result = optimizer.result
    store = get_storage(sqlite_url)
    seen_kinds, checked = set(), 0
    for candidate in store.list_candidates(result.run.id):
        dev_eval = next((e for e in store.list_evaluations(candidate_id=candidate.id) if e.split == "dev"), None)
        if dev_eval is None or dev_eval.status != "complete":
            continue
        spec = parse_spec(candidate.spec)
        program = build_program(spec, result.run.space["demos"] if candidate.number else {}, None, pin_lm=False)
        assert user_score(program.program, lm, dev) == pytest.approx(dev_eval.score), candidate.spec
        seen_kinds |= {node.module for node in spec.predictors}
        assert {node.format for node in spec.predictors} <= {"chat", prompt_format}
        checked += 1
    assert seen_kinds == {"predict", "chain_of_thought", "self_consistency", "best_of_n"} and checked >= 10
    assert user_score(compiled, lm, dev) == pytest.approx(result.best.dev_score)
    assert result.best.dev_score > 0  # the fake answers: a score of 0 everywhere would prove nothing


def test_the_key_given_to_dspy_lm_is_used_and_never_stored_shown_or_exported(server, sqlite_url, tmp_path,
                                                                             monkeypatch, capsys, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="agentsearch")
    optimizer = agentsearch.AgentSearch(exact, lm=user_lm(server), storage=sqlite_url, max_candidates=3,
                                        num_instructions=2, max_demos=2, num_demo_sets=2, bootstrap_examples=4)
    compiled = optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))
    assert server.stats().faults.get("unauthorized", 0) == 0 and server.stats().requests > 0
    path = tmp_path / "best.json"
    optimizer.result.save(path)
    compiled.save(str(tmp_path / "state.json"))
    written = [Path(sqlite_url.removeprefix("sqlite:///")).read_bytes(), path.read_bytes(),
               (tmp_path / "state.json").read_bytes(), capsys.readouterr().err.encode(), caplog.text.encode(),
               str(optimizer.result).encode(), repr(optimizer.result).encode()]
    assert not [text for text in written if KEY.encode() in text]


def test_a_model_with_no_provider_is_refused_before_anything_is_scored(server, sqlite_url, write_task, tmp_path):
    with pytest.raises(TaskSpecError, match=r"^AgentSearch: lm: 'fake' names no provider; write provider/model"):
        agentsearch.AgentSearch(exact, lm=dspy.LM("fake", api_base=server.base_url, api_key=KEY))
    optimizer = agentsearch.AgentSearch(exact, storage=sqlite_url)
    with dspy.context(lm=dspy.LM("fake", api_base=server.base_url)), pytest.raises(TaskSpecError, match="lm: 'fake'"):
        optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))
    assert server.stats().requests == 0 and not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    task = write_task(lm={"model": "fake", "api_base": server.base_url})
    done = subprocess.run([sys.executable, "-m", "agentsearch", "validate", str(task)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: {task}: lm.model: 'fake' names no provider; write provider/model, e.g. openai/fake for an "
        "OpenAI-compatible server (with api_base), or local/smollm2-135m for the embedded model"]


@pytest.mark.parametrize(("server_options", "lm_options", "cause"), [
    ({"models": ["fake"]}, {"model": "openai/nosuch"}, "The model `nosuch` does not exist"),
    ({"unsupported": ["top_p"]}, {"options": {"top_p": 0.5}}, "Unsupported parameter: 'top_p'"),
])
def test_a_request_the_provider_refuses_stops_the_run_with_exit_3_and_nothing_scored(
        write_task, tmp_path, server_options, lm_options, cause):
    from agentsearch.testing import running_server

    with running_server(latency_s=0.0, answers=ANSWERS, **server_options) as fake:
        task = write_task(lm={"model": "openai/fake", "api_base": fake.base_url, **lm_options})
        url = f"sqlite:///{tmp_path / 'runs.db'}"
        done = subprocess.run([sys.executable, "-m", "agentsearch", "optimize", str(task), "--storage", url],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300,
                              env={**os.environ, "OPENAI_API_KEY": "sk-env-key-0123456789"})
        assert fake.stats().requests == 0  # the one refused preflight request answered no chat completion
    assert done.returncode == 3, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "misconfigured: " in line and cause in line and "Nothing was scored" in line
    store = get_storage(url)
    (run,) = store.list_runs()
    assert run.status == "failed" and store.list_evaluations(run_id=run.id) == []


def test_a_missing_key_is_told_as_it_applies_to_a_task_file_and_to_python(server, write_task, tmp_path, sqlite_url,
                                                                          monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    task = write_task(lm={"model": "openai/fake", "api_base": server.base_url})
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    done = subprocess.run([sys.executable, "-m", "agentsearch", "optimize", str(task), "--storage",
                           f"sqlite:///{tmp_path / 'runs.db'}"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env=env)
    assert done.returncode == 3
    assert "no API key: set OPENAI_API_KEY in the environment (a task file holds no key)" in done.stderr
    assert "dspy.LM" not in done.stderr
    optimizer = agentsearch.AgentSearch(exact, lm=dspy.LM("openai/fake", api_base=server.base_url), storage=sqlite_url,
                                        verbose=False)
    with pytest.raises(LMUnavailableError, match=r"no API key: pass api_key=\.\.\. to dspy\.LM\(\.\.\.\), or set "
                                                 "OPENAI_API_KEY in the environment"):
        optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))


def test_two_servers_under_one_model_name_never_answer_from_each_others_cache(monkeypatch):
    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig

    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-0123456789")
    first = FakeOpenAIServer(latency_s=0.0, answers={"label": ["positive"]}).start()
    second = FakeOpenAIServer(latency_s=0.0, answers={"label": ["negative"]}).start()
    try:
        asked = dspy.Predict("sentence -> label")
        answers = []
        for fake in (first, second, first):
            with dspy.context(lm=build_lm(LMConfig(model="openai/fake", api_base=fake.base_url))):
                answers.append(asked(sentence="a film").label)
        assert answers == ["positive", "negative", "positive"]
        assert (first.stats().requests, second.stats().requests) == (1, 1)  # the third call: first's own cache
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(("options", "message"), [
    ({"num_thread": 4}, "unknown argument 'num_thread'; did you mean 'num_threads'?"),
    ({"max_bootstraped_demos": 2}, "did you mean 'max_bootstrapped_demos'?"),
    ({"auto": "huge"}, "auto='huge'; use one of 'light', 'medium', 'heavy'"),
    ({"auto": "light", "max_candidates": 5}, "auto sets max_candidates and max_lm_calls"),
    ({"num_threads": 0}, "num_threads must be a whole number from 1 to 256"),
    ({"num_instructions": 0}, "num_instructions: Input should be greater than 0"),
    ({"levels": ["prompt", "modules"]}, "levels.1: Input should be 'prompt', 'module' or 'agent'"),
])
def test_the_constructor_checks_its_arguments_at_once(options, message):
    with pytest.raises(TaskSpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        agentsearch.AgentSearch(exact, **options)


def test_dspy_names_map_to_the_search_and_auto_sets_the_budget(server, sqlite_url, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    light = agentsearch.AgentSearch(exact, auto="light")
    assert (light.max_candidates, light.max_lm_calls) == (10, 500)
    optimizer = agentsearch.AgentSearch(exact, lm=user_lm(server, top_p=0.5, max_tokens=None), storage=sqlite_url,
                                        num_threads=3,
                                        max_bootstrapped_demos=2, max_labeled_demos=3, max_candidates=2,
                                        num_instructions=2, verbose=False)
    optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))
    task = optimizer.result.run.task
    assert task["concurrency"] == 3 and task["search"]["max_demos"] == 3
    # the user's LM as they configured it: provider defaults (not ours), their options, never their key
    assert {key: task["lm"][key] for key in ("temperature", "max_tokens", "options")} == \
        {"temperature": None, "max_tokens": None, "options": {"top_p": 0.5}}
    assert KEY not in json.dumps(task)


def test_progress_is_logged_and_the_result_prints_as_a_summary(server, sqlite_url, monkeypatch, caplog):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="agentsearch")
    optimizer = agentsearch.AgentSearch(exact, lm=user_lm(server), storage=sqlite_url, max_candidates=3,
                                        max_lm_calls=400, num_instructions=2)
    optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))
    messages = [record.getMessage() for record in caplog.records if record.name == "agentsearch"]
    assert messages[0] == "checking the LM: openai/fake"
    assert any(m.startswith("candidate #0 [program: predict] dev: ") and "| best dev " in m and " left)" in m
               for m in messages)
    assert messages[-1].startswith("best: candidate #")
    text = str(optimizer.result)
    assert text.startswith(f"run {optimizer.result.run.name}: finished") and "best dev: " in text
    assert len(repr(optimizer.result)) < 300 and max(map(len, text.splitlines())) <= 80


def test_a_search_of_a_user_program_holds_its_first_trials_to_prompts_then_lifts_the_best_cheapest_first():
    from agentsearch.search_space import ModuleSpaceConfig, SearchSpace

    space = SearchSpace(
        signature="sentence -> label", instructions=("",), demo_sets=(("a", "b"),), retrieval_pool=(),
        demos={}, formats=("chat",), max_demos=2, levels=("prompt", "module"), modules=ModuleSpaceConfig(),
        program={"reference": "tests.user_programs:build", "nodes": [
            {"name": "extract", "signature": "sentence -> key_phrase", "instructions": ["", "x"]},
            {"name": "classify", "signature": "sentence, key_phrase -> label", "instructions": ["", "y"]}]})
    assert stages_prompt_first(space)
    assert prompt_level(space) == {"extract.module": "predict", "classify.module": "predict"}
    best = {"program.n_demos": 2, "program.demo_set": 0, "extract.module": "predict", "extract.instruction": 1,
            "classify.module": "predict", "classify.instruction": 0}
    lifts = [{name: lift.params[f"{name}.module"] for name in ("extract", "classify")}
             for lift in module_lifts(space, [best])]
    assert lifts == [
        {"extract": "chain_of_thought", "classify": "predict"}, {"extract": "predict", "classify": "chain_of_thought"},
        {"extract": "chain_of_thought", "classify": "chain_of_thought"},
        {"extract": "self_consistency", "classify": "predict"}, {"extract": "predict", "classify": "self_consistency"},
        {"extract": "self_consistency", "classify": "self_consistency"},
        {"extract": "best_of_n", "classify": "predict"}, {"extract": "predict", "classify": "best_of_n"},
        {"extract": "best_of_n", "classify": "best_of_n"}]
    assert all(lift.params["extract.instruction"] == 1 for lift in module_lifts(space, [best]))
    # the prompt stage: prompt_share of the candidates, and no more than prompt_share of the budget buys
    from types import SimpleNamespace

    from agentsearch.optimizers._optuna import prompt_trials

    def task(budget):
        return SimpleNamespace(search=SimpleNamespace(space_candidates=12, prompt_share=0.5),
                               budget=SimpleNamespace(max_lm_calls=budget))

    assert prompt_trials(task(None), space, 50) == 6 and prompt_trials(task(10_000), space, 50) == 6
    assert prompt_trials(task(300), space, 50) == 4  # 150 calls buy 3 candidates besides the seed's trial
    assert prompt_trials(task(300), space, 500) == 2  # at least one prompt-level candidate


def test_compile_with_module_level_starts_with_prompt_level_candidates(server, sqlite_url, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    optimizer = agentsearch.AgentSearch(exact, lm=user_lm(server), storage=sqlite_url, max_candidates=10,
                                        levels=["prompt", "module"], num_instructions=2, verbose=False)
    optimizer.compile(KeyThenLabel(), trainset=examples(0, 8), valset=examples(100, 6))
    store = get_storage(sqlite_url)
    kinds = [{node.module for node in parse_spec(c.spec).predictors} for c in store.list_candidates(optimizer.result.run.id)]
    first_module = next(i for i, k in enumerate(kinds) if k != {"predict"})
    # search.prompt_share (half) of the trials, the seed's included, at the prompt level (a trial that repeats a
    # known candidate makes none); then the lifts, chain of thought on one predictor first
    assert first_module >= 3 and kinds[first_module] == {"chain_of_thought", "predict"}


def test_a_seed_whose_every_answer_fails_to_parse_says_which_setting_searches_formats(sqlite_url, monkeypatch, caplog):
    class Verdict(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.judge = dspy.Predict("sentence -> ok: bool")

        def forward(self, sentence: str) -> dspy.Prediction:
            return self.judge(sentence=sentence)

    fake = FakeOpenAIServer(latency_s=0.0, answers={"ok": ["perhaps"]}).start()  # no bool: every answer unparsable
    try:
        caplog.set_level(logging.INFO, logger="agentsearch")
        rows = [dspy.Example(sentence=f"s {i}", ok=True).with_inputs("sentence") for i in range(8)]
        optimizer = agentsearch.AgentSearch(lambda e, p, trace=None: float(e.ok == p.ok), storage=sqlite_url,
                                            lm=dspy.LM("openai/fake", api_base=fake.base_url, api_key=KEY),
                                            max_candidates=2, num_instructions=2)
        optimizer.compile(Verdict(), trainset=rows[:4], valset=rows[4:])
    finally:
        fake.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("every dev answer of your program")]
    assert said == ["every dev answer of your program failed to parse under DSPy's chat adapter (a small model often "
                    "writes another format): let the search try others too, formats=[\"chat\", \"json\", "
                    "\"completion\"] (AgentSearch) or search.formats (a task file)"]


CHILD = '''
import json, sys
import dspy, agentsearch
sys.path.insert(0, {root!r})
from tests.test_dspy_dropin import KEY, examples, exact
{program}
lm = dspy.LM("openai/fake", api_base={base!r}, api_key=KEY, cache=False)
optimizer = agentsearch.AgentSearch(exact, lm=lm, storage={url!r}, max_candidates=6, levels=["prompt", "module"],
                                    formats=["chat", "json"], num_instructions=2, max_demos=2, prompt_share=0.3)
compiled = optimizer.compile(Program(), trainset=examples(0, 10), valset=examples(100, 6))
with dspy.context(lm=lm):
    answers = [compiled(**ex.inputs()).label for ex in examples(100, 6)]
print(json.dumps({{"run": optimizer.result.run.name, "answers": answers}}))
'''
IMPORTABLE = "from tests.user_programs import KeyThenLabel as Program"
NOTEBOOK = '''
class Program(dspy.Module):
    def __init__(self):
        super().__init__()
        self.extract = dspy.Predict("sentence -> key_phrase")
        self.classify = dspy.Predict("sentence, key_phrase -> label")
    def forward(self, sentence):
        return self.classify(sentence=sentence, key_phrase=self.extract(sentence=sentence).key_phrase)
'''


@pytest.mark.parametrize("where", ["importable", "notebook"])
def test_a_compile_run_is_exported_from_another_process_and_loads_to_the_same_answers(server, tmp_path, where):
    """Compile in one process; ``agentsearch export --format dspy`` in another exits 0 and prints the
    lines that load it; loading it as they say, in a third process, answers as the returned program
    did. An importable class is also rebuilt from the run (``export`` in agentsearch's format, then
    ``load_program``); a class defined where it was compiled only has its state written."""
    env = {**os.environ, "OPENAI_API_KEY": "", "PYTHONPATH": str(ROOT)}  # the user's package imports where they work
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    script = CHILD.format(root=str(ROOT), base=server.base_url, url=url,
                          program=IMPORTABLE if where == "importable" else NOTEBOOK)
    compiled = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                              timeout=600, env=env)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    made = json.loads(compiled.stdout.strip().splitlines()[-1])
    assert "INFO agentsearch: candidate #0" in compiled.stderr  # progress shown, as DSPy shows its own
    exported = subprocess.run([sys.executable, "-m", "agentsearch", "export", made["run"], "--format", "dspy",
                               "--out", "x.json", "--storage", url], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120, env=env)
    assert exported.returncode == 0, exported.stderr
    loader = exported.stdout.split("load it with:\n", 1)[1].strip()
    store = get_storage(url)
    best, _ = best_candidate(store, store.list_runs()[0].id)
    searched = any((node.module, node.format) != ("predict", "chat") for node in parse_spec(best.spec).predictors)
    name = "KeyThenLabel" if where == "importable" else "Program"
    lines = (["import agentsearch", f'program = agentsearch.load_into({name}(), "x.json")  # its predictors\' kinds and '
              "formats too"] if searched else [f"program = {name}()", 'program.load("x.json")'])
    if where == "importable":
        assert loader.splitlines() == ["from tests.user_programs import KeyThenLabel", *lines]
    else:
        assert loader.splitlines() == [*lines[:-1], lines[-1] + "  # Program: your class, as you compiled it"]
    check = f'''
import json, sys
import dspy, agentsearch
sys.path.insert(0, {str(ROOT)!r})
from tests.test_dspy_dropin import KEY, examples
{IMPORTABLE if where == "importable" else NOTEBOOK}
{loader}
programs = [program]
if {where == "importable"!r}:
    programs.append(agentsearch.load_program("y.json"))
lm = dspy.LM("openai/fake", api_base={server.base_url!r}, api_key=KEY, cache=False)
with dspy.context(lm=lm):
    print(json.dumps([[p(**ex.inputs()).label for ex in examples(100, 6)] for p in programs]))
'''
    if where == "importable":
        again = subprocess.run([sys.executable, "-m", "agentsearch", "export", made["run"], "--out", "y.json",
                                "--storage", url], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
        assert again.returncode == 0, again.stderr
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env=env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    for answers in json.loads(loaded.stdout.strip().splitlines()[-1]):
        assert answers == made["answers"]


@pytest.mark.parametrize(("options", "message"), [
    ({"api_key": "sk-never-in-a-task-file"}, "lm.options.api_key: credentials are not kept in a task"),
    ({"extra_headers": {"Authorization": "Bearer x"}}, "lm.options.extra_headers: credentials are not kept"),
    ({"temperature": 0.3}, "lm.options.temperature: set it as lm.temperature"),
])
def test_a_task_files_request_options_hold_no_credentials(write_task, options, message):
    from agentsearch.task import load_task

    with pytest.raises(TaskSpecError, match=message):
        load_task(write_task(lm={"model": "openai/fake", "options": options}))


def test_a_student_its_constructor_cannot_make_again_is_searched_and_returned_as_passed(server, sqlite_url,
                                                                                       monkeypatch, tmp_path):
    """``Retrieving(k=10)``: ``Retrieving()`` would build k=3, so the run does not name the class for other
    processes (they could not make the student again); the search, the returned program and the DSPy
    export all keep k=10."""
    from agentsearch._teleprompter import student_reference, student_state
    from tests.user_programs import Retrieving

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert student_reference(Retrieving(), student_state(Retrieving())) == "tests.user_programs:Retrieving"
    student = Retrieving(k=10)
    assert student_reference(student, student_state(student)) is None
    with_lm = Retrieving()
    with_lm.classify.lm = user_lm(server)  # a predictor's own LM: the kept state holds none, so no rebuild
    assert student_reference(with_lm, student_state(with_lm)) is None
    optimizer = agentsearch.AgentSearch(exact, lm=user_lm(server), storage=sqlite_url, max_candidates=3,
                                        num_instructions=2, verbose=False)
    compiled = optimizer.compile(student, trainset=examples(0, 8), valset=examples(100, 6))
    assert compiled.k == 10 and student.k == 10 and compiled is not student
    run = optimizer.result.run
    assert run.task["program"]["module"].startswith("object:") and run.task["program"]["state"]
    assert user_score(compiled, user_lm(server), examples(100, 6)) == pytest.approx(optimizer.result.best.dev_score)
    done = subprocess.run([sys.executable, "-m", "agentsearch", "export", run.name, "--format", "dspy", "--out",
                           "x.json", "--storage", sqlite_url], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    fresh = agentsearch.load_into(Retrieving(k=10), tmp_path / "x.json")
    assert fresh.dump_state() == compiled.dump_state()
