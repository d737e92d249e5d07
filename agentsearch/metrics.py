"""Metrics: ``metric(example, prediction) -> float in [0, 1]``.

Builtins compare each output field of the task signature and average over them, so they work for
multi-output signatures and ignore extra fields a module adds (such as ChainOfThought's reasoning).
A user metric is named ``package.module:function``; the task file's folder is importable.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from agentsearch._references import resolve_callable
from agentsearch.exceptions import TaskSpecError

Metric = Callable[[Any, Any], float]

_PUNCT = re.compile(r"^[\s\"'`.,:;!?()\[\]*]+|[\s\"'`.,:;!?()\[\]*]+$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _normalize(text: Any) -> str:
    return _PUNCT.sub("", " ".join(str(text).split())).lower()


def _number(text: Any) -> float | None:
    found = _NUMBER.findall(str(text))
    return float(found[-1].replace(",", "")) if found else None


def _exact(gold: Any, pred: Any) -> float:
    return float(_normalize(gold) == _normalize(pred))


def _contains(gold: Any, pred: Any) -> float:
    return float(_normalize(gold) in _normalize(pred))


def _f1(gold: Any, pred: Any) -> float:
    gold_tokens, pred_tokens = _normalize(gold).split(), _normalize(pred).split()
    common = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if not common:
        return float(gold_tokens == pred_tokens)
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _numeric(gold: Any, pred: Any) -> float:
    expected, got = _number(gold), _number(pred)
    return float(expected is not None and got is not None and abs(expected - got) < 1e-6)


def _fieldwise(compare: Callable[[Any, Any], float]) -> Metric:
    def metric(example: Any, prediction: Any) -> float:
        fields = list(example.labels().keys())
        return sum(compare(example[name], prediction.get(name, "")) for name in fields) / len(fields)

    metric.__name__ = compare.__name__.lstrip("_")
    return metric


BUILTIN_METRICS: dict[str, Metric] = {
    "exact_match": _fieldwise(_exact),
    "contains": _fieldwise(_contains),
    "f1": _fieldwise(_f1),
    "numeric": _fieldwise(_numeric),
}


def resolve_metric(reference: str, *, base_dir: Path | None = None) -> Metric:
    if reference in BUILTIN_METRICS:
        return BUILTIN_METRICS[reference]
    if ":" not in reference:
        raise TaskSpecError(
            f"unknown metric {reference!r}: use one of {', '.join(BUILTIN_METRICS)} or 'package.module:function'"
        )
    return resolve_callable(reference, base_dir=base_dir, what="metric")
