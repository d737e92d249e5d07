"""A small OpenAI-compatible chat server that answers after a fixed latency, deterministically.

It also misbehaves on request, as real providers do: ``faults`` gives the share of chat requests
answered with a 429, a 500, a hang, a truncated body or a context-length error (drawn from a
seeded generator in arrival order, so a retried request usually gets through), ``api_key`` makes
every request without that bearer key a 401, and ``POST /faults`` changes both while it runs
(a test "fixes the provider" and resumes).

Benchmarks use it to measure what agentsearch itself costs per LM call (everything but the wait on
the server) and how close concurrent evaluation comes to ``concurrency / latency``; tests use it to
count the requests that really left the process, independently of any client-side accounting.

The answer fills the output fields a DSPy ChatAdapter or JSONAdapter prompt asks for (or, for a
text prompt ending in an open ``Label:``, as agentsearch's completion format writes, that field), each value
picked by a hash of the whole request, so the same prompt always gets the same answer and
different prompts get varied ones. ``running_server`` runs it in a child process, so its work does
not compete with the measured client for the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
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
_OPEN_LABEL = re.compile(r"(?:^|\n)([A-Za-z][\w ]*):$")


@dataclass(frozen=True)
class ServerStats:
    requests: int
    """Chat completion requests answered since the server started."""
    held_s: float
    """Sum over requests of the time between reading the request and sending the answer."""
    max_in_flight: int = 0
    """Most chat requests held at once: how much concurrency the client really achieved."""
    faults: Mapping[str, int] = field(default_factory=dict)
    """Chat requests answered with each fault kind (``unauthorized`` included)."""


FAULT_KINDS = ("429", "500", "hang", "truncate", "context")
"""What ``faults`` may name: HTTP 429, HTTP 500, no answer for ``hang_s``, a body cut short, a 400 context-length error."""


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
    faults: Mapping[str, float] = field(default_factory=dict)
    """Share of chat requests (0 to 1) answered with each kind of FAULT_KINDS; the shares are drawn in turn."""
    api_key: str | None = None
    """When set, a request must carry ``Authorization: Bearer <api_key>`` or it gets a 401."""
    hang_s: float = 3600.0
    fault_seed: int = 0
    models: Sequence[str] | None = None
    """When set, a request for any other model gets a 404 ``model_not_found``, as a provider answers a mistyped name."""
    answer_by: str = "messages"
    """What picks an answer: the ``messages`` alone, or the whole ``request`` (model, temperature, every
    option), so two clients get the same answers only if they send the same requests."""
    unsupported: Sequence[str] = ()
    """Request parameters answered with a 400 ``Unsupported parameter``, as a provider refuses an option its model lacks."""
    echo_auth: bool = False
    """A 401 quotes the ``Authorization`` header it got, as some OpenAI-style servers quote the key."""
    _requests: int = 0
    _held_s: float = 0.0
    _in_flight: int = 0
    _max_in_flight: int = 0
    _faults_served: dict[str, int] = field(default_factory=dict)
    _rng: random.Random | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.base_events.Server | None = None
    _thread: threading.Thread | None = None

    # answering ---------------------------------------------------------------------------------
    def answer(self, request: dict[str, Any]) -> str:
        hashed = request.get("messages") if self.answer_by == "messages" else {
            key: value for key, value in request.items() if key != "stream"}
        digest = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
        system = "\n".join(str(m.get("content")) for m in request.get("messages", []) if m.get("role") == "system")
        found = _OUTPUT_FIELDS.search(system)
        names = _FIELD_NAME.findall(found.group(1)) if found else []
        values = {name: self._value(name, digest) for name in names}
        if not names:
            # a completion prompt (no system message) ends with the label of the field it wants next
            last = str((request.get("messages") or [{}])[-1].get("content") or "")
            open_label = _OPEN_LABEL.search(last)
            if open_label:
                return " " + self._value(open_label.group(1).strip().lower().replace(" ", "_"), digest)
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
                status, payload = await self._route(method, path.split("?", 1)[0], body, headers)
                if path.startswith("/v1/chat/completions") and status == 200:
                    self._requests += 1
                    self._held_s += time.perf_counter() - started
                truncate = bool(payload.pop("_truncate", False))
                data = json.dumps(payload).encode()
                head_bytes = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
                              f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n").encode()
                if truncate:  # promise the whole body, send a third of it, hang up
                    writer.write(head_bytes + data[:len(data) // 3])
                    await writer.drain()
                    return
                writer.write(head_bytes + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the server is stopping
        finally:
            writer.close()

    def _fault(self) -> str | None:
        """The fault this request gets, if any: one draw per request, in arrival order."""
        if not self.faults:
            return None
        if self._rng is None:
            self._rng = random.Random(self.fault_seed)
        draw, edge = self._rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += float(self.faults.get(kind, 0.0))
            if draw < edge:
                return kind
        return None

    def _count(self, kind: str) -> None:
        self._faults_served[kind] = self._faults_served.get(kind, 0) + 1

    async def _chat(self, request: dict[str, Any], headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            self._count("unauthorized")
            quoted = f" ({headers.get('authorization')})" if self.echo_auth else ""
            return 401, {"error": {"message": f"Incorrect API key provided{quoted}.", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}
        if self.models is not None and request.get("model") not in self.models:
            self._count("model_not_found")
            return 404, {"error": {"message": f"The model `{request.get('model')}` does not exist or you do not have "
                                              "access to it.", "type": "invalid_request_error",
                                   "code": "model_not_found"}}
        refused = sorted(set(request) & set(self.unsupported))
        if refused:
            self._count("unsupported")
            return 400, {"error": {"message": f"Unsupported parameter: '{refused[0]}' is not supported with this "
                                              "model.", "type": "invalid_request_error", "param": refused[0],
                                   "code": "unsupported_parameter"}}
        fault = self._fault()
        if fault is not None:
            self._count(fault)
        if fault == "429":
            return 429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                   "code": "rate_limit_exceeded"}}
        if fault == "500":
            return 500, {"error": {"message": "The server had an error while processing your request.",
                                   "type": "server_error"}}
        if fault == "context":
            return 400, {"error": {"message": "This model's maximum context length is 2048 tokens. However, your "
                                              "messages resulted in 9000 tokens.", "type": "invalid_request_error",
                                   "code": "context_length_exceeded", "param": "messages"}}
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            await asyncio.sleep(self.hang_s if fault == "hang" else self.latency_s)
        finally:
            self._in_flight -= 1
        if fault == "truncate":
            return 200, {**self._completion(request), "_truncate": True}
        return 200, self._completion(request)

    async def _route(self, method: str, path: str, body: bytes,
                     headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path.endswith("/chat/completions"):
            try:
                request = json.loads(body)
            except json.JSONDecodeError as exc:
                return 400, {"error": {"message": f"invalid JSON: {exc}", "type": "invalid_request_error"}}
            return await self._chat(request, headers or {})
        if method == "POST" and path == "/faults":
            self.configure(**json.loads(body or b"{}"))
            return 200, {"faults": dict(self.faults), "api_key_required": self.api_key is not None}
        if method == "GET" and path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "agentsearch"}]}
        if method == "GET" and path == "/stats":
            return 200, {"requests": self._requests, "held_s": self._held_s, "max_in_flight": self._max_in_flight,
                         "faults": dict(self._faults_served)}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    def configure(self, *, faults: Mapping[str, float] | None = None, api_key: str | None = "",
                  hang_s: float | None = None) -> None:
        """Change the faults (None leaves them; {} clears them), the key ("" leaves it; None drops it), the hang."""
        if faults is not None:
            unknown = set(faults) - set(FAULT_KINDS)
            if unknown:
                raise ValueError(f"unknown fault kinds {sorted(unknown)}; use {', '.join(FAULT_KINDS)}")
            self.faults = dict(faults)
        if api_key != "":
            self.api_key = api_key
        if hang_s is not None:
            self.hang_s = hang_s

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
        return ServerStats(self._requests, self._held_s, self._max_in_flight, dict(self._faults_served))


@dataclass(frozen=True)
class ServerProcess:
    base_url: str

    def stats(self) -> ServerStats:
        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
            data = json.load(response)
        return ServerStats(int(data["requests"]), float(data["held_s"]), int(data["max_in_flight"]),
                           dict(data.get("faults") or {}))

    def configure(self, **changes: Any) -> None:
        """``FakeOpenAIServer.configure`` on the running child (``faults``, ``api_key``, ``hang_s``)."""
        root = self.base_url.rsplit("/v1", 1)[0]
        request = urllib.request.Request(f"{root}/faults", data=json.dumps(changes).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@contextlib.contextmanager
def running_server(latency_s: float = 0.1, answers: Mapping[str, Sequence[str]] | None = None, *,
                   faults: Mapping[str, float] | None = None, api_key: str | None = None,
                   hang_s: float = 3600.0, fault_seed: int = 0,
                   models: Sequence[str] | None = None, unsupported: Sequence[str] = (),
                   echo_auth: bool = False) -> Iterator[ServerProcess]:
    """Start the server in a child process on a free port; stop it on exit."""
    command = [sys.executable, "-m", "agentsearch.testing", "--latency", str(latency_s),
               "--answers", json.dumps(dict(answers or {})), "--faults", json.dumps(dict(faults or {})),
               "--hang", str(hang_s), "--fault-seed", str(fault_seed)]
    if models is not None:
        command += ["--models", json.dumps(list(models))]
    if unsupported:
        command += ["--unsupported", json.dumps(list(unsupported))]
    if api_key is not None:
        command += ["--api-key", api_key]
    if echo_auth:
        command.append("--echo-auth")
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
    parser.add_argument("--faults", default="{}", help=f'JSON: {{"kind": share}}, kinds {", ".join(FAULT_KINDS)}')
    parser.add_argument("--api-key", default=None, help="require this bearer key (else 401)")
    parser.add_argument("--hang", type=float, default=3600.0, help="seconds a 'hang' fault holds the request")
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--models", default=None, help='JSON: ["model", ...] served (else any); others get a 404')
    parser.add_argument("--unsupported", default="[]", help='JSON: ["param", ...] a request may not carry (a 400)')
    parser.add_argument("--echo-auth", action="store_true", help="a 401 quotes the Authorization header it got")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(latency_s=args.latency, answers=json.loads(args.answers), port=args.port,
                              faults=json.loads(args.faults), api_key=args.api_key, hang_s=args.hang,
                              fault_seed=args.fault_seed, models=None if args.models is None else json.loads(args.models),
                              unsupported=json.loads(args.unsupported), echo_auth=args.echo_auth)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server._serve())
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()
