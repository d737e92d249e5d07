"""Helpers for benchmarks and tests: a fake OpenAI-compatible LM server with fixed latency."""

from __future__ import annotations

from agentsearch.testing._openai_server import (
    FAULT_KINDS,
    FakeOpenAIServer,
    ServerStats,
    running_server,
)

__all__ = ["FAULT_KINDS", "FakeOpenAIServer", "ServerStats", "running_server"]
