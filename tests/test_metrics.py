from __future__ import annotations

import dspy
import pytest

from agentsearch.metrics import BUILTIN_METRICS


def _pair(gold: str, pred: str):
    return dspy.Example(question="q", answer=gold).with_inputs("question"), dspy.Prediction(answer=pred)


@pytest.mark.parametrize(
    ("metric", "gold", "pred", "expected"),
    [
        ("exact_match", "Positive", " positive.", 1.0),
        ("exact_match", "positive", "negative", 0.0),
        ("contains", "paris", "It is Paris, France", 1.0),
        ("numeric", "1,234", "so the answer is 1234.", 1.0),
        ("numeric", "12", "no number", 0.0),
        ("f1", "the cat sat", "cat sat down", 2 * (2 / 3) * (2 / 3) / (4 / 3)),
    ],
)
def test_builtin_metrics(metric, gold, pred, expected):
    example, prediction = _pair(gold, pred)
    assert BUILTIN_METRICS[metric](example, prediction) == pytest.approx(expected)


def test_builtin_metrics_ignore_fields_the_module_adds():
    example = dspy.Example(question="q", answer="4").with_inputs("question")
    prediction = dspy.Prediction(reasoning="2 plus 2", answer="4")
    assert BUILTIN_METRICS["exact_match"](example, prediction) == 1.0


@pytest.mark.parametrize(("answer", "expected"), [
    ("positive negative", 0.0),  # naming every label is not an answer
    ("negative or positive", 0.0),
    ("The answer is positive.", 1.0),
    ("positive", 1.0),
    ("very positive", 0.0),  # another label of the set, not "positive" as well
    ("negative", 0.0),
    ("positively", 0.0),  # whole words only
])
def test_contains_counts_one_answer_from_a_closed_label_set(answer, expected):
    import dspy

    from agentsearch.metrics import closed_label_sets, resolve_metric

    rows = [{"label": label} for label in ("positive", "negative", "very positive") * 3]
    metric = resolve_metric("contains", label_sets=closed_label_sets(rows, ["label"]))
    example = dspy.Example(sentence="x", label="positive").with_inputs("sentence")
    assert metric(example, dspy.Prediction(label=answer)) == expected


def test_free_text_answers_keep_plain_contains():
    import dspy

    from agentsearch.metrics import closed_label_sets, resolve_metric

    rows = [{"answer": f"city {i}"} for i in range(30)]  # every gold answer differs: no closed set
    assert closed_label_sets(rows, ["answer"]) == {}
    metric = resolve_metric("contains", label_sets={})
    example = dspy.Example(question="q", answer="Paris").with_inputs("question")
    assert metric(example, dspy.Prediction(answer="Paris or London")) == 1.0


def test_a_run_scores_the_list_every_label_answer_as_wrong(write_task, sqlite_url, fake_lm, monkeypatch):
    """End to end: the task's metric closes ``contains`` over the labels its data holds."""
    import agentsearch
    from agentsearch.store import get_storage

    monkeypatch.setattr(fake_lm, "_value", lambda field, text, sentence, completion, knows=False: "positive negative")
    result = agentsearch.optimize(write_task(metric="contains", **{"search.max_candidates": 2}), storage=sqlite_url)
    store = get_storage(sqlite_url)
    results = [r for e in store.list_evaluations(run_id=result.run.id) for r in store.list_example_results(e.id)]
    assert results and all(r.prediction == {"label": "positive negative"} and r.score == 0.0 for r in results)
