"""Prompt formats: DSPy's chat, JSON and XML adapters, and ``completion``, a plain few-shot text prompt.

Small models follow a ``Field: value`` pattern they can continue far better than chat markup
(SmolLM2-135M is near chance on SST-2 with ChatAdapter), so the format is searched, not fixed.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.adapters.base import Adapter
from dspy.adapters.utils import parse_value
from dspy.utils.exceptions import AdapterParseError


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


class CompletionAdapter(Adapter):
    """Instructions, then demos and the input as ``Label: value`` blocks; the LM continues the text."""

    def __call__(self, lm: dspy.BaseLM, lm_kwargs: dict[str, Any], signature, demos, inputs):
        from agentsearch.lm._local import RAW_PROMPT_PARAM

        lm_kwargs = {**lm_kwargs, "stop": ["\n\n"]}
        if RAW_PROMPT_PARAM in getattr(lm, "supported_params", ()):
            lm_kwargs[RAW_PROMPT_PARAM] = True
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    def _block(self, signature, values: dict[str, Any], *, open_end: bool) -> str:
        """Fields a demo lacks (an intermediate field, a reasoning) are left out rather than the whole demo."""
        outputs = list(signature.output_fields)
        names = list(signature.input_fields) + ([] if open_end else outputs)
        lines = [f"{_label(name)}: {values[name]}" for name in names if values.get(name) is not None]
        if open_end:
            lines.append(f"{_label(outputs[0])}:")
        return "\n".join(lines)

    def format(self, signature, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        blocks = [signature.instructions.strip()] if signature.instructions.strip() else []
        blocks += [
            self._block(signature, demo, open_end=False)
            for demo in demos
            if any(demo.get(name) is not None for name in signature.output_fields)
        ]
        blocks.append(self._block(signature, inputs, open_end=True))
        return [{"role": "user", "content": "\n\n".join(blocks)}]

    def parse(self, signature, completion: str) -> dict[str, Any]:
        outputs = list(signature.output_fields)
        values: dict[str, list[str]] = {outputs[0]: []}
        current = outputs[0]
        for line in completion.strip("\n").split("\n"):
            head, sep, rest = line.partition(":")
            names = [name for name in outputs if _label(name).lower() == head.strip().lower()]
            if sep and names and names[0] not in values:
                current = names[0]
                values[current] = [rest]
            else:
                values[current].append(line)
        missing = [name for name in outputs if name not in values]
        if missing or not "".join(values[outputs[0]]).strip():
            raise AdapterParseError(
                adapter_name="CompletionAdapter", signature=signature, lm_response=completion,
                message=f"no value for {missing[0] if missing else outputs[0]!r}",
            )
        parsed = {}
        for name, lines in values.items():
            try:
                parsed[name] = parse_value("\n".join(lines).strip(), signature.output_fields[name].annotation)
            except Exception as exc:  # pydantic and json errors alike: the LM wrote a value of the wrong type
                raise AdapterParseError(
                    adapter_name="CompletionAdapter", signature=signature, lm_response=completion,
                    message=f"{name!r}: {exc}",
                ) from None
        return parsed


def make_adapter(prompt_format: str) -> Adapter:
    if prompt_format == "completion":
        return CompletionAdapter()
    if prompt_format == "json":
        return dspy.JSONAdapter()
    if prompt_format == "xml":
        return dspy.XMLAdapter()
    # No silent JSON retry: a parse failure is recorded as the candidate's error, not paid for twice.
    return dspy.ChatAdapter(use_json_adapter_fallback=False)
