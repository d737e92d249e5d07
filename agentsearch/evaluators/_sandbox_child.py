"""Runs inside bubblewrap, never imported by agentsearch: finish confining this process, then run untrusted code.

Started by ``_isolation.Isolation.command`` as ``python -I -S -B runner.py MODE CPU_S MEMORY_MB EXEC_FILTER READY_FD``
in its own namespaces, under the launcher's seccomp filter, with nothing of the host's filesystem
but the interpreter. Here it reads its input, sets the resource limits (which, since no process or
thread can be created, bind the whole sandbox), loads the second seccomp filter (``EXEC_FILTER``, hex BPF:
no ``execve`` from here on), checks both filters are in force, writes one byte to ``READY_FD`` and
closes it, and only then runs the code. A layer that cannot be set up ends the process with
``CONFINEMENT_FAILED`` before the code runs (and without the byte: the parent then knows the
machine failed, not the code).

Modes:

- ``probe``: report, as JSON on stdout, whether each layer holds (``_isolation.isolation()`` refuses
  to run anything when one does not).
- ``script``: run stdin as a program (ProgramOfThought); the parent reads its stdout.
- ``agent``: stdin's first line is ``{"code", "inputs"}``; the code is an agent design defining
  ``forward(inputs, lm)``. Its only way out is ``lm(...)``, a JSON-lines exchange with the parent
  over the process's original stdout; what the design prints goes to stderr.

In ``script`` and ``agent`` modes a second, Python-level layer stays on: only ``AGENT_MODULES`` can
be imported, and the ``os``/``posix`` functions that spawn, exec or signal refuse. It is not the
boundary (the kernel is), but it turns the common mistakes into clear errors.
"""

import builtins
import ctypes
import json
import os
import posix
import resource
import sys
import traceback

CONFINEMENT_FAILED = 97
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
AGENT_MODULES = ("math", "cmath", "json", "re", "fractions", "decimal", "statistics", "itertools", "collections",
                 "datetime", "random", "string", "functools", "operator", "heapq", "bisect", "textwrap", "difflib",
                 "unicodedata", "typing", "dataclasses", "enum", "copy", "time")
"""What LM-written code may import: computation and text handling, nothing that reaches the system."""
PRELOADED = (*AGENT_MODULES, "_strptime")
"""Imported before the code runs; ``_strptime`` is imported lazily by ``datetime.strptime``."""
REFUSED_CALLS = ("system", "popen", "fork", "forkpty", "vfork", "execv", "execve", "execvp", "execvpe", "execl",
                 "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle",
                 "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp", "kill", "killpg", "setuid", "setgid",
                 "unshare", "setns")
"""Reachable through preloaded modules (``random._os``) although ``os`` cannot be imported."""


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _limit(name: str, value: int) -> None:
    resource.setrlimit(getattr(resource, name), (value, value))


def _status() -> dict:
    with open("/proc/self/status") as handle:
        return dict(line.split(":\t", 1) for line in handle.read().splitlines() if ":\t" in line)


def _load_filter(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "loading the exec seccomp filter failed")


def _confine(cpu_s: int, memory_mb: int, exec_filter: bytes) -> None:
    _limit("RLIMIT_CPU", cpu_s)
    _limit("RLIMIT_AS", memory_mb * 1024 * 1024)
    _limit("RLIMIT_FSIZE", 1024 * 1024)
    _limit("RLIMIT_NOFILE", 64)
    _limit("RLIMIT_CORE", 0)
    for module in PRELOADED:
        __import__(module)
    status = _status()
    if status.get("NoNewPrivs", "").strip() != "1" or status.get("Seccomp", "").strip() != "2":
        raise OSError("the launcher's seccomp filter and NoNewPrivs are not in force")
    _load_filter(exec_filter)
    if int(_status().get("Seccomp_filters", "0").strip() or 0) < 2:
        raise OSError("the exec seccomp filter is not in force")


def _confine_or_exit(cpu_s: int, memory_mb: int, exec_filter: bytes) -> None:
    """Confine, then tell the parent so on the ready pipe and close it: from here on the code may run."""
    try:
        _confine(cpu_s, memory_mb, exec_filter)
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot confine the process, code not run: {exc}", file=sys.stderr)
        sys.exit(CONFINEMENT_FAILED)
    ready = int(sys.argv[5])
    os.write(ready, b"1")
    os.close(ready)


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


def _refused(call) -> bool:
    """Whether ``call`` fails with EPERM (a seccomp refusal), not with any other outcome."""
    try:
        result = call()
    except PermissionError:
        return True
    except OSError:
        return False
    if result == 0:  # a forked child, had fork succeeded
        os._exit(0)
    return False


def _probe(exec_filter: bytes) -> None:
    _confine_or_exit(5, 256, exec_filter)
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    status = _status()

    def unshare() -> int:
        if libc.unshare(0x10000000) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        return 1

    def no_thread() -> bool:
        import _thread

        try:
            _thread.start_new_thread(lambda: None, ())
        except RuntimeError:
            return True
        return False

    def writable_root() -> bool:
        try:
            open("/probe", "w").close()
        except OSError:
            return False
        return True

    report = {
        "no_new_privs": status.get("NoNewPrivs", "").strip() == "1",
        "no_capabilities": int(status.get("CapEff", "1").strip(), 16) == 0,
        "seccomp": int(status.get("Seccomp_filters", "0").strip() or 0) >= 2,
        "no_fork": _refused(os.fork),
        "no_thread": no_thread(),
        "no_exec": _refused(lambda: os.execv(sys.executable, [sys.executable, "-c", "pass"])),
        "no_unshare": _refused(unshare),
        "no_socket": _refused(lambda: socket.socket(socket.AF_UNIX)),
        "own_pid_namespace": os.getpid() == 1 and os.getppid() == 0,
        "read_only_root": not writable_root(),
        "no_host_files": not any(os.path.exists(path) for path in ("/home", "/run", "/var", "/etc")),
    }
    print(json.dumps(report))


def _run_script(cpu_s: int, memory_mb: int, exec_filter: bytes) -> None:
    code = sys.stdin.read()
    _confine_or_exit(cpu_s, memory_mb, exec_filter)
    _guard_imports()
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(code, "<program>", "exec"), namespace)  # noqa: S102 - confined process, see module docstring


def _run_agent(cpu_s: int, memory_mb: int, exec_filter: bytes) -> None:
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

    _confine_or_exit(cpu_s, memory_mb, exec_filter)
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
        try:
            send({"error": f"{line}{type(exc).__name__}: {detail}"[:2000]})
        except BaseException:  # noqa: BLE001 - e.g. a nesting too deep to encode: the parent sees the exit
            sys.exit(1)


def main() -> None:
    mode, cpu_s, memory_mb, exec_filter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
    if mode == "probe":
        _probe(exec_filter)
    else:
        (_run_agent if mode == "agent" else _run_script)(cpu_s, memory_mb, exec_filter)


if __name__ == "__main__":
    main()
