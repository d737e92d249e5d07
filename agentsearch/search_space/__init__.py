"""What a candidate is: a spec (data) and the DSPy program compiled from it."""

from __future__ import annotations

from agentsearch.search_space._adapters import CompletionAdapter, make_adapter
from agentsearch.search_space._program import SpecProgram, load_program, save_program
from agentsearch.search_space._spec import CandidateSpec, PredictorSpec

__all__ = [
    "CandidateSpec",
    "CompletionAdapter",
    "PredictorSpec",
    "SpecProgram",
    "load_program",
    "make_adapter",
    "save_program",
]
