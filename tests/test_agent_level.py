"""The agent level: the meta agent writes designs, the sandbox runs them, the store keeps code, lineage and errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

import agentsearch
from agentsearch.optimizers import DesignTask, parse_design, seed_designs
from agentsearch.search_space import DesignProgram, DesignSpec, parse_spec
from agentsearch.store import get_storage
from tests.test_cli import run_cli

SIGNATURE = "sentence -> label"
PATTERNS = {"Few-shot answer", "Chain of thought", "Self-consistency", "Self-refine", "Debate", "Role assignment",
            "Step-back abstraction"}


def design_task() -> DesignTask:
    return DesignTask(signature=SIGNATURE, instructions="Classify the sentiment.", summary="2 examples.",
                      examples=({"sentence": "a great film", "label": "positive"},
                                {"sentence": "a dull mess", "label": "negative"}))


def test_seed_designs_are_self_contained_code_of_the_known_patterns():
    designs = seed_designs(design_task())
    assert {d.name for d in designs} == PATTERNS
    for design in designs:
        tree = ast.parse(design.code)
        assert any(isinstance(node, ast.FunctionDef) and node.name == "forward" for node in tree.body)
        assert "{%" not in design.code and "a great film" in design.code  # rendered, examples built in
        assert design.rationale


def test_seed_designs_run_in_the_sandbox_on_the_fake_lm(fake_lm):
    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig

    lm = build_lm(LMConfig(model="fake/keyword", num_retries=0))
    for design in seed_designs(design_task()):
        prediction = DesignProgram(design, lm)(sentence="a wonderful film")
        assert prediction.label in ("positive", "negative"), design.name


@pytest.mark.parametrize(("reply", "name", "code_start"), [
    ("NAME: Vote\nRATIONALE: votes.\n```python\ndef forward(inputs, lm):\n    return {}\n```\n", "Vote", "def forward"),
    ("NAME: Unclosed\n```python\ndef forward(inputs, lm):\n    return {}\n", "Unclosed", "def forward"),
    ("I cannot write code.", "design 3", "I cannot"),
])
def test_parse_design_reads_name_rationale_and_code(reply, name, code_start):
    spec = parse_design(reply, SIGNATURE, default_name="design 3")
    assert spec.name == name and spec.code.startswith(code_start)


def test_a_design_hash_is_over_its_code_not_its_name():
    one = DesignSpec(signature=SIGNATURE, name="a", code="x = 1\n")
    assert one.hash == DesignSpec(signature=SIGNATURE, name="b", rationale="r", code="x = 1\n").hash
    assert one.hash != DesignSpec(signature=SIGNATURE, name="a", code="x = 2\n").hash
    assert parse_spec(one.model_dump(mode="json")) == one


def _agent_run(write_task, sqlite_url, **overrides):
    path = write_task(**{"search.levels": ["agent"], "search.max_candidates": 10, **overrides})
    result = agentsearch.optimize(path, storage=sqlite_url, run_name="agents")
    return path, result, get_storage(sqlite_url).list_candidates(result.run.id)


def test_agent_search_stores_designs_with_code_lineage_scores_and_errors(write_task, sqlite_url, fake_lm):
    _, result, candidates = _agent_run(write_task, sqlite_url)
    storage = get_storage(sqlite_url)
    designs = [c for c in candidates if c.level == "agent"]
    by_optimizer = {name: [c for c in designs if c.optimizer == name] for name in ("archive", "meta_agent", "repair")}
    assert {parse_spec(c.spec).name for c in by_optimizer["archive"]} == PATTERNS
    assert all(c.status == "complete" for c in by_optimizer["archive"])
    # 9 designs after the seed program: the 7 patterns, then 2 from the meta agent. The first
    # imports os: it fails, its error is kept, and its repair (whose parent it is) runs.
    first, second = by_optimizer["meta_agent"]
    assert first.status == "failed" and "import of 'os' is not allowed in the sandbox" in first.note
    assert set(first.parents) <= {c.id for c in by_optimizer["archive"]} and first.parents
    repair = by_optimizer["repair"][0]
    assert repair.parents == (first.id,) and repair.status == "complete"
    assert second.status == "complete"
    dev = {e.candidate_id: e for e in storage.list_evaluations(run_id=result.run.id) if e.split == "dev"}
    assert all(dev[c.id].n == 12 for c in designs if c.status == "complete")
    # self-consistency samples (10 calls at temperature 0.7 per run): 3 rounds per example (search.agent.repeats);
    # the few-shot design answers at temperature 0: one round
    named = {parse_spec(c.spec).name: c for c in by_optimizer["archive"]}
    calls = {name: {r.program_calls for r in storage.list_example_results(dev[named[name].id].id)}
             for name in ("Self-consistency", "Few-shot answer")}
    assert calls == {"Self-consistency": {30}, "Few-shot answer": {1}}
    # the failed design's smoke-test results carry the error too
    smoke = [e for e in storage.list_evaluations(candidate_id=first.id) if e.split == "train"][0]
    assert all("ImportError" in r.error for r in storage.list_example_results(smoke.id))
    assert result.best.candidate.level == "agent" and result.best.dev_score > result.seed.dev_score
    assert result.run.status == "finished"


def test_a_design_that_cannot_be_repaired_is_recorded_as_failed(write_task, sqlite_url, fake_lm):
    fake_lm.repairs_work = False
    _, result, candidates = _agent_run(write_task, sqlite_url, **{"search.max_candidates": 9,
                                                                  "search.agent": {"repairs": 2}})
    chain = [c for c in candidates if c.optimizer in ("meta_agent", "repair")]
    assert [c.optimizer for c in chain] == ["meta_agent", "repair", "repair"]
    assert all(c.status == "failed" and "ImportError" in c.note for c in chain)
    assert [c.parents for c in chain[1:]] == [(chain[0].id,), (chain[1].id,)]
    assert result.run.status == "finished"


def test_the_best_design_exports_runs_standalone_and_reloads_with_identical_predictions(
        write_task, sqlite_url, fake_lm, tmp_path, monkeypatch, capsys):
    path, result, _ = _agent_run(write_task, sqlite_url)
    saved = result.save(tmp_path / "best.json")
    loaded = agentsearch.load_program(saved)
    sentences = ["a wonderful film", "a dull, tired mess", "fine acting"]
    assert [loaded(sentence=s).label for s in sentences] == [result.best_program(sentence=s).label for s in sentences]

    code, out, _ = run_cli(monkeypatch, capsys, "export", "agents", "--out", str(tmp_path / "cli.json"),
                           "--storage", sqlite_url)
    assert code == 0
    standalone = tmp_path / "cli.py"
    assert standalone.is_file() and "def forward(inputs, lm)" in standalone.read_text()
    document = json.loads((tmp_path / "cli.json").read_text())
    assert document["spec"]["kind"] == "design"
    compile(standalone.read_text(), str(standalone), "exec")  # raises unless it is valid Python on its own
    code, out, _ = run_cli(monkeypatch, capsys, "show", str(result.best.candidate.id), "--storage", sqlite_url)
    assert code == 0 and "def forward(inputs, lm)" in out


def test_agent_level_with_the_prompt_level_shares_the_candidates(write_task, sqlite_url, fake_lm):
    _, result, candidates = _agent_run(write_task, sqlite_url, **{"search.levels": ["prompt", "agent"],
                                                                  "search.max_candidates": 12})
    levels = [c.level for c in candidates if c.status != "failed"]
    assert levels[:6] == ["prompt"] * 6 and levels.count("agent") >= 6
    assert result.run.status == "finished"


def test_standalone_export_runs_as_a_plain_python_program(tmp_path):
    spec = DesignSpec(signature=SIGNATURE, name="echo", code="def forward(inputs, lm):\n    return {'label': 'x'}\n")
    from agentsearch._export import write_standalone_design

    target = write_standalone_design(spec, tmp_path / "echo.py", model="openai/gpt-4o-mini", lm_options={},
                                     metadata={"run": "r", "candidate_id": 1, "dev_score": 1.0, "test_score": None})
    out = subprocess.run([sys.executable, str(target), '{"sentence": "hi"}'], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == {"label": "x"}


def test_a_design_that_breaks_a_limit_on_one_example_scores_0_there_and_the_rest_go_on(fake_lm):
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import AgentLimits, Evaluator
    from agentsearch.lm import build_lm
    from agentsearch.metrics import resolve_metric
    from agentsearch.task import LMConfig

    code = ('def forward(inputs, lm):\n'
            '    if "loop" in inputs["sentence"]:\n'
            '        while True:\n'
            '            pass\n'
            '    return {"label": "positive"}\n')
    program = DesignProgram(DesignSpec(signature=SIGNATURE, name="looper", code=code),
                            build_lm(LMConfig(model="fake/keyword", num_retries=0)), limits=AgentLimits(cpu_s=1))
    examples = [LabelledExample(f"dev:{i}", dspy.Example(sentence=s, label="positive").with_inputs("sentence"))
                for i, s in enumerate(["fine", "a loop forever", "great"])]
    outcomes = {o.example_id: o for o in Evaluator(resolve_metric("exact_match")).evaluate(program, examples)}
    assert [outcomes[f"dev:{i}"].score for i in range(3)] == [1.0, 0.0, 1.0]
    assert outcomes["dev:1"].error == "DesignError: CPU-time limit of 1 s exceeded"


@pytest.mark.parametrize("optimizer", ["meta_agent", "mcts"])
@pytest.mark.parametrize("crash_after", [30, 75, 100])
def test_a_crashed_agent_search_resumes_to_the_same_designs(write_task, tmp_path, fake_lm, crash_after, optimizer):
    from tests.test_optimize import _Crash, _CrashAfter

    path = write_task(**{"search.levels": ["agent"], "search.max_candidates": 10,
                         "search.agent": {"optimizer": optimizer}})
    uninterrupted = agentsearch.optimize(path, storage=f"sqlite:///{tmp_path / 'a.db'}", run_name="a")
    fake_lm.designs_written = fake_lm.meta_prompts = 0  # the fake numbers its designs; start the count again
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(_Crash):
        agentsearch.optimize(path, storage=url, run_name="b", callback=_CrashAfter(crash_after))
    resumed = agentsearch.optimize(path, storage=url, resume=True)

    def history(url, run):
        storage = get_storage(url)
        rows = [(c.spec_hash, c.optimizer, c.status) for c in storage.list_candidates(run.id)]
        results = [(e.candidate_id, r.example_id) for e in storage.list_evaluations(run_id=run.id)
                   for r in storage.list_example_results(e.id)]
        return rows, len(results) == len(set(results))

    (rows, unique), (expected_rows, _) = history(url, resumed.run), history(f"sqlite:///{tmp_path / 'a.db'}",
                                                                           uninterrupted.run)
    assert unique and [" ".join(map(str, row)) for row in rows] == [" ".join(map(str, row)) for row in expected_rows]
    assert resumed.best.dev_score == uninterrupted.best.dev_score


def test_the_meta_agent_asked_again_without_progress_samples_a_new_design():
    from agentsearch.optimizers import MetaAgentOptimizer

    class Proposer:
        kwargs: dict = {}
        rollouts: list = []

        def __call__(self, messages, **options):
            self.rollouts.append(options["rollout_id"])
            return ["NAME: same\n```python\ndef forward(inputs, lm):\n    return {'label': 'x'}\n```"]

    proposer = Proposer()
    seeds = {d.hash for d in seed_designs(design_task())}
    meta = MetaAgentOptimizer(task=design_task(), proposer=proposer, archive=lambda: [], known=lambda: seeds,
                              spend=lambda usage: None, seed_candidate_id=1)
    first, second = meta.ask(), meta.ask()
    assert first.spec == second.spec and len(set(proposer.rollouts)) == 2


def test_an_outage_a_design_catches_in_the_sandbox_is_still_no_result(fake_lm):
    """The parent makes the design's LM call; when it ends unavailable the example is no result, however the
    design handles the error (here it catches everything and answers anyway)."""
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import Evaluator
    from agentsearch.exceptions import LMUnavailableError
    from agentsearch.lm import build_lm
    from agentsearch.metrics import resolve_metric
    from agentsearch.task import LMConfig

    code = ('def forward(inputs, lm):\n'
            '    try:\n'
            '        lm("Sentence: " + inputs["sentence"] + "\\nLabel:")\n'
            '    except Exception:\n'
            '        pass\n'
            '    return {"label": "positive"}\n')
    program = DesignProgram(DesignSpec(signature=SIGNATURE, name="swallower", code=code),
                            build_lm(LMConfig(model="fake/keyword", num_retries=0)))
    examples = [LabelledExample(f"dev:{i}", dspy.Example(sentence=s, label="positive").with_inputs("sentence"))
                for i, s in enumerate(["EXPLODE joy", "pure joy"])]
    evaluator = Evaluator(resolve_metric("exact_match"))
    outcomes = {o.example_id: o for batch in evaluator.run(program, examples) for o in batch}
    assert outcomes["dev:0"].failure is not None and not outcomes["dev:0"].scored
    assert outcomes["dev:1"].scored and outcomes["dev:1"].score == 1.0
    with pytest.raises(LMUnavailableError):
        evaluator.evaluate(program, examples)


def _sampling_program(code: str, repeats: int):
    from agentsearch.lm import build_lm
    from agentsearch.task import LMConfig

    return DesignProgram(DesignSpec(signature=SIGNATURE, name="sampler", code=code),
                         build_lm(LMConfig(model="fake/keyword", num_retries=0)), repeats=repeats)


def _positives(*sentences: str):
    import dspy

    from agentsearch.data import LabelledExample

    return [LabelledExample(f"dev:{i}", dspy.Example(sentence=s, label="positive").with_inputs("sentence"))
            for i, s in enumerate(sentences)]


def test_a_design_whose_calls_sample_is_scored_by_the_mean_over_its_rounds(fake_lm):
    """The fake answers a sampled prompt positive, negative, positive, ... in turn: three rounds of one sampled
    call score 2/3 on a positive example, each round a request of its own (its own rollout id); a design at
    temperature 0 runs once. Scoring again asks the LM nothing: each round's samples are cached apart."""
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric

    fake_lm.samples_vary = True
    evaluator = Evaluator(resolve_metric("exact_match"))
    sampler = _sampling_program('def forward(inputs, lm):\n'
                                '    return {"label": lm("Sentence: " + inputs["sentence"] + "\\nLabel:", '
                                'temperature=0.8).strip()}\n', repeats=3)
    examples = _positives("a wonderful film", "a delight")
    outcomes = evaluator.evaluate(sampler, examples)
    assert [o.score for o in outcomes] == [pytest.approx(2 / 3)] * 2
    assert [o.program_calls for o in outcomes] == [3, 3] and fake_lm.calls == 6
    assert [o.prediction for o in outcomes] == [{"label": "positive"}] * 2  # the first round's answer is kept
    assert [o.score for o in evaluator.evaluate(sampler, examples)] == [pytest.approx(2 / 3)] * 2
    assert fake_lm.calls == 6

    deterministic = _sampling_program('def forward(inputs, lm):\n'
                                      '    return {"label": lm("Sentence: " + inputs["sentence"] + "\\nLabel:", '
                                      'temperature=0.0).strip()}\n', repeats=3)
    outcomes = evaluator.evaluate(deterministic, _positives("a great film"))
    assert [(o.score, o.program_calls) for o in outcomes] == [(1.0, 1)] and fake_lm.calls == 7


