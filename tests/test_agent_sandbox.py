"""The agent sandbox: an agent design runs in a confined child that reaches an LM only through the parent.

Each attack below must be stopped, and the parent must record why; nothing may leak out of the
child (a file, a process, a secret).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

from agentsearch.evaluators import AgentLimits, run_agent
from tests.sandbox_attacks import Tracker

PROJECT = Path(__file__).resolve().parents[1]


def echo_lm(request: dict) -> str:
    return "chat" if "messages" in request else "completion: " + request["prompt"]


def run(code: str, inputs: dict | None = None, **limits):
    return run_agent(code, inputs or {}, echo_lm, limits=AgentLimits(**limits))


def design(body: str, header: str = "") -> str:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"{header}\ndef forward(inputs, lm):\n{lines}\n"


@pytest.fixture
def open_dir():
    """A world-writable directory in the project: only the sandbox's own layers keep the child out of it."""
    path = Path(tempfile.mkdtemp(dir=PROJECT, prefix=".sandbox-probe-"))
    path.chmod(0o777)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_a_design_answers_through_the_parents_lm_and_its_prints_stay_out_of_the_exchange():
    result = run(design('''
print("thinking")
first = lm("Sentence: " + inputs["sentence"] + "\\nLabel:", temperature=0.0)
second = lm([{"role": "user", "content": "hi"}])
return {"label": first, "other": second}
'''), {"sentence": "fine"})
    assert result.error is None and result.lm_calls == 2
    assert result.outputs == {"label": "completion: Sentence: fine\nLabel:", "other": "chat"}
    assert "thinking" in result.stderr


def test_an_infinite_loop_is_stopped_by_the_cpu_limit():
    started = time.monotonic()
    result = run(design("while True:\n    pass"), cpu_s=1)
    assert result.outputs is None and result.error == "CPU-time limit of 1 s exceeded"
    assert time.monotonic() - started < 10


def test_a_blocked_design_is_stopped_by_the_wall_clock_limit():
    result = run(design("time.sleep(60)", header="import time"), wall_s=1)
    assert result.outputs is None and result.error == "wall-clock limit of 1 s exceeded"


def test_time_spent_answering_lm_calls_does_not_count_against_the_wall_clock():
    def slow_lm(request: dict) -> str:
        time.sleep(0.6)
        return "ok"

    result = run_agent(design("return {'a': lm('x') + lm('y')}"), {}, slow_lm, limits=AgentLimits(wall_s=1))
    assert result.outputs == {"a": "okok"}


def test_allocating_10_gb_is_stopped_by_the_memory_limit():
    result = run(design("block = bytearray(10 * 1024 ** 3)\nreturn {}"))
    assert result.outputs is None
    assert result.error == "line 3: MemoryError: memory limit of 512 MB reached"


@pytest.fixture
def tracker(monkeypatch):
    """Records each sandbox's PID namespace, to look for that sandbox's own processes afterwards."""
    tracker = Tracker().install(monkeypatch.setattr)
    yield tracker
    tracker.close()


def test_a_fork_bomb_starts_no_process(tracker):
    result = run(design('''
for _ in range(100):
    random._os.fork()
return {}
''', header="import random"))
    assert result.outputs is None and "os.fork is not allowed in the sandbox" in result.error
    # the raw posix call, reached around the refused os function, is refused as well
    raw = run(design("random._os.sys.modules['posix'].fork()\nreturn {}", header="import random"))
    assert "os.fork is not allowed" in raw.error
    # and the kernel refuses the call itself, reached around Python through ctypes
    kernel = run(design("ct = random._os.sys.modules['ctypes']\nreturn {'pids': [ct.CDLL(None).fork() for _ in range(50)]}",
                        header="import random"))
    assert kernel.outputs == {"pids": [-1] * 50}
    assert tracker.count == 3 and tracker.left_running() == []


def test_os_system_runs_nothing(open_dir):
    marker = open_dir / "ran"
    result = run(design(f"return {{'code': random._os.system('touch {marker}')}}", header="import random"))
    assert result.outputs is None and "os.system is not allowed in the sandbox" in result.error
    assert not marker.exists()


def test_opening_a_socket_is_refused():
    result = run(design("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\nreturn {}"))
    assert result.outputs is None and "import of 'socket' is not allowed in the sandbox" in result.error


@pytest.mark.parametrize("module", ["subprocess", "ctypes", "os", "sys", "importlib", "shutil", "pathlib"])
def test_importing_a_module_outside_the_allow_list_is_refused(module):
    result = run(design(f"import {module}\nreturn {{}}"))
    assert result.outputs is None
    assert result.error == (f"line 3: ImportError: import of {module!r} is not allowed in the sandbox; "
                            f"allowed: " + result.error.split("allowed: ")[1])


UNREACHABLE = ("FileNotFoundError",)
"""How a path the design may not touch fails: it does not exist in the sandbox's filesystem view."""


def test_private_files_cannot_be_read():
    secret_dir = Path(tempfile.mkdtemp(dir=PROJECT, prefix=".sandbox-ssh-"))  # mode 0700, like ~/.ssh
    try:
        (secret_dir / "id_rsa").write_text("PRIVATE KEY")
        paths = [str(secret_dir / "id_rsa"), str(Path.home() / ".ssh" / "id_rsa")]
        result = run(design(f'''
found = {{}}
for path in {paths!r}:
    try:
        found[path] = open(path).read()
    except OSError as exc:
        found[path] = type(exc).__name__
return found
'''))
        assert result.outputs is not None and "PRIVATE KEY" not in str(result.outputs)
        assert result.outputs[paths[0]] in UNREACHABLE
    finally:
        (secret_dir / "id_rsa").unlink()
        secret_dir.rmdir()


