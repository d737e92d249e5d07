"""The kernel boundary around LM-written code: bubblewrap namespaces, a seccomp filter, an empty filesystem view.

Python-level guards (an import allow-list, refused ``os`` functions) are not a boundary: code can
reach ``ctypes`` through ``sys.modules`` or an object's ``__subclasses__()`` and call the kernel
directly. So every untrusted run starts inside bubblewrap (``bwrap``), for root and normal users
alike, with:

- new user, PID, mount, network, IPC, UTS and cgroup namespaces; all capabilities dropped,
  NoNewPrivs set, a new session, and ``--die-with-parent`` (which the filter keeps the runner from
  clearing). The runner is PID 1 of its own PID namespace (``--as-pid-1``): its death ends every
  process in it, and no other process of the machine (the search, other sandboxes) can be seen or
  signalled.
- a filesystem view holding only the interpreter, its standard library (its site-packages hidden)
  and the system's shared libraries, all read-only, plus the runner script; a size-capped private
  tmpfs for ``/tmp`` (the working directory) and ``/dev/shm``; a minimal ``/dev``; its own ``/proc``;
  everything else read-only and empty. No home, no ``/root``, no ``/run``, no project checkout, task
  data, database file or host socket exists inside.
- a seccomp filter (built with libseccomp through PyPI's ``pyseccomp``, handed to ``bwrap --seccomp``)
  refusing the calls that widen a process's reach: ``ptrace``, ``process_vm_*``, ``unshare``/
  ``setns``, any new task (``fork``, ``vfork``, ``clone``, ``clone3``: no process and no thread),
  mounts, ``bpf``, ``io_uring_*``, keyrings, ``perf_event_open``, sockets, module and kexec calls;
  and a second filter the runner installs once it has started, refusing ``execve``/``execveat``,
  so no re-exec and no setuid binary.

Because the runner is the sandbox's only task, its own rlimits are limits of the whole sandbox: CPU
(``RLIMIT_CPU``), memory (``RLIMIT_AS``), open files, file size; the parent adds the wall clock.
This needs no cgroup delegation, which most containers and CI machines do not give, and does not
lean on ``RLIMIT_NPROC``, which binds neither root nor a uid mapped to root.

Fail closed: ``isolation()`` starts one probe sandbox per process and checks from the inside that
every layer holds; if bubblewrap or libseccomp is missing, user namespaces are disabled or a layer
is absent, it raises ``IsolationUnavailableError`` naming what to install or enable, and nothing
untrusted runs. There is no weaker fallback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from pathlib import Path

from agentsearch.exceptions import AgentSearchError

RUNNER = Path(__file__).with_name("_sandbox_child.py")
RUNNER_PATH = "/sandbox/runner.py"
"""Where the runner script appears inside the sandbox."""
LAUNCHER_ENV = "AGENTSEARCH_BWRAP"
"""Names the bubblewrap binary to use (default: ``bwrap`` on PATH)."""
SANDBOX_UID = 65534
SANDBOX_ENV = {"LANG": "C.UTF-8", "PATH": "/nonexistent"}
TMP_MB, SHM_MB = 16, 1
MIN_BWRAP = (0, 8, 0)
"""The first bubblewrap with every option used here (``--disable-userns`` is the newest)."""

TIOCSTI = 0x5412
REFUSED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "unshare", "setns", "fork", "vfork",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "mount_setattr", "name_to_handle_at", "open_by_handle_at",
    "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "perf_event_open",
    "keyctl", "add_key", "request_key",
    "socket", "socketpair",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "acct", "syslog", "quotactl", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "personality",
    "uselib", "vhangup", "lookup_dcookie", "fanotify_init", "memfd_create", "memfd_secret",
)
"""Refused with EPERM from the runner's first instruction on (the bwrap-loaded filter), with ``clone``
(EPERM) and ``clone3`` (ENOSYS), and ``ioctl(TIOCSTI)``."""
PR_SET_PDEATHSIG = 1
"""prctl's option that sets (or, with 0, clears) the signal a process gets when its parent dies."""
REFUSED_AFTER_START = ("execve", "execveat")
"""Refused once the runner has started (a filter the runner loads itself: bwrap must still exec it)."""


