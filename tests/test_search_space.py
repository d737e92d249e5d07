from __future__ import annotations

import json

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from pydantic import ValidationError

from agentsearch import load_program, save_program
from agentsearch.exceptions import ProgramFileError
from agentsearch.search_space import (
    CandidateSpec,
    CompletionAdapter,
    JSONModeAdapter,
    PredictorSpec,
    SpecProgram,
)

DEMOS = {"d1": {"sentence": "great", "label": "positive"}, "d2": {"sentence": "awful", "label": "negative"}}


def _spec(**changes) -> CandidateSpec:
    predictor = PredictorSpec(signature="sentence -> label", instructions="Classify.", demo_ids=("d1", "d2"), **changes)
    return CandidateSpec(predictors=(predictor,))


def test_hash_depends_on_content_only():
    assert _spec().hash == _spec().hash
    assert _spec().hash != _spec(format="completion").hash
    assert CandidateSpec.model_validate(json.loads(_spec().canonical_json())).hash == _spec().hash


def test_spec_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="temperature"):
        CandidateSpec.model_validate({"predictors": [{"signature": "a -> b", "temperature": 3}]})


def test_compiled_program_carries_instructions_and_demos():
    program = SpecProgram(_spec(), DEMOS)
    (predictor,) = [p for _, p in program.named_predictors()]
    assert predictor.signature.instructions == "Classify."
    assert [demo.label for demo in predictor.demos] == ["positive", "negative"]


def test_missing_demo_is_refused():
    with pytest.raises(KeyError):
        SpecProgram(_spec(), {"d1": DEMOS["d1"]})


def test_round_trip_spec_program_file_program_gives_identical_predictions(tmp_path):
    answers = [{"label": f"answer-{i}"} for i in range(6)]
    lm = DummyLM(answers * 2)
    first = SpecProgram(_spec(), DEMOS, lm)
    path = save_program(first, tmp_path / "program.json", lm=None, metadata={"note": "test"})
    loaded = load_program(path, lm=DummyLM(answers * 2))
    sentences = ["fine", "dreadful", "so-so"]
    with dspy.context(lm=None):
        before = [first(sentence=s).label for s in sentences]
        after = [loaded(sentence=s).label for s in sentences]
    assert before == after == ["answer-0", "answer-1", "answer-2"]
    assert loaded.spec == first.spec and loaded.demo_texts == first.demo_texts


def test_saved_program_is_plain_json_with_demo_texts(tmp_path):
    path = save_program(SpecProgram(_spec(), DEMOS), tmp_path / "p.json", lm={"model": "openai/x"})
    document = json.loads(path.read_text())
    assert document["demos"] == DEMOS and document["lm"] == {"model": "openai/x"}


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "cannot read"), ('{"agentsearch_program": 99}', "not an agentsearch program"),
     ('{"agentsearch_program": 1, "spec": {"predictors": []}}', "spec.predictors")],
)
def test_bad_program_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ProgramFileError, match=message):
        load_program(path)


def test_completion_adapter_formats_a_few_shot_text_prompt_and_parses_it():
    adapter = CompletionAdapter()
    signature = dspy.Signature("sentence -> label", "Classify.")
    messages = adapter.format(signature, [DEMOS["d1"], DEMOS["d2"]], {"sentence": "meh"})
    assert messages == [{"role": "user", "content": "Classify.\n\nSentence: great\nLabel: positive\n\n"
                                                    "Sentence: awful\nLabel: negative\n\nSentence: meh\nLabel:"}]
    assert adapter.parse(signature, " negative\n") == {"label": "negative"}
    two = dspy.Signature("question -> reasoning, answer")
    assert adapter.parse(two, " it is two\nAnswer: 2") == {"reasoning": "it is two", "answer": "2"}
    with pytest.raises(Exception, match="answer"):
        adapter.parse(two, " only reasoning")


@pytest.mark.parametrize(("fmt", "adapter"), [("chat", dspy.ChatAdapter), ("json", JSONModeAdapter),
                                              ("xml", dspy.XMLAdapter), ("completion", CompletionAdapter)])
def test_each_format_compiles_to_its_adapter(fmt, adapter):
    program = SpecProgram(_spec(format=fmt), DEMOS)
    assert type(program.nodes[0].adapter) is adapter


def test_two_predictor_pipeline_feeds_outputs_forward(tmp_path):
    spec = CandidateSpec(topology="pipeline", predictors=(
        PredictorSpec(name="draft", signature="sentence -> gist"),
        PredictorSpec(name="answer", signature="gist -> label"),
    ))
    answers = [{"gist": "upbeat"}, {"label": "positive"}]
    program = SpecProgram(spec, {}, DummyLM(answers))
    assert program(sentence="lovely").label == "positive"
    loaded = load_program(save_program(program, tmp_path / "two.json"), lm=DummyLM(answers))
    assert loaded(sentence="lovely").label == "positive"


def test_formats_are_kept_per_predictor_through_a_program_file(tmp_path):
    spec = CandidateSpec(topology="pipeline", predictors=(
        PredictorSpec(name="draft", signature="sentence -> gist", format="completion"),
        PredictorSpec(name="answer", signature="gist -> label", format="xml"),
    ))
    loaded = load_program(save_program(SpecProgram(spec, {}), tmp_path / "mixed.json"))
    assert [type(n.adapter) for n in loaded.nodes] == [CompletionAdapter, dspy.XMLAdapter]


class _OneFieldAtATime:
    """An LM that writes only the field left open at the end of the prompt, as small models do."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, messages, **kwargs):
        prompt = messages[0]["content"]
        self.prompts.append(prompt)
        return [" 2" if prompt.endswith("Answer:") else " one plus one is two"]


def test_completion_generates_a_multi_output_signature_field_by_field():
    lm = _OneFieldAtATime()
    signature = dspy.Signature("question -> reasoning, answer: int")
    assert CompletionAdapter()(lm, {}, signature, [], {"question": "1+1?"}) == [{"reasoning": "one plus one is two",
                                                                                 "answer": 2}]
    assert len(lm.prompts) == 2 and lm.prompts[1].endswith("Reasoning: one plus one is two\nAnswer:")
