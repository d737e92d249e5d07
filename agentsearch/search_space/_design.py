"""An agent design as a runnable DSPy module: its code runs in the sandbox, its LM calls run here.

The design's ``lm(...)`` requests come back to this process through ``run_agent``, and are made
with the task's DSPy LM, so they go through DSPy's cache and the evaluator's usage meter like any
other program's calls, and no key ever enters the sandbox.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import dspy

from agentsearch.evaluators import AgentLimits, run_agent
from agentsearch.exceptions import AgentSearchError
from agentsearch.search_space._spec import DesignSpec


class DesignError(AgentSearchError):
    """A design broke a sandbox limit, raised, or returned no answer; the evaluator scores the example 0."""


class DesignProgram(dspy.Module):
    def __init__(self, spec: DesignSpec, lm: dspy.BaseLM | None = None, *, limits: AgentLimits = AgentLimits(),
                 pin_lm: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.lm = lm
        self.pin_lm = pin_lm
        self.limits = limits
        self.signature = dspy.Signature(spec.signature)

    def _lm_call(self, rollouts: Counter) -> Any:
        lm = self.lm if self.lm is not None and (self.pin_lm or dspy.settings.lm is None) else dspy.settings.lm
        raw_prompt = None
        if lm is not None:
            from agentsearch.lm._local import RAW_PROMPT_PARAM

            raw_prompt = RAW_PROMPT_PARAM if RAW_PROMPT_PARAM in getattr(lm, "supported_params", ()) else None

        def call(request: dict[str, Any]) -> str:
            if lm is None:
                raise AgentSearchError("no LM: pass one to the program or configure dspy")
            options = dict(request["options"])  # checked by the sandbox: temperature, max_tokens, stop
            if options.get("temperature"):  # a sampled call: each repeat is a new sample, cached on its own
                key = json.dumps([request.get("prompt"), request.get("messages"), options], sort_keys=True, default=str)
                options["rollout_id"] = rollouts[key]
                rollouts[key] += 1
            if "prompt" in request:  # a raw completion prompt where the LM takes one, else a user message
                extra = {raw_prompt: True} if raw_prompt else {}
                output = lm(messages=[{"role": "user", "content": request["prompt"]}], **options, **extra)[0]
            else:
                output = lm(messages=request["messages"], **options)[0]
            return output["text"] if isinstance(output, dict) else (output or "")

        return call

    def forward(self, **inputs: Any) -> dspy.Prediction:
        values = {name: inputs[name] for name in self.signature.input_fields}
        result = run_agent(self.spec.code, values, self._lm_call(Counter()), limits=self.limits)
        if result.error is not None:
            raise DesignError(result.error)
        missing = [name for name in self.signature.output_fields if name not in result.outputs]
        if missing:
            raise DesignError(f"forward returned no {', '.join(missing)} (it returned {sorted(result.outputs)})")
        return dspy.Prediction(**{name: str(result.outputs[name]) for name in self.signature.output_fields})
