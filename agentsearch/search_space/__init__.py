"""What a candidate is: a spec (data), the DSPy program compiled from it, and the space specs come from."""

from __future__ import annotations

from agentsearch.search_space._adapters import CompletionAdapter, make_adapter
from agentsearch.search_space._design import DesignError, DesignProgram
from agentsearch.search_space._lifts import (
    PROMPT_LEVEL,
    Lift,
    module_lifts,
    stages_prompt_first,
)
from agentsearch.search_space._program import (
    Program,
    SpecProgram,
    build_program,
    load_program,
    node_signature,
    save_program,
)
from agentsearch.search_space._space import ModuleSpaceConfig, SearchSpace, seed_trial
from agentsearch.search_space._spec import (
    DEMO_KINDS,
    MODULE_KINDS,
    TOPOLOGIES,
    AnySpec,
    CandidateSpec,
    DesignSpec,
    PredictorSpec,
    parse_spec,
)

__all__ = [
    "DEMO_KINDS",
    "MODULE_KINDS",
    "PROMPT_LEVEL",
    "TOPOLOGIES",
    "AnySpec",
    "CandidateSpec",
    "CompletionAdapter",
    "DesignError",
    "DesignProgram",
    "DesignSpec",
    "Lift",
    "ModuleSpaceConfig",
    "PredictorSpec",
    "Program",
    "SearchSpace",
    "SpecProgram",
    "build_program",
    "load_program",
    "make_adapter",
    "module_lifts",
    "node_signature",
    "parse_spec",
    "save_program",
    "seed_trial",
    "stages_prompt_first",
]
