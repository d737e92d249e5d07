"""Helpers for benchmarks and tests: a fake OpenAI-compatible LM server with fixed latency."""

from __future__ import annotations

from agentsearch.testing._openai_server import (
    FakeOpenAIServer,
    ServerStats,
    running_server,
)

__all__ = ["FakeOpenAIServer", "ServerStats", "running_server"]
