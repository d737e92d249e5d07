"""The LM layer: litellm models (hosted or ``local/...``) as DSPy LMs, and usage metering."""

from __future__ import annotations

from agentsearch._lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {
    "agentsearch.lm._factory": ("Usage", "UsageMeter", "build_lm", "model_problem", "provider_params"),
    "agentsearch.lm._cost": ("cost_measure",),
    "agentsearch.lm._gate": ("CallGate",),
    "agentsearch.lm._secrets": ("mask_url", "redact_secrets", "redact_tree"),
})
