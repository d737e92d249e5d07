"""A deterministic fake LM behind litellm (provider ``fake``), so tests exercise the real call path.

It classifies sentiment by keyword, but only when the prompt is a completion-format prompt with at
least two demos; otherwise it answers "positive" (chance on balanced data). So a search that finds
the completion format with demos beats the seed, as the real tiny model does. A sentence containing
EXPLODE makes the call fail.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse

POSITIVE_WORDS = ("delight", "wonderful", "brilliant", "joy", "great", "charming", "love", "fine")


class KeywordLLM(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.last_params: dict[str, Any] = {}
        self._lock = threading.Lock()

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        with self._lock:
            self.calls += 1
            self.last_params = dict(kwargs.get("optional_params") or {})
        text = "\n\n".join(str(m.get("content") or "") for m in messages)
        if "improving the instruction" in text:
            reply = f"Decide whether the review is positive or negative (variant {self.calls})."
        else:
            sentences = re.findall(r"Sentence: (.*)", text) or re.findall(r"\[\[ ## sentence ## \]\]\n(.*)", text)
            sentence = sentences[-1] if sentences else ""
            if "EXPLODE" in sentence:
                raise RuntimeError("the fake LM was told to fail")
            demos = text.count("Label:") - 1
            if demos >= 2:
                label = "positive" if any(w in sentence for w in POSITIVE_WORDS) else "negative"
            else:
                label = "positive"
            is_chat = messages[0].get("role") == "system"
            reply = f"[[ ## label ## ]]\n{label}\n\n[[ ## completed ## ]]" if is_chat else f" {label}"
        return ModelResponse(
            model=f"fake/{model}",
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            usage={"prompt_tokens": len(text.split()), "completion_tokens": 2, "total_tokens": len(text.split()) + 2},
        )


FAKE = KeywordLLM()


def register() -> KeywordLLM:
    if not any(entry.get("provider") == "fake" for entry in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "fake", "custom_handler": FAKE}]
    return FAKE
