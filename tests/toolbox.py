"""User code a task file can name: a ReAct tool and a best-of-n reward."""

from __future__ import annotations

CALLS: list[str] = []


def word_count(text: str) -> int:
    """Count the words of a text."""
    CALLS.append(text)
    return len(text.split())


def prefers_negative(inputs: dict, outputs: dict) -> float:
    return 1.0 if outputs.get("label") == "negative" else 0.0
