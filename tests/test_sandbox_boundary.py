"""The sandbox as a kernel boundary: each attack of issue 13, from a root parent and from a normal user's parent.

``sandbox_attacks.py`` runs every attack in a parent process through the entry points the search
uses and reports what the untrusted code managed; these tests check that report and the world
outside it: the parent alive, the user's files, the experiment database and the host's scratch
places untouched, and no process of any sandbox left. Run as root (CI), the normal-user parent is
started with ``setpriv`` as an unprivileged uid, in a private mount namespace where only the
interpreter's directory under the root-only ``/root`` is visible to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
ATTACKS = Path(__file__).with_name("sandbox_attacks.py")
USER_UID = 4242
PARENTS = ("root", "user")
SOCKETS = ["/var/run/postgresql/.s.PGSQL.5432", "/run/postgresql/.s.PGSQL.5432", "/run/mysqld/mysqld.sock"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blocked_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot enter (``/root``, mode 0700, say)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _as_user(command: list[str], home: Path) -> list[str]:
    """``command`` as uid USER_UID, in a mount namespace where the interpreter is reachable to it."""
    prefix = Path(sys.base_prefix).resolve()
    shell = ""
    blocked = _blocked_ancestor(prefix)
    if blocked is not None:  # e.g. /root/.pyenv/...: show that one directory, nothing else of /root
        top = blocked / prefix.relative_to(blocked).parts[0]
        hold = home.parent / "interpreter"
        hold.mkdir()
        shell = (f"mount --bind {top} {hold} && mount -t tmpfs -o mode=755 tmpfs {blocked} && mkdir -p {top} && "
                 f"mount --bind {hold} {top} && ")
    drop = ["setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "env", f"HOME={home}", "PYTHONDONTWRITEBYTECODE=1"]
    line = shell + "exec " + " ".join(f"'{part}'" for part in [*drop, *command])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", line]


@pytest.fixture(scope="module", params=PARENTS)
def attacked(request):
    """Runs every attack from one kind of parent; yields (report, setup, world before, world after)."""
    parent = request.param
    if parent == "root" and os.geteuid() != 0:
        pytest.skip("a root parent needs the tests to run as root (CI does)")
    base = Path(tempfile.mkdtemp(prefix="agentsearch-attack-"))
    base.chmod(0o755)
    home, data = base / "home", base / "data"
    (home / ".ssh").mkdir(parents=True)
    data.mkdir()
    token = uuid.uuid4().hex
    (home / ".ssh" / "id_rsa").write_text(f"PRIVATE KEY {token}")
    (home / ".ssh").chmod(0o700)
    (home / ".bashrc").write_text("export PATH=$HOME/bin:$PATH\n")
    database = home / "agentsearch.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE evaluations (id INTEGER PRIMARY KEY, score REAL)")
        db.execute("INSERT INTO evaluations VALUES (1, 0.475)")
    db.close()
    rows = [{"id": f"d{i}", "sentence": f"film number {i}", "label": ["positive", "negative"][i % 2]} for i in range(4)]
    (data / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    secret = PROJECT / f".sandbox-secret-{token[:8]}"
    secret.write_text(f"SECRET {token}")
    secret.chmod(0o644)  # readable by the user who owns the checkout, as a project's .env is
    setup = {"data": str(data / "dev.jsonl"), "project": str(PROJECT), "sockets": SOCKETS, "token": token,
             "ssh_key": str(home / ".ssh" / "id_rsa"), "project_secret": str(secret), "database": str(database),
             "bashrc": str(home / ".bashrc")}
    (base / "setup.json").write_text(json.dumps(setup))
    watched = [home / ".ssh" / "id_rsa", home / ".bashrc", database, secret, data / "dev.jsonl"]
    before = {str(path): _digest(path) for path in watched}
    command = [sys.executable, str(ATTACKS), str(base / "setup.json")]
    if parent == "user" and os.geteuid() == 0:
        for path in (base, home, home / ".ssh", data, *watched[:3]):
            os.chown(path, USER_UID, USER_UID)
        command = _as_user(command, home)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT,
                              env={**os.environ, "HOME": str(home)})
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        after = {str(path): _digest(path) for path in watched}
        with sqlite3.connect(database) as db:
            scores = db.execute("SELECT score FROM evaluations").fetchall()
        db.close()
        world = {"digests": (before, after), "scores": scores,
                 "left": [path for place in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", PROJECT)
                          for path in Path(place).glob(f"*{token}*")]}
        yield parent, report, setup, world
    finally:
        secret.unlink()
        shutil.rmtree(base)


def test_the_parent_runs_as_the_kind_of_user_it_claims(attacked):
    parent, report, _, _ = attacked
    assert (report["uid"] == 0) == (parent == "root")
    assert "bubblewrap" in report["isolation"] and "seccomp" in report["isolation"]


def test_1_a_design_that_stops_talking_or_floods_the_parent_is_stopped_at_its_deadline(attacked):
    _, report, _, _ = attacked
    for name in ("closed_channel", "flood"):
        assert report[name]["outputs"] is None and report[name]["error"].startswith("wall-clock limit of 2 s exceeded")
        assert report[name]["seconds"] < 6
    # costly messages past the LM-call cap: the parent is free within wall_s (3 s) and a second, whatever
    # it parses (it was held 90.5 s, with 51.8 s of its CPU, when only its waiting was charged)
    for name in ("costly_messages", "costly_messages_under_caps"):
        assert report[name]["outputs"] is None and report[name]["seconds"] < 4, report[name]
        assert report[name]["lm_calls"] == 1
    assert "lists and objects, over 100000" in report["costly_messages"]["error"]
    assert report["costly_messages_under_caps"]["error"] in (
        "over 64 LM requests past the limit of 1 LM calls per example", "wall-clock limit of 3 s exceeded")
    # through the evaluator, as in a search: each example fails with the reason, the evaluation ends
    evaluated = report["flood_evaluate"]
    assert evaluated["score"] == 0 and evaluated["seconds"] < 20
    assert evaluated["errors"] == ["DesignError: wall-clock limit of 2 s exceeded"] * 4


def test_2_the_tasks_labels_on_disk_cannot_be_read(attacked):
    _, report, setup, world = attacked
    assert report["gold_labels"]["score"] == 0.0  # it answered "FileNotFoundError", not the labels
    seen = report["gold_listing"]["report"]["seen"]
    assert seen[str(Path(setup["data"]).parent)] == "FileNotFoundError"
    assert seen[setup["project"]] == "FileNotFoundError" and seen["/home"] == "FileNotFoundError"
    assert seen["/tmp"] == [] and set(seen["/"]) <= {"tmp", "dev", "proc", "sandbox", "usr", "lib", "lib64", "lib32",
                                                    "libx32", "bin", "root", "opt"}
    before, after = world["digests"]
    assert before == after


def test_3_no_process_outlives_the_example_and_no_sandbox_can_signal_another(attacked):
    _, report, _, _ = attacked
    outlive = report["outlive"]["report"]
    for call in ("fork", "raw_fork", "clone", "vfork", "clear_pdeathsig"):
        assert outlive[call] == [-1, 1], call  # EPERM from the seccomp filter
    assert report["outlive_left"] == []
    killer = report["kill_others"]
    assert killer["report"]["all"] == [-1, 3] and killer["report"]["parent"] == [-1, 3]  # ESRCH: nobody to signal
    assert killer["report"]["getppid"] == 0 and killer["report"]["signalable"] == 0
    assert killer["neighbour"]["outputs"] == {"alive": 1}  # the sandbox running beside it finished its work


def test_4_no_re_exec_setuid_binary_namespace_or_io_uring(attacked):
    _, report, _, _ = attacked
    tried = report["reexec"]["report"]
    for call in ("execv_self", "execv_mount", "unshare_user", "io_uring_setup", "ptrace", "bpf", "mount"):
        assert tried[call] == [-1, 1], call
    assert tried["status"] == {"NoNewPrivs": "1", "Seccomp": "2", "CapEff": "0000000000000000",
                               "CapBnd": "0000000000000000"}
    assert tried["mount_binary"] is False
    assert report["reexec_agent"]["outputs"] == {"execv": [-1, 1], "import_socket": "ImportError"}


def test_5_no_unix_socket_of_the_host_is_reachable(attacked):
    _, report, _, _ = attacked
    tried = report["unix_sockets"]["report"]
    assert tried["socket"] == [-1, 1] and tried["socketpair"] == [-1, 1]
    assert not any(tried["paths"].values())
    # where the host has them (this machine's PostgreSQL and MariaDB), they exist outside and not inside
    outside = [path for path in SOCKETS if Path(path).exists()]
    assert all(tried["paths"][path] is False for path in outside)


def test_6_nothing_reaches_the_host_disk(attacked):
    _, report, _, world = attacked
    disk = report["host_disk"]["report"]
    assert disk["run_lock"] == "FileNotFoundError" and disk["dev_shm_big"] == "OSError"
    assert disk["depth"] == 1500  # the chain is built, in the sandbox's tmpfs, and vanishes with it
    assert disk["written"] <= 16 << 20 and disk["write_error"] == "OSError"
    assert world["left"] == []


def test_7_other_processes_command_lines_are_invisible(attacked):
    _, report, _, _ = attacked
    seen = report["proc_cmdline"]["report"]
    assert seen["found"] == [] and seen["pids"] == [1]


def test_8_memory_is_capped_for_the_whole_sandbox(attacked):
    _, report, _, _ = attacked
    memory = report["memory"]["report"]
    assert memory["fork"] == [-1, 1] and memory["thread"] == "RuntimeError"  # one task: the limit is the sandbox's
    assert memory["stopped_by"] == "MemoryError" and 0 < memory["held_mb"] < 512  # 2 GB asked for


def test_9_a_nesting_bomb_is_a_failed_example_not_a_crash(attacked):
    _, report, _, _ = attacked
    # 200,000 nested lists: refused by their count before the parser recurses into them
    assert report["json_bomb"]["error"] == "message to the parent with 200002 lists and objects, over 100000"
    assert report["json_deep"]["error"] == "message to the parent nested deeper than 32 levels"


def test_10_program_of_thought_has_the_same_layers_as_a_design(attacked):
    _, report, _, _ = attacked
    layers = report["pot_layers"]["report"]
    assert layers["import_os"] == layers["import_subprocess"] == "ImportError"
    assert layers["os_fork"] == "PermissionError" and layers["libc_fork"] == [-1, 1]
    assert layers["threads"] == 0  # no process and no thread: the sandbox is one task


def test_11_a_design_cannot_choose_the_lms_options(attacked):
    _, report, _, _ = attacked
    tried = report["lm_options"]["outputs"]["tried"]
    assert tried.pop("valid") == "answered: fine"
    assert all(answer.startswith("LM call failed: ") for answer in tried.values()), tried
    assert report["lm_options"]["asked"] == [{"prompt": "hi", "options": {"temperature": 0.5, "max_tokens": 20,
                                                                          "stop": ["\n"]}}]


def test_12_a_users_files_database_and_parent_are_out_of_reach(attacked):
    _, report, setup, world = attacked
    found = report["user_files"]["outputs"]
    for path in (setup["ssh_key"], setup["project_secret"], setup["database"]):
        assert found[path] == "FileNotFoundError", path
    assert found["bashrc"] == found["database_write"] == "FileNotFoundError"
    assert found["kill_parent"] == [-1, 3]  # ESRCH: the parent is not in the sandbox's PID namespace
    assert found["home"] == "~"  # no HOME: nothing to expand to
    before, after = world["digests"]
    assert before == after and world["scores"] == [(0.475,)]


def test_no_process_of_any_sandbox_is_left(attacked):
    _, report, _, _ = attacked
    assert report["sandboxes"] >= 20 and report["left_running"] == []


# Fail closed: no launcher, no user namespaces -> nothing LM-written runs, one line, exit 2, nothing written.

def _cli(*args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(wrap or []), sys.executable, "-m", "agentsearch", *args], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT, env={**os.environ, **(env or {})})


SUBPROCESS_LM = "openai/keyword"
"""The fake provider is registered in the test process only; a CLI process refuses ``fake/keyword`` (no
provider), so its task names a routable model it never calls (these commands stop before any LM call)."""


@pytest.mark.parametrize("levels", [["agent"], ["prompt", "module"]])
def test_without_bubblewrap_a_search_that_runs_llm_code_refuses_to_start(write_task, tmp_path, levels):
    task = write_task(lm=SUBPROCESS_LM, **{"search.levels": levels,
                                           "search.modules": {"kinds": ["predict", "program_of_thought"]}})
    database = tmp_path / "never.db"
    done = _cli("optimize", str(task), "--storage", f"sqlite:///{database}",
                env={"AGENTSEARCH_BWRAP": str(tmp_path / "no-bwrap")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "bubblewrap not found" in done.stderr and "apt-get install bubblewrap" in done.stderr
    assert not database.exists()
    checked = _cli("validate", str(task), env={"AGENTSEARCH_BWRAP": str(tmp_path / "no-bwrap")})
    assert checked.returncode == 2 and "bubblewrap not found" in checked.stderr


def test_a_search_without_llm_code_needs_no_sandbox(write_task, tmp_path):
    task = write_task(lm=SUBPROCESS_LM, **{"search.levels": ["prompt", "module"], "search.modules": {"kinds": ["predict"]}})
    checked = _cli("validate", str(task), env={"AGENTSEARCH_BWRAP": str(tmp_path / "no-bwrap")})
    assert checked.returncode == 0, checked.stderr
    assert "sandbox: not needed" in checked.stdout


def test_validate_names_the_isolation_a_search_will_use(write_task):
    checked = _cli("validate", str(write_task(lm=SUBPROCESS_LM, **{"search.levels": ["agent"]})), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["sandbox"].startswith("bubblewrap ")


def test_with_user_namespaces_disabled_the_sandbox_refuses_to_start(write_task):
    """The parent runs where no user namespace can be made (bubblewrap's --disable-userns around it)."""
    wrap = ["bwrap", "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]
    done = _cli("validate", str(write_task(lm=SUBPROCESS_LM, **{"search.levels": ["agent"]})), wrap=wrap)
    assert done.returncode == 2, done.stderr
    assert "enable unprivileged user namespaces" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def no_launcher(monkeypatch, tmp_path):
    """No bubblewrap where the process looks for it."""
    from agentsearch.evaluators import _isolation

    monkeypatch.setenv(_isolation.LAUNCHER_ENV, str(tmp_path / "no-bwrap"))
    monkeypatch.setattr(_isolation, "_cached", None)  # probed again here; the working one comes back after


def test_without_the_launcher_run_python_and_run_agent_refuse_and_the_evaluator_scores_nothing(no_launcher):
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import (
        Evaluator,
        IsolationUnavailableError,
        run_agent,
        run_python,
    )
    from agentsearch.metrics import resolve_metric

    with pytest.raises(IsolationUnavailableError, match="bubblewrap not found"):
        run_python("print(1)")
    with pytest.raises(IsolationUnavailableError, match="bubblewrap not found"):
        run_agent("def forward(inputs, lm):\n    return {}\n", {}, lambda request: "")

    class RunsCode(dspy.Module):
        def forward(self, sentence):
            return dspy.Prediction(label=run_python("print('positive')").stdout.strip())

    example = LabelledExample("d0", dspy.Example(sentence="fine", label="positive").with_inputs("sentence"))
    with pytest.raises(IsolationUnavailableError):  # never a 0 for the program: the machine cannot run it
        Evaluator(resolve_metric("exact_match")).evaluate(RunsCode(), [example])


def test_a_sandbox_that_fails_to_launch_is_the_machines_failure_never_a_score(monkeypatch):
    """The probe passed, then a launch fails (here: a bind of a path that does not exist)."""
    import dspy

    from agentsearch.data import LabelledExample
    from agentsearch.evaluators import (
        Evaluator,
        IsolationUnavailableError,
        _isolation,
        run_agent,
        run_python,
    )
    from agentsearch.metrics import resolve_metric
    from agentsearch.search_space import DesignProgram
    from agentsearch.search_space._spec import DesignSpec

    _isolation.isolation()
    original = _isolation.Isolation.command

    def broken(self, *args, **kwargs):
        return [self.launcher, "--ro-bind", "/nonexistent-agentsearch-path", "/x", *original(self, *args, **kwargs)[1:]]

    monkeypatch.setattr(_isolation.Isolation, "command", broken)
    with pytest.raises(IsolationUnavailableError, match="did not start.*nonexistent-agentsearch-path"):
        run_python("print(1)")
    code = "def forward(inputs, lm):\n    return {'label': 'positive'}\n"
    with pytest.raises(IsolationUnavailableError, match="did not start"):
        run_agent(code, {}, lambda request: "")
    program = DesignProgram(DesignSpec(signature="sentence -> label", name="ok", code=code))
    example = LabelledExample("d0", dspy.Example(sentence="fine", label="positive").with_inputs("sentence"))
    with pytest.raises(IsolationUnavailableError):  # never a 0 for the design: it did not run
        Evaluator(resolve_metric("exact_match")).evaluate(program, [example])


def test_code_that_fakes_a_failed_launch_is_still_the_codes_own_failure():
    from agentsearch.evaluators import run_agent, run_python

    fake = "import random\nprint('bwrap: Creating new namespace failed', file=random._os.sys.stderr)\n"
    result = run_python(fake + "random._os._exit(97)")
    assert result.returncode == 97 and result.summary() == "error: bwrap: Creating new namespace failed"
    design = ("import random\ndef forward(inputs, lm):\n"
              "    print('bwrap: Creating new namespace failed', file=random._os.sys.stderr)\n"
              "    random._os._exit(97)\n")
    run = run_agent(design, {}, lambda request: "")
    assert run.outputs is None
    assert run.error == "the design exited (code 97) without an answer: bwrap: Creating new namespace failed"


def test_a_bubblewrap_too_old_for_the_options_used_is_refused_by_name(write_task, tmp_path):
    old = tmp_path / "bwrap"
    old.write_text("#!/bin/sh\necho 'bubblewrap 0.6.1'\n")
    old.chmod(0o755)
    done = _cli("validate", str(write_task(lm=SUBPROCESS_LM, **{"search.levels": ["agent"]})), env={"AGENTSEARCH_BWRAP": str(old)})
    assert done.returncode == 2
    assert "is bubblewrap 0.6.1, older than 0.8.0" in done.stderr and "Traceback" not in done.stderr


SLEEPER = """
import sys
sys.path.insert(0, {project})
from tests.sandbox_attacks import design
from agentsearch.evaluators import AgentLimits, run_agent

# clears the parent-death signal bwrap set (refused), then outlives its search if it can
code = design("report = call(libc.prctl, 1, 0, 0, 0, 0)\\ntime.sleep(120)\\nreturn dict(cleared=report)")
print(run_agent(code, dict(), lambda request: "ok", limits=AgentLimits(wall_s=150)))
"""
"""A search whose design sleeps in the sandbox; no single quote (``_as_user`` quotes it for a shell)."""


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("parent", PARENTS)
def test_a_design_does_not_outlive_a_search_killed_by_sigkill(parent, tmp_path):
    """Issue 31: a design cleared its parent-death signal (prctl(PR_SET_PDEATHSIG, 0)), its search
    was SIGKILLed (the OOM killer, a crash), and it ran on under the host's PID 1 until its own limits
    ended it. The filter refuses that prctl; every process of the sandbox goes with the search."""
    import time

    if parent == "root" and os.geteuid() != 0:
        pytest.skip("a root parent needs the tests to run as root (CI does)")
    tmp_path.chmod(0o755)
    command = [sys.executable, "-c", SLEEPER.format(project=json.dumps(str(PROJECT)))]
    if parent == "user" and os.geteuid() == 0:
        home = tmp_path / "home"
        home.mkdir()
        os.chown(home, USER_UID, USER_UID)
        command = _as_user(command, home)
    search = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sandbox: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # past the probe sandbox, until the design is in its time.sleep
            sandbox = _descendants(search.pid)  # the launcher (bwrap) and the runner, PID 1 of its namespace
            if any("nanosleep" in _wchan(pid) for pid in sandbox):
                break
            time.sleep(0.1)
        assert any("nanosleep" in _wchan(pid) for pid in sandbox), "the design did not reach its sleep"
        search.kill()
        search.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_running(pid) for pid in sandbox):
            time.sleep(0.1)
        assert not [pid for pid in sandbox if _running(pid)], "a sandbox process outlived its search"
    finally:
        search.kill()
        for pid in sandbox:  # what an unfixed filter leaves running
            if _running(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
