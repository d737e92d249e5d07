"""Candidate specs: a program described as data, so it can be hashed, stored, diffed and rebuilt.

A spec holds what the search varies and nothing else (no LM, no scores, no lineage): two candidates
with the same spec are the same program, and the hash says so.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ModuleType = Literal["predict", "chain_of_thought"]
PromptFormat = Literal["chat", "json", "xml", "completion"]


class PredictorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "predict"
    signature: str
    instructions: str = ""
    module: ModuleType = "predict"
    demo_ids: tuple[str, ...] = ()
    format: PromptFormat = "chat"
    """How the predictor's prompt is written and its answer parsed (its DSPy adapter)."""


class CandidateSpec(BaseModel):
    """Predictors run in order; each reads its inputs from the task inputs and earlier outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predictors: tuple[PredictorSpec, ...] = Field(min_length=1)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def demo_ids(self) -> set[str]:
        return {demo for predictor in self.predictors for demo in predictor.demo_ids}
