"""A small OpenAI-compatible chat server that answers after a fixed latency, deterministically.

Benchmarks use it to measure what agentsearch itself costs per LM call (everything but the wait on
the server) and how close concurrent evaluation comes to ``concurrency / latency``; tests use it to
count the requests that really left the process, independently of any client-side accounting.

The answer fills the output fields a DSPy ChatAdapter or JSONAdapter prompt asks for, each value
picked by a hash of the whole request, so the same prompt always gets the same answer and
different prompts get varied ones. ``running_server`` runs it in a child process, so its work does
not compete with the measured client for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_OUTPUT_FIELDS = re.compile(r"Your output fields are:\n((?:\s*\d+\.\s*`\w+`.*\n?)+)")
_FIELD_NAME = re.compile(r"\d+\.\s*`(\w+)`")


@dataclass(frozen=True)
class ServerStats:
    requests: int
    """Chat completion requests answered since the server started."""
    held_s: float
    """Sum over requests of the time between reading the request and sending the answer."""
    max_in_flight: int = 0
    """Most chat requests held at once: how much concurrency the client really achieved."""


@dataclass
class FakeOpenAIServer:
    """Serves ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /stats`` on 127.0.0.1.

    ``answers`` maps an output field name to the values it may take (one is chosen per request by
    hash); a field not listed gets ``"<field> <hash>"``. A prompt that names no output fields gets
    an ``answers["text"]`` value.
    """

    latency_s: float = 0.1
    answers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    port: int = 0
    _requests: int = 0
    _held_s: float = 0.0
    _in_flight: int = 0
    _max_in_flight: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    # answering ---------------------------------------------------------------------------------
    def answer(self, request: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(request.get("messages"), sort_keys=True).encode()).hexdigest()
        system = "\n".join(str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "system")
        found = _OUTPUT_FIELDS.search(system)
        names = _FIELD_NAME.findall(found.group(1)) if found else []
        values = {name: self._value(name, digest) for name in names}
        if not names:
            return self._value("text", digest)
        if request.get("response_format"):
            return json.dumps(values)
        return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items()) + "[[ ## completed ## ]]"

    def _value(self, name: str, digest: str) -> str:
        choices = list(self.answers.get(name, ()))
        if not choices:
            return f"{name} {digest[:8]}"
        return choices[int(digest[:8], 16) % len(choices)]

    def _completion(self, request: dict[str, Any]) -> dict[str, Any]:
        text = self.answer(request)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in request.get("messages", []))
        prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(text) // 4)
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    # HTTP --------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection serves many requests
                head = await reader.readuntil(b"\r\n\r\n")
                started = time.perf_counter()
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                status, payload = await self._route(method, path.split("?", 1)[0], body)
                if path.startswith("/v1/chat/completions") and status == 200:
                    self._requests += 1
                    self._held_s += time.perf_counter() - started
                data = json.dumps(payload).encode()
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path.endswith("/chat/completions"):
            try:
                request = json.loads(body)
            except json.JSONDecodeError as exc:
                return 400, {"error": {"message": f"invalid JSON: {exc}", "type": "invalid_request_error"}}
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                await asyncio.sleep(self.latency_s)
            finally:
                self._in_flight -= 1
            return 200, self._completion(request)
        if method == "GET" and path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "agentsearch"}]}
        if method == "GET" and path == "/stats":
            return 200, {"requests": self._requests, "held_s": self._held_s, "max_in_flight": self._max_in_flight}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    # running -----------------------------------------------------------------------------------
    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeOpenAIServer:
        """Serve from a daemon thread of this process (enough for tests; benchmarks use ``running_server``)."""
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, server = self._loop, self._server

        async def close() -> None:
            if server is not None:
                server.close()
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:  # open keep-alive connections
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> ServerStats:
        return ServerStats(self._requests, self._held_s, self._max_in_flight)


@dataclass(frozen=True)
class ServerProcess:
    base_url: str

    def stats(self) -> ServerStats:
        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
            data = json.load(response)
        return ServerStats(int(data["requests"]), float(data["held_s"]), int(data["max_in_flight"]))


@contextlib.contextmanager
def running_server(latency_s: float = 0.1, answers: Mapping[str, Sequence[str]] | None = None) -> Iterator[ServerProcess]:
    """Start the server in a child process on a free port; stop it on exit."""
    command = [sys.executable, "-m", "agentsearch.testing", "--latency", str(latency_s),
               "--answers", json.dumps(dict(answers or {}))]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"the fake OpenAI server did not start (printed {line!r})")
        yield ServerProcess(line.strip())
    finally:
        child.terminate()
        child.wait(10)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds before each answer")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--answers", default="{}", help='JSON: {"field": ["value", ...]}')
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, answers=json.loads(args.answers), port=args.port)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server._serve())
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()
