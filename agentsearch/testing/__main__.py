"""``python -m agentsearch.testing``: run the fake OpenAI-compatible server, printing its base URL."""

from __future__ import annotations

from agentsearch.testing._openai_server import main

main()
