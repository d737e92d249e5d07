"""Metrics: ``metric(example, prediction) -> float in [0, 1]``.

Builtins compare each output field of the task signature and average over them, so they work for
multi-output signatures and ignore extra fields a module adds (such as ChainOfThought's reasoning).
A user metric is named ``package.module:function``; the task file's folder is importable.

``contains`` cannot be gamed by naming every answer: where a field's gold answers come from a small
closed set (at most MAX_CLOSED_LABELS distinct values in the task's train and dev data, each seen
twice on average), an answer that names more than one of them scores 0, even if the gold one is
among them. So "positive negative" is wrong for a sentiment label, while "The answer is positive."
is right. Labels are matched as whole words, the longest first ("very positive" is one label, not
"positive" as well).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from agentsearch._references import resolve_callable
from agentsearch.exceptions import TaskSpecError

Metric = Callable[[Any, Any], float]
MAX_CLOSED_LABELS = 20

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


def _label_patterns(labels: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    """Whole-word patterns of a closed label set, longest label first; compiled once per metric."""
    return [(label, re.compile(rf"(?<!\w){re.escape(label)}(?!\w)")) for label in sorted(labels, key=len, reverse=True)]


def _contains_one_of(gold: Any, pred: Any, patterns: list[tuple[str, re.Pattern[str]]]) -> float:
    """1 when the answer names the gold label and no other: each occurrence is claimed by the longest label."""
    expected, answer = _normalize(gold), _normalize(pred)
    if expected not in (label for label, _ in patterns):
        return _contains(gold, pred)
    named = set()
    for label, pattern in patterns:
        if pattern.search(answer):
            named.add(label)
            answer = pattern.sub(" ", answer)
    return float(named == {expected})


def closed_label_sets(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Per output field whose gold answers form a small closed set, that set (normalized)."""
    rows = list(rows)
    sets = {}
    for name in fields:
        values = {_normalize(row[name]) for row in rows if name in row} - {""}
        if 2 <= len(values) <= MAX_CLOSED_LABELS and len(values) * 2 <= len(rows):
            sets[name] = tuple(sorted(values))
    return sets


def _fieldwise(compare: Callable[[Any, Any], float],
               closed: Callable[[Any, Any, Any], float] | None = None) -> Callable[..., Metric]:
    def build(label_sets: Mapping[str, Sequence[str]] | None = None) -> Metric:
        patterns = {name: _label_patterns(labels) for name, labels in (label_sets or {}).items() if labels}

        def metric(example: Any, prediction: Any) -> float:
            fields = list(example.labels().keys())
            total = 0.0
            for name in fields:
                if closed is not None and name in patterns:
                    total += closed(example[name], prediction.get(name, ""), patterns[name])
                else:
                    total += compare(example[name], prediction.get(name, ""))
            return total / len(fields)

        metric.__name__ = compare.__name__.lstrip("_")
        return metric

    return build


_BUILDERS: dict[str, Callable[..., Metric]] = {
    "exact_match": _fieldwise(_exact),
    "contains": _fieldwise(_contains, closed=_contains_one_of),
    "f1": _fieldwise(_f1),
    "numeric": _fieldwise(_numeric),
}
BUILTIN_METRICS: dict[str, Metric] = {name: build() for name, build in _BUILDERS.items()}
"""The builtins with no closed label sets (``contains`` then only checks that the gold answer is there)."""


def resolve_metric(reference: str, *, base_dir: Path | None = None,
                   label_sets: Mapping[str, Sequence[str]] | None = None) -> Metric:
    """The metric a task names; ``label_sets`` (see ``closed_label_sets``) close ``contains`` to one answer."""
    if reference in _BUILDERS:
        return _BUILDERS[reference](label_sets)
    if ":" not in reference:
        raise TaskSpecError(
            f"unknown metric {reference!r}: use one of {', '.join(BUILTIN_METRICS)} or 'package.module:function'"
        )
    return resolve_callable(reference, base_dir=base_dir, what="metric")


def task_metric(task: Any, splits: Mapping[str, Sequence[Any]] | None = None) -> Metric:
    """The task's metric, with the closed label sets of its train and dev gold answers (read from
    ``splits`` of LabelledExample where the caller has them, else from the data files)."""
    from agentsearch.data import load_split

    if splits is None:
        splits = {split: load_split(task, split) for split in ("train", "dev")}
    rows = [dict(item.example.labels().items()) for split in ("train", "dev") for item in splits[split]]
    return resolve_metric(task.metric, base_dir=task.base_dir,
                          label_sets=closed_label_sets(rows, task.program.output_fields()))
