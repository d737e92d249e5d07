"""Running LM-written Python in a confined subprocess, never in the search process.

Code a ProgramOfThought node writes, and whole agent designs the meta agent writes, are untrusted:
they may loop, allocate without bound, fork, read the network, secrets or the parent's
environment, or write files. They run in a fresh interpreter (see ``_sandbox_child``) in an empty
temporary directory with a clean environment, with a wall-clock limit enforced here by killing the
whole process group. An agent design reaches an LM only through ``run_agent``'s ``lm`` callback,
which the parent runs, so caching, budgets and cost accounting stay in the search process and no
key ever enters the sandbox.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agentsearch.lm import redact_secrets

_CHILD = Path(__file__).with_name("_sandbox_child.py")
MAX_OUTPUT_CHARS = 2000
MAX_MESSAGE_BYTES = 1 << 20
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
CONFINEMENT_FAILED = 97
"""The child's exit code when a confinement layer could not be set up (the code did not run)."""


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
        return f"error: {lines[-1] if lines else f'exit code {self.returncode}'}"[:MAX_OUTPUT_CHARS]


def run_python(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> SandboxResult:
    """Output goes to files, not pipes, so the child's file-size limit also bounds what it prints."""
    with tempfile.TemporaryDirectory(prefix="agentsearch-sandbox-") as workdir:
        os.chmod(workdir, 0o777)  # the child runs as nobody when we are root
        out_path, err_path = Path(workdir, ".stdout"), Path(workdir, ".stderr")
        with out_path.open("w+b") as out, err_path.open("w+b") as err:
            process = subprocess.Popen(
                _child_command("script", max(1, int(timeout_s)), memory_mb),
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir, env=CLEAN_ENV, start_new_session=True,
            )
            try:
                process.communicate(code.encode(), timeout=timeout_s)
                returncode: int | None = process.returncode
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                _kill_group(process)
            return SandboxResult(_tail(out), _tail(err), returncode)


def _child_command(mode: str, cpu_s: int, memory_mb: int) -> list[str]:
    return [sys.executable, "-I", "-S", str(_CHILD), mode, str(cpu_s), str(memory_mb)]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the code's own children too, if it made any
    except ProcessLookupError:
        pass
    process.wait()


def _tail(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read()[-4 * MAX_OUTPUT_CHARS:].decode("utf-8", "replace")


@dataclass(frozen=True)
class AgentLimits:
    """What one run of an agent design (one example) may use."""

    cpu_s: int = 10
    wall_s: float = 30.0
    """Time the design itself takes; time the parent spends answering its LM calls is not counted."""
    memory_mb: int = 512
    max_lm_calls: int = 20


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


class _Channel:
    """JSON lines to and from the child, with a deadline that pauses while the parent works."""

    def __init__(self, process: subprocess.Popen, wall_s: float) -> None:
        self.process = process
        self.wall_s = wall_s
        self.remaining = wall_s
        self.selector = selectors.DefaultSelector()
        self.selector.register(process.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the child died; receive() reports why

    def receive(self) -> dict[str, Any] | None:
        """The child's next message, or None when it exited without one."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            started = time.monotonic()
            ready = self.selector.select(timeout=max(self.remaining, 0))
            self.remaining -= time.monotonic() - started
            if not ready:
                raise _Stopped(f"wall-clock limit of {self.wall_s:g} s exceeded")
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
            if len(self.buffer) > MAX_MESSAGE_BYTES:
                raise _Stopped(f"message to the parent over {MAX_MESSAGE_BYTES} bytes")
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise _Stopped("malformed message to the parent") from None
        if not isinstance(message, dict):
            raise _Stopped("malformed message to the parent")
        return message


def _exit_reason(returncode: int | None, stderr: str, limits: AgentLimits) -> str:
    if returncode == CONFINEMENT_FAILED:
        return stderr.strip().splitlines()[-1] if stderr.strip() else "sandbox: cannot confine the process"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"CPU-time limit of {limits.cpu_s} s exceeded"
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    lines = stderr.strip().splitlines()
    return f"the design exited (code {returncode}) without an answer" + (f": {lines[-1]}" if lines else "")


def run_agent(code: str, inputs: dict[str, Any], lm: Callable[[dict[str, Any]], str], *,
              limits: AgentLimits = AgentLimits()) -> AgentRun:
    """Run ``forward(inputs, lm)`` of the design ``code`` in the sandbox's agent mode.

    ``lm`` receives each of the design's requests (``{"prompt": str}`` or ``{"messages": [...]}``,
    with ``"options"``) and returns the text; its exceptions go back to the design as a failed
    call. Every way the run can end is an ``AgentRun``: outputs, or an error saying what happened.
    """
    with tempfile.TemporaryDirectory(prefix="agentsearch-agent-") as workdir:
        os.chmod(workdir, 0o777)  # the child runs as nobody when we are root
        with Path(workdir, ".stderr").open("w+b") as err:
            process = subprocess.Popen(
                _child_command("agent", limits.cpu_s, limits.memory_mb), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, cwd=workdir, env=CLEAN_ENV, start_new_session=True,
            )
            channel, calls = _Channel(process, limits.wall_s), 0
            outputs: dict[str, Any] | None = None
            error: str | None = None
            try:
                channel.send({"code": code, "inputs": inputs})
                while True:
                    message = channel.receive()
                    if message is None:
                        process.wait()
                        error = _exit_reason(process.returncode, _tail(err), limits)
                        break
                    if "lm" in message:
                        if calls >= limits.max_lm_calls:
                            channel.send({"error": f"limit of {limits.max_lm_calls} LM calls per example reached"})
                        else:
                            calls += 1
                            channel.send(_answer(lm, message["lm"]))
                        continue
                    if isinstance(message.get("outputs"), dict):
                        outputs = message["outputs"]
                    else:
                        error = str(message.get("error", "malformed message to the parent"))
                    break
            except _Stopped as stop:
                error = str(stop)
            finally:
                _kill_group(process)
                for stream in (process.stdin, process.stdout):
                    stream.close()
            return AgentRun(outputs, error, calls, _tail(err))


def _answer(lm: Callable[[dict[str, Any]], str], request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or not (isinstance(request.get("prompt"), str)
                                             or isinstance(request.get("messages"), list)):
        return {"error": "lm() takes a prompt string or a list of chat messages"}
    try:
        return {"text": str(lm(request))}
    except Exception as exc:  # noqa: BLE001 - the design sees the failure; the search goes on
        return {"error": redact_secrets(f"{type(exc).__name__}: {exc}")[:MAX_OUTPUT_CHARS]}
