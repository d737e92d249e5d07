"""The meta agent: an LM that writes whole agent programs from an archive of earlier designs (ADAS).

The archive starts with hand-written designs of the known patterns (few-shot, chain of thought,
self-consistency, self-refine, debate, role assignment, step-back), rendered for the task from
``templates/designs`` so they are self-contained code in the same form the meta agent writes. Once
they are scored, each ``ask`` shows the proposer LM the task, the archive with dev scores, LM calls
per input and typical failures (all read from the store, so a resumed run sees what the first
process saw), and takes the design it writes. A design that will not run goes back to the proposer
with its error (``repair``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from agentsearch.evaluators import AgentLimits
from agentsearch.evaluators._sandbox_child import AGENT_MODULES
from agentsearch.lm import Usage
from agentsearch.optimizers._base import BaseOptimizer, Outcome, Proposal
from agentsearch.optimizers._proposer import ask_proposer
from agentsearch.optimizers._templates import render, template_names
from agentsearch.search_space import DesignSpec

MIN_DESIGN_TOKENS = 1200
"""A design is a page of code; a task LM capped at a label's few tokens could not write one."""


@dataclass(frozen=True)
class DesignTask:
    """What the meta agent is told about the task."""

    signature: str
    instructions: str
    summary: str
    examples: tuple[dict[str, Any], ...]
    """Labelled train examples shown in prompts and built into the seed designs as worked examples."""
    limits: AgentLimits = AgentLimits()

    @property
    def inputs(self) -> list[str]:
        return list(dspy.Signature(self.signature).input_fields)

    @property
    def outputs(self) -> list[str]:
        return list(dspy.Signature(self.signature).output_fields)

    def context(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": self.outputs, "instructions": self.instructions,
                "summary": self.summary, "examples": list(self.examples), "modules": AGENT_MODULES,
                "max_lm_calls": self.limits.max_lm_calls, "cpu_s": self.limits.cpu_s}


@dataclass(frozen=True)
class ArchiveEntry:
    """A scored design, as the meta agent sees it."""

    candidate_id: int
    spec: DesignSpec
    score: float
    calls: float
    """LM calls per input on dev."""
    failures: tuple[str, ...] = ()
    """A few dev inputs it got wrong: the input, its answer or error, the expected answer."""


def seed_designs(task: DesignTask) -> list[DesignSpec]:
    """The hand-written designs, rendered for the task; each template's docstring is ``name: rationale``."""
    designs = []
    for name in template_names("designs"):
        code = render(name, **task.context())
        docstring = re.match(r'\s*"""(.*?)"""', code, re.DOTALL)
        title, _, rationale = (docstring.group(1) if docstring else name).partition(":")
        designs.append(DesignSpec(signature=task.signature, name=title.strip(), rationale=rationale.strip(),
                                  code=code))
    return designs


def parse_design(text: str, signature: str, *, default_name: str) -> DesignSpec:
    """The design in a meta-agent reply. A reply without a code block keeps its text as the code,
    so the sandbox's error (not a guess here) is what the repair round shows the proposer."""
    name = re.search(r"^\s*NAME:\s*(.+)$", text, re.MULTILINE)
    rationale = re.search(r"^\s*RATIONALE:\s*(.+)$", text, re.MULTILINE)
    fenced = re.search(r"```(?:python)?\s*\n(.*?)(?:```|\Z)", text, re.DOTALL)
    code = fenced.group(1) if fenced else text
    return DesignSpec(signature=signature, name=(name.group(1).strip()[:200] if name else default_name),
                      rationale=rationale.group(1).strip() if rationale else "", code=code.strip() + "\n")


@dataclass
class MetaAgentOptimizer(BaseOptimizer):
    """Ask/tell over agent designs. Its state is the store: ``archive()`` reads the scored designs.

    ``known()`` gives the hashes of every design already tried (scored or failed), so the seeds are
    proposed once each, and ``spend(usage)`` charges the proposer's calls to the run's budget.
    """

    task: DesignTask
    proposer: dspy.BaseLM
    archive: Callable[[], list[ArchiveEntry]]
    known: Callable[[], set[str]]
    spend: Callable[[Usage], None]
    seed_candidate_id: int
    show_code: int = 3
    repairs: int = 3
    """Rounds a design that will not run gets to be fixed: a failed design's repair is the next ``ask``."""
    """Designs whose code the prompt shows (the best ones); the rest by name, rationale and score."""
    name: str = "meta_agent"
    seeds: list[DesignSpec] = field(init=False)
    _last_known: int | None = field(init=False, repr=False)
    _repeats: int = field(init=False, repr=False)
    _to_repair: list[tuple[Proposal, str, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.seeds = seed_designs(self.task)
        self._last_known: int | None = None
        self._repeats = 0
        self._to_repair = []

    @property
    def owes_proposal(self) -> bool:
        return bool(self._to_repair)

    def ask(self) -> Proposal:
        if self._to_repair:
            failed, error, candidate_id = self._to_repair.pop(0)
            return self.repair(failed, error, candidate_id)
        known = self.known()
        for seed in self.seeds:
            if seed.hash not in known:
                return Proposal(seed, (self.seed_candidate_id,), origin="archive")
        entries = sorted(self.archive(), key=lambda entry: -entry.score)
        number = len(known)
        # asked again with nothing new stored (the last design repeated a known one): a new sample
        self._repeats = self._repeats + 1 if number == self._last_known else 0
        self._last_known = number
        rollout = number * 1_000 + self._repeats
        for shown in range(min(self.show_code, len(entries)), -1, -1):  # a small context: show less code
            archive = [{"name": e.spec.name, "rationale": e.spec.rationale, "score": e.score, "calls": e.calls,
                        "failures": e.failures, "code": e.spec.code if i < shown else None}
                       for i, e in enumerate(entries)]
            reply = self._complete(render("meta_agent.j2", archive=archive, **self.task.context()), rollout=rollout)
            if reply is not None:
                spec = parse_design(reply, self.task.signature, default_name=f"design {number}")
                return Proposal(spec, tuple(e.candidate_id for e in entries[:max(shown, 1)])
                                or (self.seed_candidate_id,))
        return Proposal(DesignSpec(signature=self.task.signature, name=f"design {number}",
                                   code="# the proposer LM could not be reached\n"),
                        tuple(e.candidate_id for e in entries[:1]) or (self.seed_candidate_id,))

    def repair(self, proposal: Proposal, error: str, failed_candidate_id: int) -> Proposal:
        """A fixed version of a design that would not run, from the proposer shown the error."""
        spec = proposal.spec
        prompt = render("repair_design.j2", code=spec.code, error=error, name=spec.name, **self.task.context())
        reply = self._complete(prompt, rollout=len(self.known()))
        fixed = parse_design(reply or "", self.task.signature, default_name=spec.name)
        return Proposal(fixed, (failed_candidate_id,), origin="repair", counts=False, repairs=proposal.repairs + 1)

    def _complete(self, prompt: str, *, rollout: int) -> str | None:
        reply, usage = ask_proposer(self.proposer, prompt, rollout=rollout, min_tokens=MIN_DESIGN_TOKENS)
        self.spend(usage)
        return reply

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """A design that would not run goes back to the proposer with its error (the next ``ask``)
        until its chain has had ``repairs`` fixes; scores need no memory: ``ask`` reads the archive."""
        if outcome.error is not None and outcome.candidate_id is not None and proposal.repairs < self.repairs:
            self._to_repair.append((proposal, outcome.error, outcome.candidate_id))