def test_a_prompt_sampled_twice_in_a_run_gets_new_samples_in_every_round(fake_lm):
    """Two samples of the same prompt in one run, two rounds: four requests, none answered by another's cache
    entry (round r's rollout ids start after round r-1's)."""
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric

    fake_lm.samples_vary = True
    program = _sampling_program('def forward(inputs, lm):\n'
                                '    prompt = "Sentence: " + inputs["sentence"] + "\\nLabel:"\n'
                                '    first, second = lm(prompt, temperature=1.0), lm(prompt, temperature=1.0)\n'
                                '    return {"label": (first + "|" + second).replace(" ", "")}\n', repeats=2)
    outcome, = Evaluator(resolve_metric("exact_match")).evaluate(program, _positives("fine"))
    assert fake_lm.calls == 4 and outcome.program_calls == 4
    assert outcome.prediction == {"label": "positive|negative"}  # the fake's turns 0 and 1; round 2 got 2 and 3


def test_an_outage_in_a_later_round_leaves_the_example_unscored(fake_lm):
    """Every round counts: a sampled call that fails in round 2 makes the example no result, not the mean of
    the rounds before it."""
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric

    code = ('def forward(inputs, lm):\n'
            '    first = lm("Sentence: " + inputs["sentence"] + "\\nLabel:", temperature=0.5)\n'
            '    if first.strip() == "negative":\n'
            '        lm("Sentence: EXPLODE\\nLabel:")\n'
            '    return {"label": first.strip()}\n')
    fake_lm.samples_vary = True
    outcome, = next(iter(Evaluator(resolve_metric("exact_match")).run(_sampling_program(code, 3),
                                                                          _positives("a joy"))))
    assert outcome.failure is not None and not outcome.scored


def test_evaluate_scores_a_saved_sampling_design_with_the_tasks_rounds(write_task, fake_lm, tmp_path, monkeypatch,
                                                                        capsys):
    """``agentsearch evaluate`` re-scores a design as the search did: search.agent.repeats rounds where it samples."""
    from agentsearch.search_space import save_program

    code = ('def forward(inputs, lm):\n'
            '    return {"label": lm("Sentence: " + inputs["sentence"] + "\\nLabel:", temperature=0.8).strip()}\n')
    saved = save_program(_sampling_program(code, 1), tmp_path / "sampler.json", lm={"model": "fake/keyword"})
    for repeats, new_rounds in ((2, 2), (3, 1)):  # the second run finds rounds 1 and 2 in DSPy's cache
        task = write_task(f"task{repeats}.yaml", **{"search.agent": {"repeats": repeats}})
        done, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(saved), str(task), "--split", "test", "--json")
        assert done == 0 and json.loads(out)["n"] == 10
        assert json.loads(out)["lm_calls"] == 10 * new_rounds  # each round's samples are requests of their own
