"""Runs in the sandbox process, never imported by agentsearch: confine this process, then run stdin as Python.

Started as ``python -I -S _sandbox_child.py`` so no site-packages, user files or environment reach
it. Confinement comes before the untrusted code, and fails closed: if a layer cannot be set up the
code does not run. The layers: resource limits (CPU, memory, file size, open files); a new network
namespace with no interfaces; a private mount namespace with empty tmpfs over /tmp, /var/tmp and
/dev/shm; and, because ``RLIMIT_NPROC`` does not bind root, the uid ``nobody``
when started as root (a process bomb then stops at the limit).
"""

import ctypes
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
NOBODY = 65534
PRELOADED = ("math", "cmath", "json", "re", "fractions", "decimal", "statistics", "itertools", "collections",
             "datetime", "random", "string", "functools", "operator", "heapq", "bisect")
"""Imported before the uid drop: as nobody the interpreter's own files may be unreadable (a root-owned home)."""


def _limit(name: str, value: int) -> None:
    resource.setrlimit(getattr(resource, name), (value, value))


def _confine(cpu_s: int, memory_mb: int) -> None:
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
    _limit("RLIMIT_NPROC", 32)


def main() -> None:
    cpu_s, memory_mb = int(sys.argv[1]), int(sys.argv[2])
    code = sys.stdin.read()
    try:
        _confine(cpu_s, memory_mb)
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot confine the process, code not run: {exc}", file=sys.stderr)
        sys.exit(97)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(code, "<program>", "exec"), namespace)  # noqa: S102 - confined process, see module docstring


if __name__ == "__main__":
    main()
