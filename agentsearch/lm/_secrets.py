"""Keeping credentials out of every output: messages, logs, the store and exported programs.

Two kinds of secret reach agentsearch: API keys, which litellm reads from the environment (their
values are masked wherever they appear), and credentials written into a URL (a storage URL's
password, ``https://user:pass@host`` in an ``api_base``, ``?api_key=`` in a query), which are
masked by shape, so a URL can be shown and stored without what lets someone else use it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
_KEY_SHAPE = re.compile(r"\b(sk|pk|rk|hf|gsk|xai|AIza)[-_A-Za-z0-9]{12,}")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s'\"]*):(?P<secret>[^@\s'\"/]+)@")
_QUERY_SECRET = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd|api[_-]?key|key|token|access_token|secret)=)"
                           r"(?P<secret>[^&;#\s'\"]+)")
MIN_SECRET_LENGTH = 8
MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password and credential query parameters replaced by ``***``."""
    url = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m.group('head')}{MASK}", url)


def has_query_secret(url: str) -> bool:
    """Whether a URL carries a credential in its query (``?api_key=...``)."""
    return _QUERY_SECRET.search(url) is not None


def split_url_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without ``user:password@``, and the ``Authorization: Basic`` header those credentials mean.

    HTTP clients turn URL credentials into that header anyway; sent as a header, they never reach the
    ``api_base`` litellm copies into every response, which DSPy's disk cache then keeps."""
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}
    netloc = parts.netloc.rsplit("@", 1)[1]
    user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    encoded = base64.b64encode(user_pass.encode()).decode()
    # what is sent is a derived form: a server that quotes the header it got (in a 401, say) would show
    # base64(user:pass), which decodes to the password; masked by value from here on
    remember_secrets(encoded, user_pass, unquote(parts.password or ""), parts.password or "")
    return urlunsplit(parts._replace(netloc=netloc)), {"Authorization": "Basic " + encoded}


def is_secret_name(name: str) -> bool:
    """Whether a variable or option of this name holds a credential (``OPENAI_API_KEY``, ``api_key``,
    headers); a count of tokens (``max_tokens``, ``max_completion_tokens``) is none."""
    lowered = name.lower()
    if lowered.endswith("tokens"):
        return False
    return bool(_SECRET_NAME.search(name)) or "header" in lowered


def holds_secret(name: str, value: Any) -> bool:
    """Whether an option is a credential or holds one anywhere inside (``extra_body={"api_key": ...}``)."""
    if is_secret_name(name):
        return True
    if isinstance(value, dict):
        return any(holds_secret(str(key), item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_secret("", item) for item in value)
    return False


_HANDED_OVER: dict[tuple[str, str | None], dict[str, Any]] = {}
_HANDED_OVER_VALUES: set[str] = set()
_LOCK = threading.Lock()


def hand_over_credentials(model: str, api_base: str | None, credentials: dict[str, Any]) -> None:
    """Credentials given in memory (a ``dspy.LM``'s ``api_key``, its ``extra_headers``) for ``model`` at
    ``api_base``: this process's LMs for that model and server send them; nothing stores them, and
    every string agentsearch shows or writes has them masked, as an environment key's value."""
    texts = [text for text in _strings(credentials) if len(text) >= MIN_SECRET_LENGTH]
    with _LOCK:
        _HANDED_OVER[(model, api_base)] = dict(credentials)
        for text in texts:  # a header's "Bearer <key>" is masked whole and by its parts
            _HANDED_OVER_VALUES.add(text)
            _HANDED_OVER_VALUES.update(part for part in text.split() if len(part) >= MIN_SECRET_LENGTH)


def remember_secrets(*values: str) -> None:
    """Mask these values (credentials, or forms derived from one) wherever they appear from now on;
    those shorter than ``MIN_SECRET_LENGTH`` are left, as they would mask ordinary words."""
    with _LOCK:
        _HANDED_OVER_VALUES.update(value for value in values if len(value) >= MIN_SECRET_LENGTH)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


def handed_over_credentials(model: str, api_base: str | None) -> dict[str, Any]:
    """What ``hand_over_credentials`` keeps for ``model`` at ``api_base`` (empty: the environment's key applies)."""
    with _LOCK:
        return dict(_HANDED_OVER.get((model, api_base), {}))


def redact_secrets(text: str) -> str:
    """Mask the values of credential-like environment variables, credentials handed over in memory,
    key-shaped tokens and URL credentials."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, MASK)
    with _LOCK:
        handed_over = sorted(_HANDED_OVER_VALUES, key=len, reverse=True)
    for value in handed_over:
        if value in text:
            text = text.replace(value, MASK)
    return mask_url(_KEY_SHAPE.sub(MASK, text))


def redact_tree(value: Any) -> Any:
    """``redact_secrets`` over every string of a JSON-like value (a task as the store keeps it)."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {key: redact_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_tree(item) for item in value]
    return value
