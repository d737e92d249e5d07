"""A deterministic fake LM behind litellm (provider ``fake``), so tests exercise the real call path.

It classifies sentiment by keyword, but only when the prompt is a completion-format prompt with at
least two demos; otherwise it answers "positive" (chance on balanced data). So a search that finds
the completion format with demos beats the seed, as the real tiny model does. A sentence containing
EXPLODE makes the call fail as an outage would (litellm reports a connection error); one containing
TOOLONG gets a context-window error, which is the program's failure.

As the meta agent it writes agent designs: the first, third, ... new design imports ``os`` (refused
by the sandbox), and a repair prompt gets a working design unless ``repairs_work`` is off.

It answers any signature: it reads the output fields from DSPy's chat prompt (or, for a completion
prompt, from the open ``Field:`` line and the demos), and fills each by its name: a ReAct step calls
the first tool once, then finishes; a ProgramOfThought node writes code that prints the label.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse

POSITIVE_WORDS = ("delight", "wonderful", "brilliant", "joy", "great", "charming", "love", "fine")


class KeywordLLM(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.last_params: dict[str, Any] = {}
        self.prompts: list[str] = []
        self.designs_written = 0
        self.meta_prompts = 0
        self.repairs_work = True
        self.chat_demos_help = False
        """On: a chat prompt with two or more demos (assistant turns) is answered by keyword too."""
        self.samples_vary = False
        """On: sampled calls (temperature above 0) of the same prompt answer positive, negative, positive, ...
        in turn, as a sampling LM's answers differ (DSPy's cache sees each rollout id as a new request)."""
        self._samples: dict[str, int] = {}
        self.recombine_replies: list[str] = list(RECOMBINE_REPLIES)
        """Replies to the recombiner's prompts, picked by the archive's size (the same archive, the same reply)."""
        self._lock = threading.Lock()

    def _value(self, field: str, text: str, sentence: str, completion: bool, knows: bool = False) -> str:
        demos = text.count("Label:") - 1
        if field == "label":
            if knows or (completion and demos >= 2):
                return "positive" if any(w in sentence for w in POSITIVE_WORDS) else "negative"
            return "positive"
        if field == "next_tool_name":
            tools = re.findall(r"\(\d+\) (\w+), whose description", text)
            tool = next((t for t in tools if t != "finish"), "finish")
            return tool if "observation_0" not in text else "finish"
        if field == "next_tool_args":
            if "observation_0" in text:
                return "{}"
            arguments = re.findall(r"It takes arguments \{'(\w+)'", text)
            return json.dumps({arguments[0]: sentence} if arguments else {})
        if field == "python_code":
            label = "positive" if any(w in sentence for w in POSITIVE_WORDS) else "negative"
            pid = "int(open('/proc/self/stat').read().split()[0])"  # os is not importable in the sandbox
            where = f"'sandboxed' if {pid} != {os.getpid()} else 'in-process'"
            return f"```python\nprint({label!r}, {where})\n```"
        return {"correct": "True", "critique": "It looks right."}.get(field, f"some {field}")

    def _design(self, working: bool) -> str:
        self.designs_written += 1
        number = self.designs_written
        body = ('shots = "Sentence: a great film\\nLabel: positive\\n\\nSentence: a dull mess\\nLabel: negative"\n'
                'def forward(inputs, lm):\n'
                '    text = lm(shots + "\\n\\nSentence: " + inputs["sentence"] + "\\nLabel:", temperature=0.0)\n'
                '    return {"label": text.strip()}\n')
        header = f"# design {number}\n" + ("" if working else "import os\n")
        return f"NAME: Keyword shots {number}\nRATIONALE: two worked examples.\n```python\n{header}{body}```\n"

    def _reply(self, messages: list) -> str:
        text = "\n\n".join(str(m.get("content") or "") for m in messages)
        if text == "Reply with the word OK.":  # the preflight call before a search
            return "OK"
        if text.startswith("You design agents"):
            self.meta_prompts += 1
            return self._design(working=self.meta_prompts % 2 == 0)
        if text.startswith("This agent design failed"):
            return self._design(working=self.repairs_work)
        sentences = re.findall(r"Sentence: (.*)", text) or re.findall(r"\[\[ ## sentence ## \]\]\n(.*)", text)
        sentence = sentences[-1] if sentences else ""
        if "EXPLODE" in sentence:  # an LM outage: never a score
            raise RuntimeError("the fake LM was told to fail")
        if "TOOLONG" in sentence:  # the program's failure (its prompt is over the window): a result, scored 0
            raise litellm.ContextWindowExceededError("the prompt is over the fake LM's context window",
                                                     model="keyword", llm_provider="fake")
        if text.startswith("You design programs built from modules"):
            return self.recombine_replies[text.count("dev score ") % len(self.recombine_replies)]
        if text.startswith("You are improving one module"):
            return ("module: predict\ninstructions: Decide whether the review is positive or negative.\n"
                    f"n_demos: {2 + text.count('Program' + chr(39) + 's answer') % 3}\npredicted score: 0.7")
        if "improving the instruction" in text:
            return f"Decide whether the review is positive or negative (variant {self.calls})."
        if messages[0].get("role") == "system":
            block = messages[0]["content"].split("Your output fields are:", 1)[1].split("All interactions", 1)[0]
            fields = re.findall(r"`(\w+)`", block)
            knows = self.chat_demos_help and sum(m.get("role") == "assistant" for m in messages) >= 2
            return "\n\n".join(f"[[ ## {f} ## ]]\n{self._value(f, text, sentence, False, knows)}" for f in fields) + \
                "\n\n[[ ## completed ## ]]"
        lines = text.rstrip().split("\n")
        opened = lines[-1].rstrip(":")
        final_inputs = {line.split(":", 1)[0] for line in text.rsplit("\n\n", 1)[-1].split("\n")[:-1]}
        labels = list(dict.fromkeys(re.findall(r"^([A-Z][a-z ]*):", text, re.MULTILINE)))
        later = [name for name in labels[labels.index(opened) + 1:] if name not in final_inputs]
        names = [opened, *later]
        fields = [name.lower().replace(" ", "_") for name in names]
        parts = [f" {self._value(fields[0], text, sentence, True)}"]
        parts += [f"{name}: {self._value(field, text, sentence, True)}" for name, field in zip(names[1:], fields[1:])]
        return "\n".join(parts)

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        with self._lock:
            self.calls += 1
            self.last_params = dict(kwargs.get("optional_params") or {})
            self.prompts.append("\n\n".join(str(m.get("content") or "") for m in messages))
            sampled = self.samples_vary and (self.last_params.get("temperature") or 0) > 0
            turn = self._samples.get(self.prompts[-1], 0) if sampled else 0
            if sampled:
                self._samples[self.prompts[-1]] = turn + 1
        reply = (" positive" if turn % 2 == 0 else " negative") if sampled else self._reply(messages)
        words = sum(len(str(m.get("content") or "").split()) for m in messages)
        return ModelResponse(
            model=f"fake/{model}",
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            usage={"prompt_tokens": words, "completion_tokens": 2, "total_tokens": words + 2},
        )


RECOMBINE_REPLIES = (
    "I think the program should be better.",
    "topology: single\nanswer.format: completion\nanswer.n_demos: 3\npredicted score: 0.9",
    "topology: ensemble\nensemble.members: 2\nmember_1.from: 1\nmember_2.from: 1\npredicted score: 0.8",
    "answer.module: self_consistency\nanswer.samples: 2\nanswer.from: 1\npredicted score: 0.6",
)
"""By the number of programs the prompt shows: the first (the seed alone) gets the few-shot completion
prompt that wins on the fake; later ones recombine candidate #1."""

