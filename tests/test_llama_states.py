"""The embedded model's store of prompt states: same outputs as plain llama.cpp, fewer tokens evaluated."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="needs the 'local' extra")

from llama_cpp import Llama  # noqa: E402

from agentsearch.lm._llama_states import PrefixStateLlama  # noqa: E402
from agentsearch.lm._local import local_model_path  # noqa: E402

pytestmark = pytest.mark.e2e

DEMOS = "".join(f"Sentence: a film, number {i}, that was fine to watch.\nLabel: positive\n\n" for i in range(6))
SYSTEMS = [f"Answer in the {style} format.\n{DEMOS}" for style in ("chat", "JSON")]


def _answers(model: Llama, temperature: float = 0.0) -> list[str]:
    """The pattern that made states worth keeping: two long prompts taking turns, per example."""
    answers = []
    for i in range(4):
        for system in SYSTEMS:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Sentence: movie {i}.\n"}]
            reply = model.create_chat_completion(messages=messages, max_tokens=12, temperature=temperature)
            answers.append(reply["choices"][0]["message"]["content"])
    return answers


def _model(cls: type[Llama], **kwargs) -> Llama:
    return cls(model_path=str(local_model_path("smollm2-135m")), n_ctx=2048, n_threads=2, seed=0, verbose=False,
               **kwargs)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_alternating_prompts_give_the_same_answers_and_come_back_to_stored_states(temperature):
    plain, stored = _model(Llama), _model(PrefixStateLlama)
    try:
        assert _answers(stored, temperature) == _answers(plain, temperature)
        assert stored.states_loaded >= 6  # every prompt after the first two starts from a stored state
        assert stored.stored_state_bytes > 0
        assert len(stored._states) == 2  # one per system prompt, not one per example
    finally:
        plain.close()
        stored.close()


def test_short_divergences_store_nothing_and_the_store_keeps_to_its_capacity():
    model = _model(PrefixStateLlama, state_capacity_bytes=1)
    try:
        for i in range(3):  # a shared prefix, a different short ending: the prefix reuse of llama.cpp itself
            model.create_completion(f"{DEMOS}Sentence: movie {i}.\nLabel:", max_tokens=2, temperature=0.0)
        assert model.states_saved == 0
        _answers(model)
        assert model.states_saved > 0
        assert len(model._states) == 1  # over capacity: all but the newest are dropped
    finally:
        model.close()
