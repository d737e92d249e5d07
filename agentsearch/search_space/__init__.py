"""What a candidate is: a spec (data), the DSPy program compiled from it, and the space specs come from."""

from __future__ import annotations

from agentsearch.search_space._adapters import CompletionAdapter, make_adapter
from agentsearch.search_space._program import (
    SpecProgram,
    load_program,
    node_signature,
    save_program,
)
from agentsearch.search_space._sandbox import SandboxResult, run_python
from agentsearch.search_space._space import ModuleSpaceConfig, SearchSpace, seed_trial
from agentsearch.search_space._spec import (
    MODULE_KINDS,
    TOPOLOGIES,
    CandidateSpec,
    PredictorSpec,
)

__all__ = [
    "MODULE_KINDS",
    "TOPOLOGIES",
    "CandidateSpec",
    "CompletionAdapter",
    "ModuleSpaceConfig",
    "PredictorSpec",
    "SandboxResult",
    "SearchSpace",
    "SpecProgram",
    "load_program",
    "make_adapter",
    "node_signature",
    "run_python",
    "save_program",
    "seed_trial",
]