FAKE = KeywordLLM()


def register() -> KeywordLLM:
    if not any(entry.get("provider") == "fake" for entry in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": "fake", "custom_handler": FAKE}]
    return FAKE


def same_prompts(first: Any, second: Any, answers: list[dict[str, str]], sentences: list[str]) -> list[str]:
    """Run two programs on ``sentences``, each on its own DummyLM replaying ``answers``; assert they
    sent the LM exactly the same messages (so any LM answers them alike) and return the labels."""
    import dspy
    from dspy.utils.dummies import DummyLM

    runs = []
    for program in (first, second):
        lm = DummyLM(answers)
        with dspy.context(lm=lm):
            labels = [program(sentence=s).label for s in sentences]
        runs.append((labels, [h["messages"] for h in lm.history]))
    assert runs[0][1] and runs[0] == runs[1]
    return runs[0][0]


def communicate_or_dump(process: Any, stderr_path: Any, timeout: float) -> str:
    """Wait for ``process`` (its stderr going to ``stderr_path``) to exit; if it does not within
    ``timeout``, fail with every thread's stack, which the CLI prints on SIGUSR1."""
    import signal
    import subprocess
    import time

    import pytest

    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "most recent call first" not in stderr_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)
        process.kill()
        process.wait()
        pytest.fail(f"still running {timeout} s after the signal; its threads:\n{stderr_path.read_text(errors='replace')}")
    return stderr_path.read_text(errors="replace")


def default_sigint() -> None:
    """For a child that must act on Ctrl-C (``preexec_fn``): a job a non-interactive shell puts in the
    background ignores SIGINT, children inherit that, and Python then keeps it ignored; the suite run
    that way would test nothing but the shell (both signal tests hung there, never in the foreground)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