class IsolationUnavailableError(AgentSearchError):
    """The kernel boundary cannot be set up here: LM-written code will not run (exit 2, nothing run)."""


@dataclass(frozen=True)
class Isolation:
    """How sandboxes start on this machine; built once per process by ``isolation()``."""

    launcher: str
    python: str
    binds: tuple[str, ...]
    """Host paths bound read-only at the same place: shared libraries, the interpreter, its stdlib."""
    hidden: tuple[str, ...]
    """Paths inside those binds covered by an empty tmpfs (the base interpreter's site-packages)."""
    start_filter: bytes = field(repr=False)
    exec_filter: bytes = field(repr=False)
    refused: int = 0
    """System calls the two filters refuse whatever their arguments (or answer ENOSYS), as built here."""
    version: str = ""

    def command(self, mode: str, cpu_s: int, memory_mb: int, *, seccomp_fd: int, ready_fd: int,
                tmp_mb: int = TMP_MB) -> list[str]:
        """The bwrap command line; ``seccomp_fd`` must hold ``start_filter``, ``ready_fd`` is where the runner
        writes one byte once confined; both must be passed to the child."""
        args = [self.launcher,
                "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--unshare-pid", "--as-pid-1", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
                "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--disable-userns", "--clearenv"]
        for name, value in SANDBOX_ENV.items():
            args += ["--setenv", name, value]
        for path in self.binds:
            args += ["--ro-bind", path, path]
        for path in _system_links(self.binds):
            args += ["--symlink", os.readlink(path), path]
        for path in self.hidden:
            args += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
        args += ["--ro-bind", str(RUNNER), RUNNER_PATH,
                 "--proc", "/proc", "--dev", "/dev",
                 "--size", str(SHM_MB << 20), "--tmpfs", "/dev/shm",
                 "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
                 "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp",
                 "--seccomp", str(seccomp_fd),
                 self.python, "-I", "-S", "-B", RUNNER_PATH, mode, str(cpu_s), str(memory_mb), self.exec_filter.hex(),
                 str(ready_fd)]
        return args

    def describe(self) -> str:
        return (f"bubblewrap {self.version} (user, PID, mount, network, IPC, UTS and cgroup namespaces; no "
                f"capabilities; NoNewPrivs) + seccomp ({self.refused} calls "
                f"refused, no new process or thread, no exec) + read-only view of the interpreter only, "
                f"{TMP_MB} MB private /tmp")

    def start(self, mode: str, cpu_s: int, memory_mb: int, **popen: object) -> Sandbox:
        """Launch a sandbox (stdin, stdout, stderr as ``popen`` says); the caller ends it with ``Sandbox.kill``."""
        seccomp_fd = _filter_fd(self.start_filter)
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        try:
            command = self.command(mode, cpu_s, memory_mb, seccomp_fd=seccomp_fd, ready_fd=ready_write)
            process = subprocess.Popen(command, pass_fds=(seccomp_fd, ready_write), env=SANDBOX_ENV,
                                       start_new_session=True, **popen)  # type: ignore[call-overload]
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(seccomp_fd)
            os.close(ready_write)
        return Sandbox(process, ready_read)


