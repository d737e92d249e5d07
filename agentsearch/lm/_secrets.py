"""Keeping credentials out of the store: error texts from providers can echo a key back."""

from __future__ import annotations

import os
import re

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_KEY_SHAPE = re.compile(r"\b(sk|pk|rk|hf|gsk|xai|AIza)[-_A-Za-z0-9]{12,}")
MIN_SECRET_LENGTH = 8


def redact_secrets(text: str) -> str:
    """Replace the values of credential-like environment variables, and key-shaped tokens, with ***."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, "***")
    return _KEY_SHAPE.sub("***", text)
