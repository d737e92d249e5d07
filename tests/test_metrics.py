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
