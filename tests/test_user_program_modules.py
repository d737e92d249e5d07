"""Your own program's predictors run another way: a reasoning kind (module level) and a prompt format
per predictor, in their place, under your ``forward``; such a program saves with DSPy and reloads
with ``agentsearch.load_into``; evolve and the instruction proposer know each predictor's step."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import dspy
import pytest

import agentsearch
from agentsearch.search_space import (
    CandidateSpec,
    PredictorSpec,
    SearchedPredictor,
    build_program,
    parse_spec,
)
from agentsearch.search_space._user import configured
from agentsearch.search_space.kinds import node_kind
from agentsearch.store import Level, get_storage
from tests.conftest import sentiment_rows
from tests.test_cli import run_cli
from tests.user_programs import KeyThenLabel

HERE = Path(__file__).parent


def _spec(**classify: object) -> CandidateSpec:
    return CandidateSpec(topology="program", program="my_pipeline:build", predictors=(
        PredictorSpec(name="extract", signature="sentence -> key_phrase", instructions="Pick the key phrase.",
                      module="self_consistency", samples=3, demo_ids=("extract:a",)),
        PredictorSpec(name="classify", signature="sentence, key_phrase -> label", instructions="Classify it.",
                      demo_ids=("classify:a", "classify:b"), **classify),  # type: ignore[arg-type]
    ))


DEMOS = {
    "extract:a": {"sentence": "a great film", "key_phrase": "great"},
    "classify:a": {"sentence": "a great film", "key_phrase": "great", "label": "positive"},
    "classify:b": {"sentence": "a dull mess", "key_phrase": "dull", "label": "negative"},
}


def _prompts(program: dspy.Module, fake, sentences: list[str]) -> tuple[list[str], list[str]]:
    """The labels ``program`` gives and the prompts it sent (DSPy's cache off: every call reaches the fake)."""
    start = len(fake.prompts)
    with dspy.context(lm=dspy.LM("fake/keyword", cache=False, num_retries=0)):
        labels = [program(sentence=s).label for s in sentences]
    return labels, fake.prompts[start:]


def test_a_predictor_run_another_way_stays_in_place_and_reloads_with_load_into(fake_lm, tmp_path):
    program = configured(KeyThenLabel(), _spec(module="chain_of_thought", format="completion"), DEMOS)
    # the same attributes your forward calls, still dspy.Predict, still found by the same names
    assert [name for name, _ in program.named_predictors()] == ["extract", "classify"]
    assert isinstance(program.classify, SearchedPredictor) and isinstance(program.classify, dspy.Predict)
    assert program.classify.agentsearch == {"module": "chain_of_thought", "format": "completion"}
    assert program.extract.agentsearch == {"module": "self_consistency", "format": "chat", "samples": 3}

    labels, prompts = _prompts(program, fake_lm, ["a wonderful cast"])
    extract = [p for p in prompts if "`key_phrase`" in p]
    classify = [p for p in prompts if p not in extract]
    assert len(extract) == 3  # self-consistency: three samples of the extract step, in the chat format
    assert all("`reasoning`" in p for p in extract)  # each sample reasons first (ChainOfThought)
    # the classify step in the completion format with its two demos, reasoning before the label
    assert classify and all("Sentence: a dull mess" in p and "[[ ##" not in p for p in classify)
    assert "Reasoning:" in classify[0] and classify[-1].rstrip().endswith("Label:")
    assert labels == ["positive"]

    # awaited (acall), a predictor runs the same way
    lm = dspy.LM("fake/keyword", cache=False, num_retries=0)
    inputs = {"sentence": "a wonderful cast", "key_phrase": "wonderful"}
    with dspy.context(lm=lm):
        start = len(fake_lm.prompts)
        awaited = asyncio.run(program.classify.acall(**inputs)).label
        sent = fake_lm.prompts[start:]
        assert (program.classify(**inputs).label, fake_lm.prompts[start + len(sent):]) == (awaited, sent)

    path = tmp_path / "mine.json"
    program.save(str(path))
    plain = KeyThenLabel()
    plain.load(str(path))  # plain DSPy: the instructions and demos, not how each predictor runs
    assert plain.classify.signature.instructions == "Classify it." and len(plain.classify.demos) == 2
    assert not isinstance(plain.classify, SearchedPredictor)
    loaded = agentsearch.load_into(KeyThenLabel(), path)
    assert type(loaded) is KeyThenLabel and loaded.classify.agentsearch == program.classify.agentsearch
    assert _prompts(loaded, fake_lm, ["a wonderful cast", "a dull plot"]) == \
        _prompts(program, fake_lm, ["a wonderful cast", "a dull plot"])


def test_load_into_refuses_a_bad_entry_in_one_line(tmp_path):
    program = configured(KeyThenLabel(), _spec(format="completion"), DEMOS)
    path = tmp_path / "mine.json"
    program.save(str(path))
    path.write_text(path.read_text().replace('"module": "self_consistency"', '"module": "react"'))
    with pytest.raises(agentsearch.AgentSearchError, match=r"mine.json: extract.agentsearch: .*react"):
        agentsearch.load_into(KeyThenLabel(), path)


def test_a_reasoning_kind_fits_only_a_signature_without_reasoning():
    cot = node_kind("chain_of_thought")
    assert cot.fits("sentence -> label") and not cot.fits("sentence -> reasoning, label")
    assert node_kind("self_consistency").fits("sentence -> reasoning, label")  # samples your ChainOfThought
    assert [k for k in ("predict", "chain_of_thought", "self_consistency", "best_of_n", "react",
                        "program_of_thought", "retrieve_demos") if node_kind(k).wraps_predictors] == \
        ["predict", "chain_of_thought", "self_consistency", "best_of_n"]


@pytest.fixture
def program_task(write_task, task_dir):
    shutil.copy(HERE / "user_programs.py", task_dir / "my_pipeline.py")

    def write(**overrides):
        return write_task(**{"program.module": "my_pipeline:build", "search.levels": ["prompt", "module"],
                             "search.formats": ["chat", "completion"], "search.max_candidates": 14,
                             "search.num_instructions": 2, **overrides})
    return write


def test_a_task_file_searches_each_predictors_kind_and_format(program_task, task_dir, sqlite_url, fake_lm,
                                                              monkeypatch, capsys):
    result = agentsearch.optimize(program_task(), storage=sqlite_url)
    store = get_storage(sqlite_url)
    candidates = store.list_candidates(result.run.id)
    specs = [parse_spec(c.spec) for c in candidates]
    nodes = [node for spec in specs for node in spec.predictors]
    assert {node.module for node in nodes} >= {"predict", "chain_of_thought", "self_consistency"}
    assert {node.format for node in nodes} == {"chat", "completion"}
    for candidate, spec in zip(candidates, specs, strict=True):  # a kind changed: a module-level candidate
        assert candidate.level == (Level.PROMPT if spec.modules() == {"predict"} else Level.MODULE)
    # every candidate ran (none failed on a kind or format it could not take), every call was booked
    assert not [c for c in candidates if c.status == "failed"]
    assert fake_lm.calls == store.run_usage(result.run.id).lm_calls
    # the completion format with demos is what this fake answers right: the search found it
    assert result.best.dev_score > result.seed.dev_score
    # each predictor's instructions were proposed knowing its step in the program
    proposals = [p for p in fake_lm.prompts if "improving the instruction" in p]
    assert any("one step, 'extract', of a program that maps sentence -> label" in p for p in proposals)
    assert any("one step, 'classify'" in p and "extract (sentence -> key_phrase)" in p for p in proposals)

    # exported as DSPy state from beside the task file: a fresh instance of the class loads it
    monkeypatch.chdir(task_dir)
    code, out, _ = run_cli(monkeypatch, capsys, "export", result.run.name, "--out", "best.json", "--format", "dspy",
                           "--storage", sqlite_url)
    assert code == 0 and "from my_pipeline import build" in " ".join(out.split())
    assert 'agentsearch.load_into(build(), "best.json")' in " ".join(out.split())
    from my_pipeline import KeyThenLabel as Fresh

    loaded = agentsearch.load_into(Fresh(), task_dir / "best.json")
    best = build_program(parse_spec(result.best.candidate.spec), result.run.space["demos"], None,
                         base_dir=task_dir).program
    assert any(isinstance(p, SearchedPredictor) for _, p in best.named_predictors())
    sentences = ["a wonderful cast", "a dull plot", "fine"]
    assert _prompts(loaded, fake_lm, sentences) == _prompts(best, fake_lm, sentences)


def test_evolve_mutates_a_programs_predictors_with_their_own_demos_and_step(program_task, sqlite_url, fake_lm):
    task = program_task(**{"search.levels": ["prompt"], "search.optimizer": "evolve",
                           "search.max_candidates": 12})
    result = agentsearch.optimize(task, storage=sqlite_url)
    store = get_storage(sqlite_url)
    candidates = store.list_candidates(result.run.id)
    assert len(candidates) == 12 and not [c for c in candidates if c.status == "failed"]
    demos = result.run.space["demos"]
    for spec in (parse_spec(c.spec) for c in candidates):
        for node in spec.predictors:  # a mutation's demos are that predictor's own steps of the traces
            assert all(demo.startswith(f"{node.name}:") and demo in demos for demo in node.demo_ids)
    assert {c.optimizer for c in candidates[1:]} == {"evolve"}
    mutated = [parse_spec(c.spec) for c in candidates[1:]]
    assert any(node.demo_ids for spec in mutated for node in spec.predictors)
    reflections = [p for p in fake_lm.prompts if "went wrong" in p]
    assert reflections and all("of a program that maps sentence -> label" in p for p in reflections)


def test_compile_searches_kinds_with_the_users_reward(sqlite_url, fake_lm):
    seen: list[tuple[dict, dict]] = []

    def reward(inputs: dict, outputs: dict) -> float:
        seen.append((inputs, outputs))
        return float(outputs.get("label") == "negative")

    optimizer = agentsearch.AgentSearch(
        metric=lambda example, prediction, trace=None: float(example.label == prediction.label),
        lm=dspy.LM("fake/keyword", num_retries=0), storage=sqlite_url, max_candidates=8, num_instructions=1,
        max_demos=0, levels=["prompt", "module"], modules={"kinds": ["predict", "best_of_n"]}, reward=reward)
    rows = sentiment_rows(0)
    train = [dspy.Example(**row).with_inputs("sentence") for row in rows[:10]]
    compiled = optimizer.compile(KeyThenLabel(), trainset=train, valset=train)
    specs = [parse_spec(c.spec) for c in get_storage(sqlite_url).list_candidates(optimizer.result.run.id)]
    judged = [n for spec in specs for n in spec.predictors if n.module == "best_of_n" and n.judge != "lm"]
    assert judged and all(n.judge.startswith("object:") for n in judged)
    # the reward judged samples of the step it was given to: its inputs and outputs, no gold label
    assert seen and all(set(outputs) in ({"key_phrase"}, {"label"}) for _, outputs in seen)
    assert all("label" not in inputs for inputs, _ in seen)
    assert isinstance(compiled, KeyThenLabel)


def test_optimize_given_a_dspy_program_points_to_agentsearch():
    with pytest.raises(TypeError, match=r"not a Predict: to optimize a DSPy program, use agentsearch.AgentSearch"):
        agentsearch.optimize(dspy.Predict("sentence -> label"))


def test_a_predictor_over_the_tasks_fields_gets_labelled_demos_too(sqlite_url, fake_lm):
    """The fake answers every chat prompt 'positive': the student's passing traces are the positive
    examples only. The train examples themselves are demos for a predictor whose fields they hold,
    as DSPy's labelled demos are, so the negatives are there too, and the completion format with
    demos (which the fake answers right) is found."""
    optimizer = agentsearch.AgentSearch(
        metric=lambda example, prediction, trace=None: float(example.label == prediction.label),
        lm=dspy.LM("fake/keyword", num_retries=0), storage=sqlite_url, max_candidates=10, num_instructions=1,
        max_demos=4, num_demo_sets=3, bootstrap_examples=10, formats=["chat", "completion"])
    rows = sentiment_rows(0)
    train = [dspy.Example(**row).with_inputs("sentence") for row in rows]
    dev = [dspy.Example(**row).with_inputs("sentence") for row in sentiment_rows(100)[:12]]
    optimizer.compile(dspy.Predict("sentence -> label"), trainset=train, valset=dev)
    space = get_storage(sqlite_url).get_run(optimizer.result.run.id).space
    labels = {demo["label"] for demo in space["demos"].values()}
    assert labels == {"positive", "negative"} and all(key.startswith("self:") for key in space["demos"])  # a bare Predict: DSPy names it self
    assert optimizer.result.best.dev_score > optimizer.result.seed.dev_score
