"""Pricing LM calls from litellm's price table: dollars where it knows the model, else tokens.

Kept apart from the DSPy LM factory so that reading a database (``agentsearch candidates``) can
name the cost unit without importing DSPy, and without importing litellm for ``local/`` models.
"""

from __future__ import annotations

import math
from typing import Any

_UNPRICED: set[str] = set()
"""Models litellm could not price: asking again costs CPU on every call (its lookup tries each
fallback before it raises), for the same answer until a price is registered."""

_RATES: dict[str, tuple[float, float] | None] = {}
"""Per model, litellm's (input, output) dollars per token where its price is one rate per token
whatever the prompt's length; None where it is not (a tier above some context length), so the
call is priced by litellm. ``litellm.cost_per_token`` spends about a quarter of a millisecond of
CPU per call resolving the model before it multiplies these two numbers; cleared with the
table's entry when a price is registered."""


def is_local(model: str) -> bool:
    return model.startswith("local/")


def register_price(config: Any) -> None:
    """Teach litellm the user's price (``lm.price``) for a model it cannot price itself."""
    if config.price is None or is_local(config.model):
        return
    import logging

    import litellm

    _UNPRICED.discard(config.model)
    _RATES.pop(config.model, None)
    logger = logging.getLogger("LiteLLM")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its note about cache-token prices is not the user's concern
    try:
        litellm.register_model({config.model: {
            "input_cost_per_token": config.price.input_per_million / 1e6,
            "output_cost_per_token": config.price.output_per_million / 1e6,
            "litellm_provider": config.model.split("/", 1)[0], "mode": "chat",
        }})
    finally:
        logger.setLevel(level)


def has_price(config: Any) -> bool:
    """Whether a dollar budget can be counted for this LM: a user price, or litellm's own."""
    if config.price is not None:
        return True
    return not is_local(config.model) and call_cost(config.model, 1000, 1000) > 0


def call_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    if is_local(model) or model in _UNPRICED:  # local: run in-process, free, and litellm has no price for it
        return 0.0
    if model not in _RATES:
        _RATES[model] = _flat_rates(model)
    rates = _RATES[model]
    if rates is not None:
        return prompt_tokens * rates[0] + completion_tokens * rates[1]
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models it has no price for
        _UNPRICED.add(model)
        return 0.0
    return float(prompt_cost + completion_cost)


def known_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """``call_cost``, or None where there is no price to give (an unknown price is not a price of 0)."""
    cost = call_cost(model, prompt_tokens, completion_tokens)
    return None if is_local(model) or model in _UNPRICED else cost


_PROBES = ((120, 7), (1_000, 1_000), (5_000, 300), (40_000, 2_000), (250_000, 1_000), (2_000_000, 20_000))
"""Prompt and completion sizes at which litellm's own price must equal the flat rates' for them to be used."""


def _flat_rates(model: str) -> tuple[float, float] | None:
    """litellm's (input, output) price per token for ``model`` when nothing but the two token counts
    sets a call's price, in proportion to them: litellm's table has no tier for the model (by
    prompt length or otherwise) and its own ``cost_per_token`` agrees at every probe size; else None."""
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # not in its table: cost_per_token decides (and records it as unpriced)
        return None
    if any(("_above_" in key or "tier" in key) and value for key, value in info.items()):
        return None
    rates = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if not all(isinstance(rate, (int, float)) and not isinstance(rate, bool) for rate in rates):
        return None
    prompt_rate, completion_rate = float(rates[0]), float(rates[1])  # type: ignore[arg-type]
    for prompt_tokens, completion_tokens in _PROBES:
        try:
            expected = sum(litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                  completion_tokens=completion_tokens))
        except Exception:
            return None
        if not math.isclose(prompt_tokens * prompt_rate + completion_tokens * completion_rate, expected,
                            rel_tol=1e-9, abs_tol=1e-15):
            return None
    return prompt_rate, completion_rate


def cost_measure(model: str) -> str:
    """``usd`` when litellm knows the model's price, else ``tokens``: the unit cost-aware search compares."""
    return "usd" if call_cost(model, 1000, 1000) > 0 else "tokens"
