"""Running LM-written Python in a confined subprocess, never in the search process.

Code a ProgramOfThought node writes is untrusted: it may loop, allocate without bound, fork, read
the network or write files. It runs in a fresh interpreter (see ``_sandbox_child``) in an empty
temporary directory, with a wall-clock timeout enforced here by killing its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CHILD = Path(__file__).with_name("_sandbox_child.py")
MAX_OUTPUT_CHARS = 2000


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
                [sys.executable, "-I", "-S", str(_CHILD), str(max(1, int(timeout_s))), str(memory_mb)],
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True,
            )
            try:
                process.communicate(code.encode(), timeout=timeout_s)
                returncode: int | None = process.returncode
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # the code's own children too
                except ProcessLookupError:
                    pass
                process.wait()

            def tail(handle) -> str:
                handle.seek(0)
                return handle.read()[-4 * MAX_OUTPUT_CHARS:].decode("utf-8", "replace")

            return SandboxResult(tail(out), tail(err), returncode)