def test_the_parents_environment_does_not_reach_the_design(monkeypatch):
    monkeypatch.setenv("AGENTSEARCH_TEST_SECRET", "s3cr3t-value")
    result = run(design('''
os = random._os
found = {"environ": dict(os.environ)}
try:
    found["parent"] = open(f"/proc/{os.getppid()}/environ").read()
except OSError as exc:
    found["parent"] = type(exc).__name__
return found
''', header="import random"))
    assert result.outputs is not None and "s3cr3t-value" not in str(result.outputs)
    assert set(result.outputs["environ"]) <= {"PATH", "LANG", "LC_CTYPE", "PWD"}
    assert result.outputs["parent"] == "FileNotFoundError"  # its parent is outside its PID namespace


def test_writing_to_the_project_directory_is_refused():
    target = PROJECT / "sandbox-escape.txt"
    result = run(design(f"open({str(target)!r}, 'w').write('x')\nreturn {{}}"))
    assert result.outputs is None and any(name in result.error for name in UNREACHABLE)
    assert not target.exists()


def test_scratch_files_stay_in_the_sandbox():
    result = run(design("open('/tmp/agentsearch-agent-scratch', 'w').write('x')\nreturn {'ok': 1}"))
    assert result.outputs == {"ok": 1}
    assert not Path("/tmp/agentsearch-agent-scratch").exists()


def test_lm_calls_per_example_are_capped_and_lm_failures_reach_the_design():
    capped = run(design("for _ in range(10):\n    lm('x')\nreturn {}"), max_lm_calls=3)
    assert capped.lm_calls == 3 and "limit of 3 LM calls per example reached" in capped.error

    def failing_lm(request: dict) -> str:
        raise RuntimeError("rate limited, key sk-abcdefghijklmnopqrstuvwx")

    failed = run_agent(design("return {'a': lm('x')}"), {}, failing_lm)
    assert "LM call failed: RuntimeError: rate limited" in failed.error
    assert "sk-abcdefghijklmnopqrstuvwx" not in failed.error


@pytest.mark.parametrize(("code", "error"), [
    ("def forward(inputs, lm) oops", "SyntaxError"),
    ("x = 1", "TypeError: the design defines no forward(inputs, lm) function"),
    (design("return 'positive'"), "TypeError: forward returned str, not a dict of output fields"),
    (design("raise ValueError('bad')"), "line 3: ValueError: bad"),
])
def test_a_broken_design_reports_its_error(code, error):
    result = run(code)
    assert result.outputs is None and error in result.error


def test_no_key_in_the_parent_environment_reaches_the_child(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parentkeyparentkeyparentkey")
    result = run(design("return {'env': str(random._os.environ)}", header="import random"))
    assert "sk-parentkey" not in str(result.outputs)
    assert os.environ["OPENAI_API_KEY"].startswith("sk-parent")


@pytest.mark.parametrize(("request_", "error"), [
    ("just a string", "lm() takes a prompt string or a list of chat messages"),
    ({"messages": []}, "non-empty list of chat messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role must be one of system, user, assistant"),
    ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "and nothing else"),
    ({"prompt": "x" * 50_001}, "request of 50001 characters, over the limit of 50000"),
    # 24,000 empty messages were forwarded: only contents were counted
    ({"messages": [{"role": "user", "content": ""}] * 24_000}, "request of 24000 messages, over the limit of 256"),
    # 48,000 characters of content, 52,000 with the roles and each message's overhead
    ({"messages": [{"role": "user", "content": "x" * 240}] * 200}, "characters, over the limit of 50000"),
    ({"prompt": "x", "options": {"temperature": True}}, "temperature must be a number from 0 to 2"),
    ({"prompt": "x", "options": {"temperature": 2.5}}, "temperature must be a number from 0 to 2"),
    ({"prompt": "x", "options": {"max_tokens": 0}}, "max_tokens must be an integer from 1 to 1024"),
    ({"prompt": "x", "options": {"max_tokens": 100.0}}, "max_tokens must be an integer from 1 to 1024"),
    ({"prompt": "x", "options": {"stop": ["a"] * 5}}, "stop must be a string or a list of up to 4"),
    ({"prompt": "x", "options": {"logit_bias": {"1": 100}}}, "option 'logit_bias' is not allowed"),
])
def test_the_parent_refuses_an_lm_request_a_design_may_not_make(request_, error):
    from agentsearch.evaluators import check_request

    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        check_request(request_, AgentLimits())


def test_the_parent_makes_exactly_the_request_it_checked():
    from agentsearch.evaluators import check_request

    checked = check_request({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                             "options": {"temperature": 1, "max_tokens": 1024, "stop": "\n"}}, AgentLimits())
    assert checked == {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                       "options": {"temperature": 1.0, "max_tokens": 1024, "stop": ["\n"]}}
    assert check_request({"prompt": "p"}, AgentLimits(max_tokens=8)) == {"prompt": "p", "options": {}}
