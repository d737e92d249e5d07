"""Pricing LM calls from litellm's price table: dollars where it knows the model, else tokens.

Kept apart from the DSPy LM factory so that reading a database (``agentsearch candidates``) can
name the cost unit without importing DSPy, and without importing litellm for ``local/`` models.
"""

from __future__ import annotations


def is_local(model: str) -> bool:
    return model.startswith("local/")


def call_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    if is_local(model):  # run in-process: free, and litellm has no price for it
        return 0.0
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # litellm raises for models it has no price for
        return 0.0
    return float(prompt_cost + completion_cost)


def cost_measure(model: str) -> str:
    """``usd`` when litellm knows the model's price, else ``tokens``: the unit cost-aware search compares."""
    return "usd" if call_cost(model, 1000, 1000) > 0 else "tokens"
