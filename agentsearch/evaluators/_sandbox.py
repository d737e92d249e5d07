"""Running LM-written Python in a sandbox, never in the search process; the parent's side of it.

Code a ProgramOfThought node writes, and whole agent designs the meta agent writes, are untrusted:
they may loop, allocate without bound, try to read the task's labels, a key or the experiment
database, signal other processes, or stall the parent. They run behind the kernel boundary of
``_isolation`` (bubblewrap namespaces, seccomp, an empty filesystem view), and this side makes sure
the parent can never be held: every read and write on the pipe has the example's deadline, messages
are capped in size and depth, and a sandbox that misbehaves is killed (with every process in it)
and its example fails with the reason. An agent design reaches an LM only through ``run_agent``'s
``lm`` callback, which the parent runs after checking the request against ``AgentLimits``, so
caching, budgets, keys, the model and its options stay in the search process.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from agentsearch.evaluators._isolation import isolation, wait_exit
from agentsearch.exceptions import LMUnavailableError
from agentsearch.lm import redact_secrets

MAX_OUTPUT_CHARS = 2000
MAX_MESSAGE_BYTES = 1 << 20
MAX_CONTAINERS = 100_000
"""The most ``[`` and ``{`` a message may hold, counted before it is parsed: 290,000 empty lists under
the byte cap once cost the parent a third of a second each to parse and walk."""
MAX_REFUSALS = 64
MESSAGE_OVERHEAD = 16
"""Characters a chat message counts beyond its role and content (its keys and quotes as sent), so
that many empty messages weigh what they cost; a content's own characters count once."""
"""LM requests past ``max_lm_calls`` that are answered with a refusal before the design is stopped."""
MAX_DEPTH = 32
"""How deeply a message from the sandbox may nest (the parent's JSON and repr recurse on it)."""
ROLES = ("system", "user", "assistant")
MAX_STOPS = 4


@dataclass(frozen=True)
class SandboxResult:
    stdout: str
    stderr: str
    returncode: int | None
    """None when the code was killed at the timeout."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def summary(self) -> str:
        """What the LM is shown: the printed output, or the error's last line."""
        if self.returncode is None:
            return "error: the program timed out"
        if self.ok:
            return self.stdout.strip()[-MAX_OUTPUT_CHARS:] or "(the program printed nothing)"
        lines = self.stderr.strip().splitlines()
        if not lines and self.returncode in (128 + signal.SIGKILL, 128 + signal.SIGXCPU):
            return "error: the program was stopped at its CPU-time limit"
        return f"error: {lines[-1] if lines else f'exit code {self.returncode}'}"[:MAX_OUTPUT_CHARS]


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``code`` as a program in the sandbox; its output goes to unlinked files the parent holds,
    so the runner's file-size limit also bounds what it prints, and nothing is left on disk.

    Raises IsolationUnavailableError when the sandbox cannot be set up (nothing runs)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sandbox = isolation().start("script", max(1, int(timeout_s)), memory_mb, stdin=subprocess.PIPE, stdout=out,
                                    stderr=err)
        channel = _Channel(sandbox.process, timeout_s)
        returncode: int | None = None
        try:
            channel.write(code.encode())
            channel.close_input()
            returncode = wait_exit(sandbox.process, max(channel.remaining, 0.01))
        except _Stopped:
            pass
        finally:
            sandbox.kill()
        if not sandbox.started():
            raise sandbox.launch_error(_tail(err))
        return SandboxResult(_tail(out), _tail(err), returncode)


def _tail(handle: IO[bytes]) -> str:
    handle.seek(0, os.SEEK_END)
    handle.seek(max(0, handle.tell() - 4 * MAX_OUTPUT_CHARS))
    return handle.read().decode("utf-8", "replace")


@dataclass(frozen=True)
class AgentLimits:
    """What one run of an agent design (one example) may use."""

    cpu_s: int = 10
    wall_s: float = 30.0
    """Time the design itself takes; time the parent spends answering its LM calls is not counted."""
    memory_mb: int = 512
    max_lm_calls: int = 20
    max_tokens: int = 1024
    """The most tokens one of the design's LM calls may ask for."""
    max_prompt_chars: int = 50_000
    """The most characters one LM request may carry: its prompt, or its messages (roles, contents
    and ``MESSAGE_OVERHEAD`` each, so that many empty messages weigh what they cost)."""
    max_messages: int = 256
    """The most chat messages one LM request may hold."""


@dataclass(frozen=True)
class AgentRun:
    outputs: dict[str, Any] | None
    error: str | None
    """Why there are no outputs: the design's exception, or the limit it broke."""
    lm_calls: int
    stderr: str
    """What the design printed (its stdout is redirected there), tail only."""


class _Stopped(Exception):
    """The design broke a limit the parent enforces."""


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, without recursion (a message may nest a thousand levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


class _Channel:
    """JSON lines to and from the sandbox, with a deadline that moves only while the parent answers
    an LM call (``excuse``).

    Everything else the parent does for the design counts against its ``wall_s``: waiting, and
    reading and parsing its messages too (a design that sends costly messages once held the parent
    90 s past a 3 s limit). Both directions wait only as long as the design has left
    (``remaining``): a design that stops reading its replies, closes its end or never answers is
    stopped, never waited on."""

    def __init__(self, process: subprocess.Popen, wall_s: float) -> None:
        assert process.stdin is not None
        self.process = process
        self.wall_s = wall_s
        self.deadline = time.monotonic() + wall_s
        self.stdin = process.stdin.fileno()
        self.stdout = process.stdout.fileno() if process.stdout is not None else -1
        os.set_blocking(self.stdin, False)
        self.buffer = b""

    @property
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def excuse(self, seconds: float) -> None:
        """Time the parent spent answering one of the design's LM calls: not the design's."""
        self.deadline += seconds

    def _check_time(self) -> None:
        if self.remaining < 0:
            raise _Stopped(f"wall-clock limit of {self.wall_s:g} s exceeded")

    def _wait(self, fd: int, event: int) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, event)
            ready = selector.select(timeout=max(self.remaining, 0))
        if not ready:
            raise _Stopped(f"wall-clock limit of {self.wall_s:g} s exceeded")

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def close_input(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except OSError:
            pass  # the sandbox closed its end first

    def write(self, payload: bytes) -> None:
        data = memoryview(payload)
        while data:
            self._wait(self.stdin, selectors.EVENT_WRITE)
            try:
                written = os.write(self.stdin, data)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return  # the sandbox closed its end; receive() finds out why
            data = data[written:]

    def receive(self) -> dict[str, Any] | None:
        """The sandbox's next message, or None when it closed its end without one."""
        while b"\n" not in self.buffer:
            self._wait(self.stdout, selectors.EVENT_READ)
            chunk = os.read(self.stdout, 65536)
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise _Stopped(f"message to the parent over {MAX_MESSAGE_BYTES} bytes")
        line, self.buffer = self.buffer.split(b"\n", 1)
        self._check_time()
        containers = line.count(b"[") + line.count(b"{")  # C-speed, before a parse that costs far more
        if containers > MAX_CONTAINERS:
            raise _Stopped(f"message to the parent with {containers} lists and objects, over {MAX_CONTAINERS}")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise _Stopped("malformed message to the parent") from None
        if not isinstance(message, dict):
            raise _Stopped("malformed message to the parent")
        if _depth(message) > MAX_DEPTH:
            raise _Stopped(f"message to the parent nested deeper than {MAX_DEPTH} levels")
        self._check_time()
        return message

    def exit_code(self) -> int | None:
        """The sandbox's exit code once it has ended, waiting no longer than the time left."""
        code = wait_exit(self.process, max(self.remaining, 0.01))
        if code is None:
            raise _Stopped(f"wall-clock limit of {self.wall_s:g} s exceeded (the design closed its channel "
                           "and went on running)")
        return code


def _exit_reason(returncode: int | None, stderr: str, limits: AgentLimits) -> str:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL):
        return f"CPU-time limit of {limits.cpu_s} s exceeded"
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    if returncode is not None and returncode > 128 and returncode - 128 in signal.valid_signals():
        return f"killed by signal {signal.Signals(returncode - 128).name}"
    lines = stderr.strip().splitlines()
    return f"the design exited (code {returncode}) without an answer" + (f": {lines[-1]}" if lines else "")


def run_agent(code: str, inputs: dict[str, Any], lm: Callable[[dict[str, Any]], str], *,
              limits: AgentLimits = AgentLimits()) -> AgentRun:
    """Run ``forward(inputs, lm)`` of the design ``code`` in the sandbox's agent mode.

    ``lm`` receives each of the design's requests, checked and normalised by ``check_request``
    (``{"prompt": str}`` or ``{"messages": [...]}``, with ``"options"``), and returns the text; its
    exceptions go back to the design as a failed call. Every way the run can end is an ``AgentRun``:
    outputs, or an error saying what happened. Raises IsolationUnavailableError (nothing runs) when
    the sandbox cannot be set up.
    """
    with tempfile.TemporaryFile() as err:
        sandbox = isolation().start("agent", limits.cpu_s, limits.memory_mb, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err)
        process = sandbox.process
        channel, calls, refused = _Channel(process, limits.wall_s), 0, 0
        outputs: dict[str, Any] | None = None
        error: str | None = None

        def answering(request: dict[str, Any]) -> str:
            started = time.monotonic()
            try:
                return lm(request)
            finally:
                channel.excuse(time.monotonic() - started)

        try:
            channel.send({"code": code, "inputs": inputs})
            while True:
                message = channel.receive()
                if message is None:
                    error = _exit_reason(channel.exit_code(), _tail(err), limits)
                    break
                if "lm" in message:
                    if calls >= limits.max_lm_calls:
                        refused += 1
                        if refused > MAX_REFUSALS:
                            raise _Stopped(f"over {MAX_REFUSALS} LM requests past the limit of "
                                           f"{limits.max_lm_calls} LM calls per example")
                        channel.send({"error": f"limit of {limits.max_lm_calls} LM calls per example reached"})
                    else:
                        calls += 1
                        channel.send(_answer(answering, message["lm"], limits))
                    continue
                if isinstance(message.get("outputs"), dict):
                    outputs = message["outputs"]
                else:
                    error = str(message.get("error", "malformed message to the parent"))[:MAX_OUTPUT_CHARS]
                break
        except _Stopped as stop:
            error = str(stop)
        finally:
            sandbox.kill()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        if outputs is None and not sandbox.started():
            raise sandbox.launch_error(_tail(err))
        return AgentRun(outputs, error, calls, _tail(err))


def check_request(request: Any, limits: AgentLimits) -> dict[str, Any]:
    """The design's LM request as the parent will make it, or ValueError saying what is not allowed.

    The parent alone chooses the model, the endpoint and the key; a design chooses only its text
    (a prompt, or messages with a role and a string content: no images, tools or other keys) and
    ``temperature`` (0 to 2), ``max_tokens`` (1 to ``limits.max_tokens``) and ``stop`` (up to 4
    strings), within ``limits.max_messages`` messages and ``limits.max_prompt_chars`` characters,
    each message counting its role, its content and ``MESSAGE_OVERHEAD`` (a request of 24,000 empty
    messages once passed a count of contents alone).
    """
    if not isinstance(request, dict):
        raise ValueError("lm() takes a prompt string or a list of chat messages")
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("lm() options must be keyword arguments")
    if isinstance(request.get("prompt"), str):
        text: dict[str, Any] = {"prompt": request["prompt"]}
        size = len(request["prompt"])
    elif isinstance(request.get("messages"), list) and request["messages"]:
        if len(request["messages"]) > limits.max_messages:  # counted before any is read
            raise ValueError(f"request of {len(request['messages'])} messages, over the limit of {limits.max_messages}")
        messages = []
        for message in request["messages"]:
            if not isinstance(message, dict) or set(message) != {"role", "content"}:
                raise ValueError("each message must be {'role': ..., 'content': ...} and nothing else")
            if message["role"] not in ROLES or not isinstance(message["content"], str):
                raise ValueError(f"a message's role must be one of {', '.join(ROLES)} and its content a string")
            messages.append({"role": message["role"], "content": message["content"]})
        text = {"messages": messages}
        size = sum(len(m["role"]) + len(m["content"]) + MESSAGE_OVERHEAD for m in messages)
    else:
        raise ValueError("lm() takes a prompt string or a non-empty list of chat messages")
    if size > limits.max_prompt_chars:
        raise ValueError(f"request of {size} characters, over the limit of {limits.max_prompt_chars}")
    unknown = sorted(set(options) - {"temperature", "max_tokens", "stop"})
    if unknown:
        raise ValueError(f"lm() option {unknown[0]!r} is not allowed; allowed: temperature, max_tokens, stop")
    checked: dict[str, Any] = {}
    if "temperature" in options:
        temperature = options["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ValueError("temperature must be a number from 0 to 2")
        checked["temperature"] = float(temperature)
    if "max_tokens" in options:
        tokens = options["max_tokens"]
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= limits.max_tokens:
            raise ValueError(f"max_tokens must be an integer from 1 to {limits.max_tokens}")
        checked["max_tokens"] = tokens
    if "stop" in options:
        stop = [options["stop"]] if isinstance(options["stop"], str) else options["stop"]
        if (not isinstance(stop, list) or not 1 <= len(stop) <= MAX_STOPS
                or not all(isinstance(s, str) and 0 < len(s) <= 100 for s in stop)):
            raise ValueError(f"stop must be a string or a list of up to {MAX_STOPS} strings of up to 100 characters")
        checked["stop"] = stop
    return {**text, "options": checked}


def _answer(lm: Callable[[dict[str, Any]], str], request: Any, limits: AgentLimits) -> dict[str, Any]:
    try:
        checked = check_request(request, limits)
    except ValueError as exc:
        return {"error": str(exc)}
    try:
        return {"text": str(lm(checked))}
    except Exception as exc:  # noqa: BLE001 - the design sees the failure; the search goes on
        if isinstance(exc, LMUnavailableError):
            raise  # an outage is the run's, not the design's: no score for this example
        return {"error": redact_secrets(f"{type(exc).__name__}: {exc}")[:MAX_OUTPUT_CHARS]}
