"""The LM layer: litellm models (hosted or ``local/...``) as DSPy LMs, and usage metering."""

from __future__ import annotations

from agentsearch.lm._factory import Usage, UsageMeter, build_lm, cost_measure
from agentsearch.lm._secrets import redact_secrets

__all__ = ["Usage", "UsageMeter", "build_lm", "cost_measure", "redact_secrets"]
