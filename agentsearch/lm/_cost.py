"""Pricing LM calls from litellm's price table: dollars where it knows the model, else tokens.

Kept apart from the DSPy LM factory so that reading a database (``agentsearch candidates``) can
name the cost unit without importing DSPy, and without importing litellm for ``local/`` models.
"""

from __future__ import annotations

from typing import Any

_UNPRICED: set[str] = set()
"""Models litellm could not price: asking again costs CPU on every call (its lookup tries each
fallback before it raises), for the same answer until a price is registered."""


def is_local(model: str) -> bool:
    return model.startswith("local/")


def register_price(config: Any) -> None:
    """Teach litellm the user's price (``lm.price``) for a model it cannot price itself."""
    if config.price is None or is_local(config.model):
        return
    import logging

    import litellm

    _UNPRICED.discard(config.model)
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
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models it has no price for
        _UNPRICED.add(model)
        return 0.0
    return float(prompt_cost + completion_cost)


def cost_measure(model: str) -> str:
    """``usd`` when litellm knows the model's price, else ``tokens``: the unit cost-aware search compares."""
    return "usd" if call_cost(model, 1000, 1000) > 0 else "tokens"
