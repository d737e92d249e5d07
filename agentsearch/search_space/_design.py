"""An agent design as a runnable DSPy module: its code runs in the sandbox, its LM calls run here.

The design's ``lm(...)`` requests come back to this process through ``run_agent``, and are made
with the task's DSPy LM, so they go through DSPy's cache and the evaluator's usage meter like any
other program's calls, and no key ever enters the sandbox.

A call that samples (a temperature above 0, asked by the design or the LM's default) gets its own
cache entry for each time the design repeats it in one run, and for each round the evaluator runs
the example (``sample_repeats``): a repeated sample is a new sample, never DSPy's cached first answer.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import dspy

from agentsearch.evaluators import AgentLimits, SampleRound, run_agent, sample_round
from agentsearch.exceptions import AgentSearchError
from agentsearch.search_space._spec import DesignSpec


class DesignError(AgentSearchError):
    """A design broke a sandbox limit, raised, or returned no answer; the evaluator scores the example 0."""


class DesignProgram(dspy.Module):
    def __init__(self, spec: DesignSpec, lm: dspy.BaseLM | None = None, *, limits: AgentLimits = AgentLimits(),
                 pin_lm: bool = True, repeats: int = 1) -> None:
        super().__init__()
        self.spec = spec
        self.lm = lm
        self.pin_lm = pin_lm
        self.limits = limits
        self.sample_repeats = repeats
        """Rounds the evaluator runs on an example when the design's LM calls sample; the example's score
        is their mean. 1 (no repeats) outside a search."""
        self.signature = dspy.Signature(spec.signature)

    def _lm_call(self, rollouts: Counter, sample: SampleRound | None) -> Any:
        lm = self.lm if self.lm is not None and (self.pin_lm or dspy.settings.lm is None) else dspy.settings.lm
        raw_prompt = None
        if lm is not None:
            from agentsearch.lm._local import RAW_PROMPT_PARAM

            raw_prompt = RAW_PROMPT_PARAM if RAW_PROMPT_PARAM in getattr(lm, "supported_params", ()) else None

        def call(request: dict[str, Any]) -> str:
            if lm is None:
                raise AgentSearchError("no LM: pass one to the program or configure dspy")
            options = dict(request["options"])  # checked by the sandbox: temperature, max_tokens, stop
            temperature = options.get("temperature", getattr(lm, "kwargs", {}).get("temperature"))
            if temperature:  # a sampled call: each repeat is a new sample, cached on its own
                key = json.dumps([request.get("prompt"), request.get("messages"), options], sort_keys=True, default=str)
                # a run makes at most max_lm_calls calls: round r's rollout ids start after round r-1's
                options["rollout_id"] = rollouts[key] + (sample.index * self.limits.max_lm_calls if sample else 0)
                rollouts[key] += 1
                if sample is not None:
                    sample.sampled = True
            if "prompt" in request:  # a raw completion prompt where the LM takes one, else a user message
                extra = {raw_prompt: True} if raw_prompt else {}
                output = lm(messages=[{"role": "user", "content": request["prompt"]}], **options, **extra)[0]
            else:
                output = lm(messages=request["messages"], **options)[0]
            return output["text"] if isinstance(output, dict) else (output or "")

        return call

    def forward(self, **inputs: Any) -> dspy.Prediction:
        values = {name: inputs[name] for name in self.signature.input_fields}
        result = run_agent(self.spec.code, values, self._lm_call(Counter(), sample_round()), limits=self.limits)
        if result.error is not None:
            raise DesignError(result.error)
        missing = [name for name in self.signature.output_fields if name not in result.outputs]
        if missing:
            raise DesignError(f"forward returned no {', '.join(missing)} (it returned {sorted(result.outputs)})")
        return dspy.Prediction(**{name: str(result.outputs[name]) for name in self.signature.output_fields})
