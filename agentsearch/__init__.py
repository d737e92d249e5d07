"""agentsearch: search prompts, modules and agent programs for a task, keeping every evaluation in a database."""

from __future__ import annotations

import os

from agentsearch._lazy import lazy_attributes

# litellm fetches its price table from the network at import unless told to use its bundled copy;
# offline runs would stall on retries. Set here, before anything of agentsearch can import litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {
    "agentsearch.exceptions": ("AgentSearchError",),
    "agentsearch._report": ("CandidateResult",),
    "agentsearch.run": ("OptimizeResult", "optimize"),
    "agentsearch.search_space": ("CandidateSpec", "load_into", "load_program", "save_program"),
    "agentsearch._callbacks": ("SearchCallback",),
    "agentsearch.task": ("Task", "load_task"),
    "agentsearch.store": ("get_storage",),
    "agentsearch._teleprompter": ("AgentSearch",),
    "agentsearch._visual": ("report_data", "write_report"),
})
