"""A process that compiles KeyThenLabel with AgentSearch on the fake LM, SIGKILLing itself after
``kill_after`` stored examples when asked (tests/test_teleprompter.py); prints the fake's call count."""

from __future__ import annotations

import json
import os
import signal
import sys

import dspy

import agentsearch
from tests import fakes
from tests.test_teleprompter import exact, examples
from tests.user_programs import KeyThenLabel


class KillAfter(agentsearch.SearchCallback):
    def __init__(self, count: int) -> None:
        self.count, self.seen = count, 0

    def on_example(self, outcome, usage) -> None:
        self.seen += 1
        if self.seen == self.count:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as a machine dying would


def main() -> None:
    url, kill_after = sys.argv[1], int(sys.argv[2])
    # no cache: every call the program makes reaches the fake, so a repeated evaluation would show
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    fake = fakes.register()
    fake.chat_demos_help = True
    optimizer = agentsearch.AgentSearch(
        metric=exact, lm=dspy.LM("fake/keyword", num_retries=0), storage=url, max_candidates=8, num_instructions=2,
        max_demos=4, num_demo_sets=3, bootstrap_examples=10, callback=KillAfter(kill_after) if kill_after else None)
    compiled = optimizer.compile(KeyThenLabel(), trainset=examples(0, 20), valset=examples(100, 12))
    print(json.dumps({"calls": fake.calls, "run": optimizer.result.run.name, "best_dev": optimizer.result.best.dev_score,
                      "demos": [len(p.demos) for _, p in compiled.named_predictors()]}))


if __name__ == "__main__":
    main()
