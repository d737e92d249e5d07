"""Nodes: one reasoning module each, built from a PredictorSpec and run under the node's own prompt format.

Most kinds are DSPy's own modules (Predict, ChainOfThought, ReAct). The rest are small modules
here because the DSPy versions do not fit a search that must not leak labels or run untrusted code
in-process: BestOfN scores samples with an LM judge or a reward function (never the gold metric),
ProgramOfThought runs its code in the sandbox subprocess, and the retrieval node picks demos per
input by BM25.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import dspy

from agentsearch._references import resolve_callable
from agentsearch.evaluators import run_python
from agentsearch.evaluators._sandbox_child import AGENT_MODULES
from agentsearch.search_space._adapters import make_adapter
from agentsearch.search_space._spec import PredictorSpec
from agentsearch.search_space.kinds import node_kind

Demos = Mapping[str, Mapping[str, Any]]
SAMPLING_TEMPERATURE = 0.7
"""Samples of self-consistency and best-of-n must differ; each also gets its own cache key (rollout_id)."""


def normalized(value: Any) -> str:
    return " ".join(str(value).split()).lower()


def render_answer(prediction: Mapping[str, Any], fields: Sequence[str]) -> str:
    """A prediction's output fields as one line another node can read."""
    return "; ".join(f"{name}: {prediction.get(name, '')}" for name in fields)


