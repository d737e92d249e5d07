"""What a candidate is: a spec (data), the DSPy program compiled from it, and the space specs come from."""

from __future__ import annotations

from agentsearch._lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {
    "agentsearch.search_space._adapters": ("CompletionAdapter", "JSONModeAdapter", "make_adapter"),
    "agentsearch.search_space._design": ("DesignError", "DesignProgram"),
    "agentsearch.search_space._lifts": ("PROMPT_LEVEL", "Lift", "bootstrap_params", "module_lifts", "prompt_level",
                                        "stages_prompt_first"),
    "agentsearch.search_space._program": ("Program", "SpecProgram", "build_program", "load_program", "node_signature",
                                          "save_program"),
    "agentsearch.search_space._space": ("ModuleSpaceConfig", "SearchSpace", "seed_trial"),
    "agentsearch.search_space._spec": ("AnySpec", "CandidateSpec", "DesignSpec", "PredictorSpec",
                                       "level_of", "parse_spec"),
    "agentsearch.search_space.kinds": ("NodeKind", "kind_names", "node_kind"),
    "agentsearch.search_space.topologies": ("Role", "Topology", "topology", "topology_names"),
    "agentsearch.search_space.topologies.program": ("program_role",),
    "agentsearch.search_space._user": ("SearchedPredictor", "load_into"),
})
