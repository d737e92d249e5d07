"""A llama.cpp model that keeps the KV states of prompts it moved away from, to come back to them.

llama.cpp reuses the evaluated prefix of the previous prompt only. Searches alternate between
prompts that share long prefixes with an earlier one but not with the last: DSPy's chat adapter
and its JSON fallback take turns for every unparsable answer, a meta-optimizer's proposer prompt
interrupts the task prompts, an ensemble's members take turns. On a CPU the prompt is most of a
call's time (a 250-token prompt costs ~4x its 16 answer tokens), so evaluating it again costs
more than copying its state back. llama-cpp-python's own ``LlamaRAMCache`` saves a state after
every call (a 57 MB copy for a 260-token prompt, which doubled the time of short completions)
and counts only part of that copy against its capacity; this saves a state only when a prompt
is about to overwrite a long evaluated stretch, and counts every byte it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from llama_cpp import Llama, LlamaState

MIN_REUSE_TOKENS = 64
"""A state is saved, or restored, only for at least this many tokens that would otherwise be evaluated
again: below it the copy costs about what it saves."""


def _shared_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differs = np.flatnonzero(a[:n] != b[:n])
    return int(differs[0]) if len(differs) else n


def _state_bytes(state: LlamaState) -> int:
    return int(state.llama_state_size) + int(state.scores.nbytes)


def _tokens(state: LlamaState) -> np.ndarray:
    return state.input_ids[: state.n_tokens]


class PrefixStateLlama(Llama):
    """``Llama`` with a bounded, least-recently-used store of evaluated prompt states.

    Before a prompt is evaluated: if it would discard at least ``MIN_REUSE_TOKENS`` evaluated
    tokens, their state is stored; if a stored state shares a prefix with the prompt longer (by
    ``MIN_REUSE_TOKENS``) than the live one, it is loaded. Outputs are the same as without the
    store, sampled ones included (the restored KV cache and logits are the ones the prompt would
    produce, and the sampling seed is not restored with them); only time changes.
    """

    def __init__(self, *args: Any, state_capacity_bytes: int = 512 << 20, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state_capacity_bytes = state_capacity_bytes
        self._states: list[LlamaState] = []  # least recently used first
        self.states_saved = self.states_loaded = 0

    @property
    def stored_state_bytes(self) -> int:
        return sum(_state_bytes(state) for state in self._states)

    def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
        # passes every argument through unchanged: only the state swap before it is added
        if kwargs.get("reset", True):
            self._swap_state(np.asarray(tokens, dtype=np.intc))
        return super().generate(tokens, *args, **kwargs)

    def _swap_state(self, prompt: np.ndarray) -> None:
        shared = _shared_prefix(self._input_ids, prompt)
        if self.n_tokens - shared >= MIN_REUSE_TOKENS:
            self._store(self.save_state())
        reuse, best = max(((_shared_prefix(_tokens(state), prompt), state) for state in self._states),
                          key=lambda pair: pair[0], default=(0, None))
        if best is None or reuse < shared + MIN_REUSE_TOKENS:
            return
        self._states.remove(best)
        self._states.append(best)
        seed = self._seed  # each call's sampling seed follows from the last; a state's own is older
        self.load_state(best)
        self._seed = seed
        self.states_loaded += 1

    def _store(self, state: LlamaState) -> None:
        # a stored state the new one covers up to its last few tokens only adds bytes (the chat and
        # the JSON prompt of each example would otherwise be kept once per example)
        tokens = _tokens(state)
        self._states = [old for old in self._states
                        if _shared_prefix(_tokens(old), tokens) < old.n_tokens - MIN_REUSE_TOKENS]
        self._states.append(state)
        self.states_saved += 1
        while len(self._states) > 1 and self.stored_state_bytes > self.state_capacity_bytes:
            self._states.pop(0)

    def close(self) -> None:
        self._states.clear()
        super().close()
