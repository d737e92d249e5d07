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
    """Instructions, then demos and the input as ``Label: value`` blocks; the LM continues the text.

    A signature with several outputs (a reasoning, then a label) is generated field by field: when
    the LM stops before writing a later field, the text so far plus that field's ``Label:`` is sent
    again. Small models seldom write the next label unprompted, but they continue it when it is open.
    """

    def __call__(self, lm: dspy.BaseLM, lm_kwargs: dict[str, Any], signature, demos, inputs):
        from agentsearch.lm._local import RAW_PROMPT_PARAM

        lm_kwargs = {**lm_kwargs, "stop": ["\n\n"]}
        if RAW_PROMPT_PARAM in getattr(lm, "supported_params", ()):
            lm_kwargs[RAW_PROMPT_PARAM] = True
        prompt = self.format(signature, demos, inputs)[0]["content"]
        text = ""
        for _ in signature.output_fields:
            output = lm(messages=[{"role": "user", "content": prompt + text}], **lm_kwargs)[0]
            text += output["text"] if isinstance(output, dict) else (output or "")
            missing = [name for name in signature.output_fields if name not in self._fields(signature, text)]
            if not missing:
                break
            text = f"{text.rstrip()}\n{_label(missing[0])}:"
        return [self.parse(signature, text)]

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

    @staticmethod
    def _fields(signature, completion: str) -> dict[str, str]:
        """Output fields found in a completion that continues the first output's open label; empty ones left out."""
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
        texts = {name: "\n".join(lines).strip() for name, lines in values.items()}
        return {name: text for name, text in texts.items() if text}

    def parse(self, signature, completion: str) -> dict[str, Any]:
        found = self._fields(signature, completion)
        missing = [name for name in signature.output_fields if name not in found]
        if missing:
            raise AdapterParseError(
                adapter_name="CompletionAdapter", signature=signature, lm_response=completion,
                message=f"no value for {missing[0]!r}",
            )
        parsed = {}
        for name, text in found.items():
            try:
                parsed[name] = parse_value(text, signature.output_fields[name].annotation)
            except Exception as exc:  # pydantic and json errors alike: the LM wrote a value of the wrong type
                raise AdapterParseError(
                    adapter_name="CompletionAdapter", signature=signature, lm_response=completion,
                    message=f"{name!r}: {exc}",
                ) from None
        return parsed


class JSONModeAdapter(dspy.JSONAdapter):
    """DSPy's JSONAdapter, asking for JSON mode wherever the model's provider accepts it.

    DSPy's own asks for it only where the LM object declares ``response_format``, and a ``dspy.LM``
    for a server DSPy's native client does not know (vLLM, llama.cpp, any self-hosted name) declares
    nothing, while litellm states the provider takes it. What a prompt format needs from a request
    is the program's, not the LM object's: decided here from the model name alone, the request is
    the same under the search's LM and under the ``dspy.LM`` the user runs the program with.
    """

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any) -> None:
        super()._prepare_response_format(lm, lm_kwargs, signature)
        if "response_format" not in lm_kwargs and accepts_json_mode(getattr(lm, "model", None)):
            lm_kwargs["response_format"] = {"type": "json_object"}


def accepts_json_mode(model: str | None) -> bool:
    """Whether litellm says ``model``'s provider takes ``response_format`` (JSON mode)."""
    from agentsearch.lm import provider_params

    return bool(model) and "response_format" in provider_params(str(model))


def make_adapter(prompt_format: str) -> Adapter:
    if prompt_format == "completion":
        return CompletionAdapter()
    if prompt_format == "json":
        return JSONModeAdapter()
    if prompt_format == "xml":
        return dspy.XMLAdapter()
    # No silent JSON retry: a parse failure is recorded as the candidate's error, not paid for twice.
    return dspy.ChatAdapter(use_json_adapter_fallback=False)