def numbered_answers(predictions: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """Several predictions' answers, one numbered line each, for a node that reads them all."""
    return "\n".join(f"{i}. {render_answer(p, fields)}" for i, p in enumerate(predictions, start=1))


def majority(predictions: Sequence[dspy.Prediction], fields: Sequence[str]) -> dspy.Prediction:
    """The prediction whose output fields most predictions agree on; ties go to the earliest."""
    keys = [tuple(normalized(p.get(name, "")) for name in fields) for p in predictions]
    counts = Counter(keys)
    best = max(counts.values())
    return next(p for p, key in zip(predictions, keys, strict=True) if counts[key] == best)


def surviving(calls: Iterable[Callable[[], dspy.Prediction]]) -> list[dspy.Prediction]:
    """The predictions of the calls that succeed; one failing sample or member must not sink the rest."""
    predictions, error = [], None
    for call in calls:
        try:
            predictions.append(call())
        except Exception as exc:  # an unparsable answer, a failed LM call
            error = exc
    if not predictions:
        raise error  # type: ignore[misc]
    return predictions


def _samples(module: dspy.Module, inputs: dict[str, Any], count: int) -> list[dspy.Prediction]:
    """``count`` sampled predictions, each its own cache entry (rollout_id)."""
    config = [{"rollout_id": index, "temperature": SAMPLING_TEMPERATURE} for index in range(count)]
    return surviving(partial(module, **inputs, config=c) for c in config)


class SelfConsistency(dspy.Module):
    """Sample ChainOfThought several times and return the majority answer."""

    def __init__(self, signature: dspy.Signature, samples: int) -> None:
        super().__init__()
        self.reason = dspy.ChainOfThought(signature)
        self.samples = samples
        self.outputs = list(signature.output_fields)

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return majority(_samples(self.reason, inputs, self.samples), self.outputs)


class BestOfN(dspy.Module):
    """Sample ChainOfThought several times and return the sample the judge scores highest."""

    def __init__(self, signature: dspy.Signature, samples: int, judge: str, *, base_dir: Path | None) -> None:
        super().__init__()
        self.reason = dspy.ChainOfThought(signature)
        self.samples = samples
        self.inputs, self.outputs = list(signature.input_fields), list(signature.output_fields)
        self.reward: Callable[[dict, dict], float] | None = None
        self.verdict: dspy.Predict | None = None
        if judge == "lm":
            verdict = dspy.Signature(f"{', '.join(self.inputs)}, proposed_answer -> correct: bool",
                                     "Decide whether the proposed answer is correct for the input.")
            self.verdict = dspy.Predict(verdict)
        else:
            self.reward = resolve_callable(judge, base_dir=base_dir, what="reward")

    def _score(self, inputs: dict[str, Any], prediction: dspy.Prediction) -> float:
        outputs = {name: prediction.get(name) for name in self.outputs}
        if self.reward is not None:
            return float(self.reward(inputs, outputs))
        assert self.verdict is not None  # judge "lm" when there is no reward
        try:
            return float(bool(self.verdict(**inputs, proposed_answer=render_answer(outputs, self.outputs)).correct))
        except Exception:  # an unreadable verdict counts as a rejection
            return 0.0

    def forward(self, **inputs: Any) -> dspy.Prediction:
        predictions = _samples(self.reason, inputs, self.samples)
        scores = [self._score(inputs, prediction) for prediction in predictions]
        return predictions[scores.index(max(scores))]


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


class ProgramOfThought(dspy.Module):
    """Write a Python program for the input, run it in the sandbox, answer from its output."""

    def __init__(self, signature: dspy.Signature) -> None:
        super().__init__()
        inputs, outputs = ", ".join(signature.input_fields), ", ".join(
            f"{name}: {field.annotation.__name__}" if isinstance(field.annotation, type) else name
            for name, field in signature.output_fields.items()
        )
        task = signature.instructions.strip()
        self.write = dspy.Predict(dspy.Signature(
            f"{inputs} -> python_code",
            f"Write a Python 3 program that computes the answer and prints it; it may import only "
            f"{', '.join(AGENT_MODULES)}. Task: {task}",
        ))
        self.answer = dspy.Predict(dspy.Signature(
            f"{inputs}, python_code, code_output -> {outputs}",
            f"{task}\nA program was written and run for this input; use its output if it is sound.",
        ))

    def forward(self, **inputs: Any) -> dspy.Prediction:
        code = str(self.write(**inputs).python_code)
        fenced = _FENCE.search(code)
        code = fenced.group(1) if fenced else code
        output = run_python(code).summary()
        prediction = self.answer(**inputs, python_code=code, code_output=output)
        return dspy.Prediction(python_code=code, code_output=output, **dict(prediction.items()))


class RetrieveDemos(dspy.Module):
    """Predict with the ``k`` pool examples nearest the input (BM25 over the input fields) as demos."""

    def __init__(self, signature: dspy.Signature, pool: Sequence[Mapping[str, Any]], k: int) -> None:
        super().__init__()
        self.predict = dspy.Predict(signature)
        self.inputs = list(signature.input_fields)
        self.pool = [dspy.Example(dict(demo)) for demo in pool]
        self.k = k
        self._index: Any = None
        self._lock = threading.Lock()

    def _tokens(self, values: Mapping[str, Any]) -> list[str]:
        return re.findall(r"\w+", " ".join(str(values.get(name, "")) for name in self.inputs).lower())

    def nearest(self, inputs: Mapping[str, Any]) -> list[dspy.Example]:
        with self._lock:
            if self._index is None:
                try:
                    from rank_bm25 import BM25Okapi
                except ImportError:  # pragma: no cover - a core dependency
                    raise ImportError("the retrieve_demos node needs rank-bm25: pip install rank-bm25") from None
                self._index = BM25Okapi([self._tokens(demo) or ["_"] for demo in self.pool])
        scores = self._index.get_scores(self._tokens(inputs))
        ranked = sorted(range(len(self.pool)), key=lambda i: (-scores[i], i))[: self.k]
        return [self.pool[i] for i in reversed(ranked)]  # the nearest last, next to the input

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.predict(**inputs, demos=self.nearest(inputs))


class Node(dspy.Module):
    """A module over one signature, its demos set, called with the inputs it names, under its own adapter."""

    def __init__(self, spec: PredictorSpec, demos: Demos, *, base_dir: Path | None = None) -> None:
        super().__init__()
        self.spec = spec
        signature = dspy.Signature(spec.signature, spec.instructions)
        self.inputs, self.outputs = list(signature.input_fields), list(signature.output_fields)
        self.adapter = make_adapter(spec.format)
        kind = node_kind(spec.module)
        self.module = kind.build(spec, signature, demos, base_dir)
        if kind.fixed_demos:
            examples = [dspy.Example(dict(demos[demo_id])) for demo_id in spec.demo_ids]
            for _, predictor in self.module.named_predictors():
                if set(predictor.signature.output_fields) & set(self.outputs):
                    predictor.demos = list(examples)

    def forward(self, **values: Any) -> dspy.Prediction:
        with dspy.context(adapter=self.adapter):
            return self.module(**{name: values[name] for name in self.inputs})
