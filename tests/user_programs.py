"""User programs a task file names by ``program.module`` (tests/test_user_program.py)."""

from __future__ import annotations

import dspy


class KeyThenLabel(dspy.Module):
    """Two predictors and a forward of its own: pick the key phrase, then classify reading it."""

    def __init__(self) -> None:
        super().__init__()
        self.extract = dspy.Predict("sentence -> key_phrase")
        self.classify = dspy.Predict("sentence, key_phrase -> label")

    def forward(self, sentence: str) -> dspy.Prediction:
        key_phrase = self.extract(sentence=sentence).key_phrase
        return self.classify(sentence=sentence, key_phrase=key_phrase)


def build() -> KeyThenLabel:
    return KeyThenLabel()


def not_a_module() -> int:
    return 42


class Empty(dspy.Module):
    def forward(self, sentence: str) -> dspy.Prediction:
        return dspy.Prediction(label="positive")


def no_predictors() -> Empty:
    return Empty()


class Retrieving(dspy.Module):
    """A student whose constructor takes an argument with a default (``RAG(k=10)``-like): ``Retrieving()``
    is not the ``Retrieving(k=10)`` a user compiles."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.k = k
        self.classify = dspy.Predict("sentence, context -> label")

    def forward(self, sentence: str) -> dspy.Prediction:
        return self.classify(sentence=sentence, context=f"k={self.k}")
