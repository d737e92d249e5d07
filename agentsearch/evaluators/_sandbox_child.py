"""Runs in the sandbox process, never imported by agentsearch: confine this process, then run untrusted code.

Started as ``python -I -S _sandbox_child.py MODE CPU_S MEMORY_MB`` so no site-packages, user files
or environment reach it. Confinement comes before the untrusted code, and fails closed: if a layer
cannot be set up the code does not run. The layers: resource limits (CPU, memory, file size, open
files); a new network namespace with no interfaces; a private mount namespace with empty tmpfs over
/tmp, /var/tmp and /dev/shm; and, because ``RLIMIT_NPROC`` does not bind root, the uid ``nobody``
when started as root (a process bomb then stops at the limit).

Modes:

- ``script``: run stdin as a program (ProgramOfThought); the parent reads its stdout.
- ``agent``: stdin's first line is ``{"code", "inputs"}``; the code is an agent design defining
  ``forward(inputs, lm)``. On top of the layers above, the process may not start any process
  (``RLIMIT_NPROC`` 1, and the ``os``/``posix`` functions that spawn or signal refuse), and the
  design may import only ``AGENT_MODULES``. Its only way out is ``lm(...)``, a JSON-lines exchange
  with the parent over the process's original stdout; what the design prints goes to stderr.
"""

import builtins
import ctypes
import json
import os
import posix
import resource
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
NOBODY = 65534
AGENT_MODULES = ("math", "cmath", "json", "re", "fractions", "decimal", "statistics", "itertools", "collections",
                 "datetime", "random", "string", "functools", "operator", "heapq", "bisect", "textwrap", "difflib",
                 "unicodedata", "typing", "dataclasses", "enum", "copy", "time")
"""What an agent design may import: computation and text handling, nothing that reaches the system."""
PRELOADED = (*AGENT_MODULES, "_strptime")
"""Imported before the uid drop (as nobody the interpreter's own files may be unreadable, e.g. under a
root-owned home); ``_strptime`` is imported lazily by ``datetime.strptime``."""
REFUSED_CALLS = ("system", "popen", "fork", "forkpty", "vfork", "execv", "execve", "execvp", "execvpe", "execl",
                 "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle",
                 "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp", "kill", "killpg", "setuid", "setgid",
                 "unshare", "setns")
"""Reachable through preloaded modules (``random._os``) although ``os`` cannot be imported; refused in agent mode."""


def _limit(name: str, value: int) -> None:
    resource.setrlimit(getattr(resource, name), (value, value))


def _confine(cpu_s: int, memory_mb: int, max_processes: int) -> None:
    _limit("RLIMIT_CPU", cpu_s)
    _limit("RLIMIT_AS", memory_mb * 1024 * 1024)
    _limit("RLIMIT_FSIZE", 1024 * 1024)
    _limit("RLIMIT_NOFILE", 64)
    _limit("RLIMIT_CORE", 0)
    for module in PRELOADED:
        __import__(module)
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET | CLONE_NEWNS | (0 if os.geteuid() == 0 else CLONE_NEWUSER)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare(network and mount namespaces) failed")
    # Shared scratch places get a private empty tmpfs: what the code writes there vanishes with it.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "making mounts private failed")
    for scratch in (b"/tmp", b"/var/tmp", b"/dev/shm"):
        if os.path.isdir(scratch) and libc.mount(b"tmpfs", scratch, b"tmpfs", 0, b"size=16m") != 0:
            raise OSError(ctypes.get_errno(), f"mounting a private {scratch.decode()} failed")
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    _limit("RLIMIT_NPROC", max_processes)


def _refuse(name: str):
    def refused(*args, **kwargs):
        raise PermissionError(f"os.{name} is not allowed in the sandbox")

    return refused


def _guard_imports() -> None:
    """Only AGENT_MODULES (and what they import themselves) can be imported from here on."""
    original = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.partition(".")[0] not in PRELOADED:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox; allowed: {', '.join(AGENT_MODULES)}")
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = guarded
    for module in (os, posix):
        for name in REFUSED_CALLS:
            if hasattr(module, name):
                setattr(module, name, _refuse(name))


def _run_script(cpu_s: int, memory_mb: int) -> None:
    code = sys.stdin.read()
    _confine_or_exit(cpu_s, memory_mb, max_processes=32)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(code, "<program>", "exec"), namespace)  # noqa: S102 - confined process, see module docstring


def _run_agent(cpu_s: int, memory_mb: int) -> None:
    request = json.loads(sys.stdin.readline())
    channel_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the design's prints go to stderr, never into the exchange with the parent
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        channel_out.write(json.dumps(message) + "\n")
        channel_out.flush()

    def lm(prompt_or_messages, **options):
        """The design's LM: a string is a raw completion prompt, a list is chat messages; returns the text."""
        key = "prompt" if isinstance(prompt_or_messages, str) else "messages"
        send({"lm": {key: prompt_or_messages, "options": options}})
        reply = json.loads(sys.stdin.readline() or "{}")
        if "text" not in reply:
            raise RuntimeError(f"LM call failed: {reply.get('error', 'no reply from the parent')}")
        return reply["text"]

    _confine_or_exit(cpu_s, memory_mb, max_processes=1)
    _guard_imports()
    try:
        namespace = {"__name__": "design", "__builtins__": builtins}
        exec(compile(request["code"], "<design>", "exec"), namespace)  # noqa: S102 - confined process
        forward = namespace.get("forward")
        if not callable(forward):
            raise TypeError("the design defines no forward(inputs, lm) function")
        outputs = forward(dict(request["inputs"]), lm)
        if not isinstance(outputs, dict):
            raise TypeError(f"forward returned {type(outputs).__name__}, not a dict of output fields")
        send({"outputs": json.loads(json.dumps(outputs, default=str))})
    except BaseException as exc:  # noqa: BLE001 - every failure of the design is reported to the parent
        frames = traceback.extract_tb(exc.__traceback__)
        line = next((f"line {f.lineno}: " for f in reversed(frames) if f.filename == "<design>"), "")
        detail = f"memory limit of {memory_mb} MB reached" if isinstance(exc, MemoryError) else str(exc)
        send({"error": f"{line}{type(exc).__name__}: {detail}"[:2000]})


def _confine_or_exit(cpu_s: int, memory_mb: int, max_processes: int) -> None:
    try:
        _confine(cpu_s, memory_mb, max_processes)
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot confine the process, code not run: {exc}", file=sys.stderr)
        sys.exit(97)


def main() -> None:
    mode, cpu_s, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    (_run_agent if mode == "agent" else _run_script)(cpu_s, memory_mb)


if __name__ == "__main__":
    main()