@dataclass
class Sandbox:
    """One running sandbox: the launcher's process, and the pipe on which the runner says it got going.

    The runner writes one byte there once every layer is in place, just before the untrusted code
    runs, and closes it, so the code can neither write it nor take it back. A sandbox that ends
    without it failed to launch or to confine itself: the machine's failure, never the code's score.
    """

    process: subprocess.Popen
    ready_fd: int
    _started: bool = False

    def started(self) -> bool:
        if not self._started and self.ready_fd >= 0:
            try:
                self._started = bool(os.read(self.ready_fd, 1))
            except BlockingIOError:
                pass
        return self._started

    def launch_error(self, stderr: str) -> IsolationUnavailableError:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        cause = lines[-1] if lines else f"launcher exit code {self.process.returncode}"
        return IsolationUnavailableError(f"sandbox: it did not start, the code did not run ({cause})")

    def kill(self) -> None:
        """End the sandbox and every process in it, and reap it: nothing is left running, not even a zombie.

        The runner is PID 1 of its namespace (``--as-pid-1``), a child of the launcher, which reaps it;
        SIGKILL from outside the namespace always reaches it, and its death ends the namespace. Killing
        the launcher alone would orphan the runner to the host's PID 1 (``--die-with-parent`` then kills
        it, but reaping it is left to an init that may not). Whether it had started stays known."""
        process = self.process
        if process.poll() is None:
            try:
                children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            except OSError:
                children = []
            for child in children:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(child), signal.SIGKILL)
            wait_exit(process, 2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if self.ready_fd >= 0:
            self.started()
            os.close(self.ready_fd)
            self.ready_fd = -1


def _filter_fd(program: bytes) -> int:
    fd = os.memfd_create("agentsearch-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _system_links(binds: tuple[str, ...]) -> list[str]:
    """/lib, /lib64… as symlinks into /usr where the system is merged-/usr (Debian, Fedora, Arch)."""
    return [path for path in ("/lib", "/lib64", "/lib32", "/libx32")
            if os.path.islink(path) and os.path.realpath(path) in binds]


def _library_dirs() -> list[str]:
    dirs = ["/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/lib", "/lib64", "/lib32", "/libx32"]
    return [path for path in dirs if os.path.isdir(path) and not os.path.islink(path)]


def _interpreter() -> tuple[str, list[str], list[str]]:
    """The base interpreter (not a virtualenv's link into the project), what it needs, and what to hide."""
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    binds, hidden = [python], []
    base = {"base": sys.base_prefix, "installed_base": sys.base_prefix,
            "platbase": sys.base_exec_prefix, "installed_platbase": sys.base_exec_prefix}
    stdlib = os.path.realpath(sysconfig.get_path("stdlib", vars=base))
    binds.append(stdlib)
    platstdlib = os.path.realpath(sysconfig.get_path("platstdlib", vars=base))
    if platstdlib != stdlib:
        binds.append(platstdlib)
    # The installation's own lib directory: libpython, and the libraries a bundled build (conda, a
    # relocatable build) links its extension modules against. Under /usr it is bound already.
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.isdir(libdir) and not os.path.realpath(libdir).startswith("/usr/"):
        binds.insert(0, os.path.realpath(libdir))
    for site in {stdlib, platstdlib}:
        if Path(site, "site-packages").is_dir():
            hidden.append(str(Path(site, "site-packages")))
    return python, binds, hidden


def _filters() -> tuple[bytes, bytes, int]:
    """The launcher's filter, the runner's exec filter, and how many calls they refuse in all."""
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError) as exc:  # RuntimeError: the binding found no libseccomp
        raise IsolationUnavailableError(
            f"sandbox: libseccomp is not available ({exc}): install it (apt-get install libseccomp2; "
            "pip install pyseccomp); LM-written code will not run without it") from None
    refuse = seccomp.ERRNO(errno.EPERM)

    refused: set[str] = set()

    def export(rules: SyscallRules) -> bytes:
        syscall_filter = seccomp.SyscallFilter(seccomp.ALLOW)
        for action, name, args in rules:
            try:
                syscall_filter.add_rule(action, name, *args)
            except (OSError, RuntimeError, ValueError):
                try:
                    known = seccomp.resolve_syscall(seccomp.system_arch(), name) >= 0
                except (OSError, RuntimeError, ValueError):
                    known = False
                if not known:
                    continue  # not a call of this architecture (fork on arm64) or newer than this libseccomp
                raise
            if not args:  # a call refused whatever its arguments (ioctl is refused only for TIOCSTI)
                refused.add(name)
        read, write = os.pipe()  # a filter is a few hundred bytes: well within a pipe's buffer
        with os.fdopen(write, "wb") as sink:
            syscall_filter.export_bpf(sink)
        with os.fdopen(read, "rb") as source:
            return source.read()

    start: SyscallRules = [(refuse, name, ()) for name in REFUSED_SYSCALLS]
    start.append((seccomp.ERRNO(errno.ENOSYS), "clone3", ()))  # glibc then falls back to clone, refused too
    start.append((refuse, "clone", ()))  # no process and no thread: one task, which the rlimits bind whole
    start.append((refuse, "ioctl", (seccomp.Arg(1, seccomp.EQ, TIOCSTI),)))
    # --die-with-parent is a parent-death signal the runner could clear (prctl(PR_SET_PDEATHSIG, 0)),
    # then outlive a search killed by SIGKILL (the OOM killer, a crash) under the host's PID 1
    start.append((refuse, "prctl", (seccomp.Arg(0, seccomp.EQ, PR_SET_PDEATHSIG),)))
    after: SyscallRules = [(refuse, name, ()) for name in REFUSED_AFTER_START]
    try:
        return export(start), export(after), len(refused)
    except (OSError, RuntimeError, ValueError) as exc:
        raise IsolationUnavailableError(f"sandbox: cannot build the seccomp filter with libseccomp: {exc}") from None


SyscallRules = list[tuple[int, str, tuple[object, ...]]]

_lock = threading.Lock()
_cached: Isolation | IsolationUnavailableError | None = None


def isolation(*, refresh: bool = False) -> Isolation:
    """The working isolation of this machine, probed once per process (thread-safe); raises
    IsolationUnavailableError (one line naming what to install or enable) when any layer is missing."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            try:
                _cached = _probe()
            except IsolationUnavailableError as exc:
                _cached = exc
        if isinstance(_cached, IsolationUnavailableError):
            raise IsolationUnavailableError(str(_cached))
        return _cached


def _probe() -> Isolation:
    launcher = os.environ.get(LAUNCHER_ENV) or shutil.which("bwrap")
    if not launcher or not os.access(launcher, os.X_OK):
        raise IsolationUnavailableError(
            f"sandbox: bubblewrap not found ({launcher or 'no bwrap on PATH'}): install it (apt-get install "
            "bubblewrap); LM-written code (agent level, program_of_thought) will not run without it")
    try:
        version = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IsolationUnavailableError(f"sandbox: cannot run {launcher}: {exc}") from None
    number = tuple(int(part) for part in re.findall(r"\d+", version[-1])[:3]) if version else ()
    if number < MIN_BWRAP:
        raise IsolationUnavailableError(
            f"sandbox: {launcher} is bubblewrap {version[-1] if version else '(no version)'}, older than "
            f"{'.'.join(map(str, MIN_BWRAP))}, which the sandbox needs (--size, --disable-userns): install a newer "
            "bubblewrap")
    start_filter, exec_filter, refused = _filters()
    python, binds, hidden = _interpreter()
    found = Isolation(launcher, python, tuple(dict.fromkeys([*_library_dirs(), *binds])), tuple(hidden),
                      start_filter, exec_filter, refused, version[-1] if version else "")
    sandbox = found.start("probe", 5, 256, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process = sandbox.process
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        raise IsolationUnavailableError("sandbox: the probe sandbox did not answer within 30 s") from None
    finally:
        sandbox.kill()
    if process.returncode != 0:
        raise IsolationUnavailableError(_launch_failure(err.decode("utf-8", "replace"), launcher))
    try:
        seen = json.loads(out)
    except ValueError:
        raise IsolationUnavailableError("sandbox: the probe sandbox gave no report") from None
    missing = [name for name, ok in seen.items() if not ok]
    if missing:
        raise IsolationUnavailableError(f"sandbox: a layer does not hold inside bubblewrap ({', '.join(missing)}); "
                                        "LM-written code will not run")
    return found


def _launch_failure(stderr: str, launcher: str) -> str:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    if "namespace" in last.lower() or "permission" in last.lower() or "uid map" in last.lower():
        return (f"sandbox: bubblewrap cannot create its namespaces ({last}): enable unprivileged user namespaces "
                "(sysctl user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1; on Ubuntu also "
                "kernel.apparmor_restrict_unprivileged_userns=0)")
    return f"sandbox: {launcher} failed to start the sandbox: {last}"


def wait_exit(process: subprocess.Popen, timeout: float) -> int | None:
    """The launcher's exit code, or None if it is still running after ``timeout`` seconds.

    Waits on a pidfd where the kernel has them (Linux 5.3+): ``Popen.wait(timeout)`` polls with
    sleeps of up to 50 ms, which would be most of a short sandboxed example's cost."""
    if process.poll() is not None:
        return process.returncode
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(pidfd, selectors.EVENT_READ)
            if not selector.select(timeout=max(timeout, 0)):
                return None
    finally:
        os.close(pidfd)
    return process.wait()
