"""Module recombination and module evolution by an LLM (AgentSquare, Shang et al., 2024), over the run's space.

AgentSquare searches a modular design space with two LLM operators and screens their proposals with
a performance predictor before any is evaluated. Here the modules are the space's node kinds and
topologies, and each ``ask`` has the proposer LM write ``drafts`` proposals, each by one operator:

- ``recombine``: the LM is shown the menu (topologies with their settings, node kinds, formats) and
  the archive of scored candidates, each written as its settings (``topology: ensemble``,
  ``member_1.module: chain_of_thought``) with its dev score, LM calls per example and typical
  failures, and writes a new program in the same settings; ``member_1.from: 3`` takes node
  ``member_1``'s prompt (instructions, demos, format and options) from candidate #3;
- ``evolve``: the LM is shown one task node of a parent (its role in the program, kind, format and
  instructions, and the parent's failures) and writes that node's new kind and instructions.

**Validation.** A draft becomes a spec through the space's own ``suggest``, replayed with a scripted
trial: each setting the draft names is checked against the choices the space offers at that point.
A value that is not a choice is repaired (the closest choice by spelling, else the parent's value;
a number is clamped to its range); a setting the program does not have is ignored; a setting the
draft leaves out is the parent's (or the ``from`` donor's). The repairs are kept as notes. A draft
with no usable setting, one that changes nothing, or one that repeats a known candidate is
rejected. Notes and rejections are kept in the run (the store's notes, so a resumed process and
every worker see them) and the last six are shown to the proposer in its next prompts.

**Screening.** The valid drafts are ranked by a predictor that costs no call: the
similarity-weighted mean dev score of the ``neighbours`` nearest archive candidates, similarity
being the Jaccard index of their features (topology and its rounds and aggregator; per node role:
kind, format, demo count, samples, instructions). The draft predicted best is evaluated, the others
are dropped (between equal predictions, the program with fewer LM calls per example). When most of
a parent's failures are answers its format could not parse, an evolve draft also moves the node to
another format, as evolve does. If every draft is rejected, a recombination without the LM is taken (one archive
candidate's topology with another's nodes, or one node of another kind), and if all of those are
known too, a random draw from the space (its parent: the seed, as a sampler's candidates have).

The evaluated child then faces minibatch acceptance against its parents, as evolve's children do.
Its state is the store: the archive is read from the run, and the proposals made so far are counted
from the candidates the optimizer created, which seeds each ask's random choices.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from agentsearch.lm import Usage
from agentsearch.optimizers._acceptance import MinibatchAcceptance, Scored
from agentsearch.optimizers._base import Outcome, Proposal
from agentsearch.optimizers._evolve import Failure, ScoredCandidate, mostly_unparsed
from agentsearch.optimizers._proposer import MIN_PROPOSAL_TOKENS, ask_proposer
from agentsearch.optimizers._templates import render
from agentsearch.search_space import CandidateSpec, PredictorSpec, SearchSpace
from agentsearch.search_space.kinds import node_kind
from agentsearch.search_space.topologies import node_role, topology
from agentsearch.search_space.topologies._base import role
from agentsearch.search_space.topologies.program import program_role

NODE_SETTINGS = ("module", "format", "samples", "judge", "max_iters", "retrieve_k")
"""A node's settings a draft may name (``answer.module``): PredictorSpec fields the space asks for by that name."""
PROMPT_CHOICES = ("instruction",)
"""Instructions by index into the space's list: a draft takes a node's instructions from a candidate
(``from``) or writes them (``instructions``)."""
DEMO_CHOICES = ("n_demos", "demo_set")
"""A node's demos: the first ``n_demos`` of the space's ``demo_set``; a draft that names neither keeps
the demos of the node it takes the prompt from."""
_PREFERRED = {"module": "predict", "format": "chat"}
_SETTING = re.compile(r"^[\s>*-]*`?([A-Za-z_][\w.]*)`?\s*[:=]\s*(.+?)\s*$", re.MULTILINE)
_PREDICTED = re.compile(r"predicted(?:\s+score)?\s*[:=]\s*([01](?:\.\d+)?)", re.IGNORECASE)


@dataclass
class Draft:
    """A proposal as the proposer wrote it, before it is checked against the space."""

    operator: str
    """``recombine``, ``evolve`` (one node), ``crossover`` or ``random`` (no LM)."""
    parent: ScoredCandidate
    settings: dict[str, str] = field(default_factory=dict)
    donors: dict[str, int] = field(default_factory=dict)
    """Node name -> candidate number its prompt is taken from."""
    instructions: dict[str, str] = field(default_factory=dict)
    predicted: float | None = None
    """The proposer's own guess of the dev score, as it wrote it: kept on the draft, not used to screen
    (the predictor ranks drafts by the archive's scores)."""


@dataclass(frozen=True)
class Realized:
    spec: CandidateSpec
    parents: tuple[int, ...]
    notes: tuple[str, ...]


class Rejected(ValueError):
    """A draft that cannot become a new candidate; the message says why (the proposer is shown it)."""


# the settings language -----------------------------------------------------------------------------
def spec_settings(spec: CandidateSpec) -> dict[str, Any]:
    """The settings that describe ``spec``'s shape: its topology's own choices and each node's settings
    (the options its kind has), in the names the space's trials use."""
    settings: dict[str, Any] = {"topology": spec.topology, **topology(spec.topology).shape_params(spec)}
    for node in spec.predictors:
        owned = ("module", "format", *node_kind(node.module).options)
        settings.update({f"{node.name}.{name}": getattr(node, name) for name in NODE_SETTINGS if name in owned})
        if node_kind(node.module).fixed_demos and node.demo_ids:
            settings[f"{node.name}.n_demos"] = len(node.demo_ids)
    return settings


def parse_draft(text: str, parent: ScoredCandidate, *, operator: str, node: str | None = None) -> Draft:
    """The settings in a reply: ``name: value`` lines; with ``node``, a bare ``module:`` means that node's."""
    draft = Draft(operator, parent)
    predicted = _PREDICTED.search(text)
    if predicted:
        draft.predicted = float(predicted.group(1))
    for key, value in _SETTING.findall(text):
        key = key.strip().lower()
        if key.startswith("predicted"):
            continue
        if node is not None and "." not in key:
            key = f"{node}.{key}"
        name, _, setting = key.rpartition(".")
        value = value.strip().strip("`\"'").strip()
        if setting in ("instructions", "instruction") and name and len(value.split()) > 1:
            draft.instructions.setdefault(name, value[:800])
        elif setting == "from" and name:
            number = re.search(r"\d+", value)
            if number:
                draft.donors.setdefault(name, int(number.group()))
        elif key not in draft.settings:
            draft.settings[key] = value
    return draft


class _ScriptedTrial:
    """Answers the space's questions from a draft's settings, falling back to ``fallback(name)``.

    Records what was asked, and a note for each value it had to repair."""

    def __init__(self, settings: dict[str, str], fallback: Callable[[str], Any]) -> None:
        self.settings, self.fallback = settings, fallback
        self.asked: dict[str, Any] = {}
        self.notes: list[str] = []

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        self.asked[name] = choices
        if name in self.settings and name.rsplit(".", 1)[-1] not in PROMPT_CHOICES:
            raw = self.settings[name].lower()
            by_text = {str(choice).lower(): choice for choice in choices}
            if raw in by_text:
                return by_text[raw]
            close = difflib.get_close_matches(raw, list(by_text), n=1, cutoff=0.6)
            value = by_text[close[0]] if close else self._fallback(name, choices)
            self.notes.append(f"{name}: {self.settings[name]!r} is not one of {', '.join(map(str, choices))}; "
                              f"took {value}")
            return value
        return self._fallback(name, choices)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.asked[name] = (low, high)
        if name in self.settings and name.rsplit(".", 1)[-1] not in PROMPT_CHOICES:
            number = re.search(r"-?\d+", self.settings[name])
            if number:
                value = int(number.group())
                if not low <= value <= high:
                    self.notes.append(f"{name}: {value} is outside {low} to {high}")
                return min(max(value, low), high)
            self.notes.append(f"{name}: {self.settings[name]!r} is not a number")
        value = self.fallback(name)
        return min(max(value, low), high) if isinstance(value, int) and not isinstance(value, bool) else low

    def _fallback(self, name: str, choices: list[Any]) -> Any:
        value = self.fallback(name)
        if value in choices:
            return value
        preferred = _PREFERRED.get(name.rsplit(".", 1)[-1])
        return preferred if preferred in choices else choices[0]


class _RandomTrial:
    """Answers every question of the space at random (the last resort when no recombination is new)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self.rng.randint(low, high)


# the predictor ---------------------------------------------------------------------------------------
def features(spec: CandidateSpec) -> frozenset[str]:
    found = {f"topology={spec.topology}", f"rounds={spec.rounds}", f"aggregator={spec.aggregator}"}
    for node in spec.predictors:
        role = node_role(node.name)
        instructions = hashlib.sha256(node.instructions.encode()).hexdigest()[:8]
        found |= {f"{role}.kind={node.module}", f"{role}.format={node.format}", f"{role}.demos={len(node.demo_ids)}",
                  f"{role}.samples={node.samples}", f"{role}.instructions={instructions}"}
    return frozenset(found)


def calls_per_example(spec: CandidateSpec) -> int:
    """A program's LM calls per example as its spec says (samples of each node, times its rounds):
    the tie-break between drafts the predictor cannot tell apart."""
    return sum(node.samples for node in spec.predictors) * spec.rounds


def similarity(a: CandidateSpec, b: CandidateSpec) -> float:
    fa, fb = features(a), features(b)
    return len(fa & fb) / len(fa | fb)


def predict_score(spec: CandidateSpec, archive: Sequence[ScoredCandidate], neighbours: int = 3) -> float | None:
    """The similarity-weighted mean dev score of the ``neighbours`` most similar archive candidates
    (ties broken by candidate number); the archive's mean when none shares a feature; None without archive."""
    if not archive:
        return None
    nearest = sorted(((similarity(spec, entry.spec), -entry.number, entry.mean) for entry in archive), reverse=True)
    nearest = nearest[:neighbours]
    weight = sum(sim for sim, _, _ in nearest)
    if weight == 0:
        return sum(entry.mean for entry in archive) / len(archive)
    return sum(sim * mean for sim, _, mean in nearest) / weight


# the optimizer ---------------------------------------------------------------------------------------
HINTS = 6
"""Notes on earlier drafts a prompt shows (the most recent)."""


class RecombineOptimizer(MinibatchAcceptance):
    """Ask/tell over module-level candidates; see the module docstring.

    ``population()`` reads the candidates of the space's levels fully scored on dev; ``known()`` maps
    every candidate's spec hash to its number; ``asked()`` counts this optimizer's candidates;
    ``failures(candidate_id, rng)`` reads a few of a candidate's wrong dev answers; ``spend`` books
    the proposer's calls to the run.
    """

    name = "recombine"

    def __init__(self, space: SearchSpace, proposer: dspy.BaseLM, *,
                 population: Callable[[], list[ScoredCandidate]],
                 known: Callable[[], dict[str, int]],
                 asked: Callable[[], int],
                 failures: Callable[[int, random.Random], list[Failure]],
                 spend: Callable[[Usage], None], seed: int, minibatch: int, task: str = "",
                 drafts: int = 3, neighbours: int = 3, show: int = 5,
                 notes: Callable[[int], list[str]] | None = None,
                 keep_note: Callable[[str], None] | None = None) -> None:
        self.space, self.proposer = space, proposer
        self.population: Callable[[], list[ScoredCandidate]] = population
        self.known, self.asked, self.failures, self.spend = known, asked, failures, spend
        self.seed, self.minibatch, self.task = seed, minibatch, task
        self.drafts, self.neighbours, self.show = drafts, neighbours, show
        self.reported: dict[str, dict[int, float]] = {}
        self._scored: dict[int, Scored] = {}
        self._last_number: int | None = None
        self._repeats = 0
        kept: list[str] = []
        self._notes = notes or (lambda last: kept[-last:])
        self._keep_note = keep_note or kept.append
        self.last_screen: list[tuple[Draft, Realized | str, float | None]] = []
        """The last ask's drafts: each with what it became (or why it was rejected) and its prediction."""

    @property
    def operators(self) -> tuple[str, ...]:
        structural = "module" in self.space.levels and (len(self.space.topologies) > 1 or len(self.space.kinds) > 1)
        return ("recombine", "evolve") if structural else ("evolve",)

    def ask(self) -> Proposal:
        number = self.asked()
        self._repeats = self._repeats + 1 if number == self._last_number else 0
        self._last_number = number
        rng = random.Random((self.seed * 1_000_003 + number) * 1_009 + self._repeats + 17)
        archive = sorted(self.population(), key=lambda entry: (-entry.mean, entry.number))
        self._scored = {entry.candidate_id: entry for entry in archive}
        if not archive:
            raise RuntimeError("recombine needs a scored candidate (the seed) to start from")
        known = self.known()
        self.last_screen = []
        rollout = (number * 1_000 + self._repeats) * 10
        operators = self.operators
        for index in range(self.drafts):
            operator = operators[(number + index) % len(operators)]
            draft = self._draft(operator, archive, rng, rollout=rollout + index)
            self._screen(draft, archive, known)
        valid = [(realized, predicted) for _, realized, predicted in self.last_screen if isinstance(realized, Realized)]
        if not valid:
            for _ in range(3):  # no draft survived: recombine without the LM
                draft = self._crossover(archive, rng)
                self._screen(draft, archive, known)
                realized = self.last_screen[-1][1]
                if isinstance(realized, Realized):
                    valid = [(realized, self.last_screen[-1][2])]
                    break
        if not valid:  # the archive's recombinations are all known: a fresh draw from the space
            seed = min(archive, key=lambda entry: entry.number)
            for _ in range(10):
                spec = self.space.suggest(_RandomTrial(rng))
                if spec.hash not in known:
                    self.last_screen.append((Draft("random", seed), Realized(spec, (seed.candidate_id,), ()),
                                             predict_score(spec, archive, self.neighbours)))
                    return Proposal(spec, (seed.candidate_id,))
            return Proposal(archive[0].spec, (archive[0].candidate_id,))  # the loop tells it as a duplicate
        # the best prediction; among equal ones (one scored candidate predicts the same for all), the cheaper program
        best = min(valid, key=lambda item: (-(item[1] if item[1] is not None else float("-inf")),
                                            calls_per_example(item[0].spec)))[0]
        return Proposal(best.spec, best.parents)

    def _screen(self, draft: Draft, archive: list[ScoredCandidate], known: dict[str, int]) -> None:
        try:
            realized = self.realize(draft, archive, known)
        except Rejected as exc:
            self.last_screen.append((draft, str(exc), None))
            self._hint(f"{draft.operator} draft rejected: {exc}")
            return
        for note in realized.notes:
            self._hint(f"repaired: {note}")
        self.last_screen.append((draft, realized, predict_score(realized.spec, archive, self.neighbours)))

    @property
    def hints(self) -> list[str]:
        """Repairs and rejections of the last drafts (the run's, kept in the store), shown in the next prompts."""
        return self._notes(HINTS)

    def _hint(self, text: str) -> None:
        self._keep_note(text)

    # drafts ------------------------------------------------------------------------------------------
    def _draft(self, operator: str, archive: list[ScoredCandidate], rng: random.Random, *, rollout: int) -> Draft:
        parent = self._tournament(archive, rng)
        if operator == "evolve":
            nodes = topology(parent.spec.topology).task_nodes(parent.spec)
            node = parent.spec.predictors[rng.choice(nodes)]
            failures = self.failures(parent.candidate_id, rng)
            reply = self._ask(self._evolve_prompt(parent, node, rng, failures), rollout)
            draft = parse_draft(reply or "", parent, operator=operator, node=node.name)
            self._unparsed_format(draft, node, failures, rng)
            return draft
        for shown in range(min(self.show, len(archive)), 0, -1):  # a small context: show fewer candidates
            reply = self._ask(self._recombine_prompt(archive[:shown], rng), rollout)
            if reply is not None:
                return parse_draft(reply, parent, operator=operator)
        return Draft(operator, parent)

    def _unparsed_format(self, draft: Draft, node: PredictorSpec, failures: list[Failure],
                         rng: random.Random) -> None:
        """When most of the parent's failures are answers its format could not parse, no instruction
        or kind fixes them: the draft moves the node to another format (with demos for the few-shot
        completion format), unless it chose one itself. Evolve does the same."""
        others = [f for f in self.space.formats if f != node.format]
        if not others or f"{node.name}.format" in draft.settings or not mostly_unparsed(failures):
            return
        draft.settings[f"{node.name}.format"] = fmt = rng.choice(others)
        if fmt == "completion" and self.max_demos and not node.demo_ids and f"{node.name}.n_demos" not in draft.settings:
            draft.settings[f"{node.name}.n_demos"] = str(self.max_demos)
        self._hint(f"{node.name}: most answers in format {node.format} did not parse; tried {fmt}")

    def _tournament(self, archive: list[ScoredCandidate], rng: random.Random, size: int = 3) -> ScoredCandidate:
        entrants = rng.sample(archive, min(size, len(archive)))
        return min(entrants, key=lambda entry: (-entry.mean, entry.number))

    def _crossover(self, archive: list[ScoredCandidate], rng: random.Random) -> Draft:
        """One archive candidate's topology with another's nodes; with one candidate, a node of another kind."""
        first = self._tournament(archive, rng)
        others = [entry for entry in archive if entry.number != first.number]
        draft = Draft("crossover", first)
        nodes = [first.spec.predictors[i] for i in topology(first.spec.topology).task_nodes(first.spec)]
        if others and rng.random() < 0.5:
            donor = rng.choice(others)
            draft.donors = {node.name: donor.number for node in nodes}
        else:
            node = rng.choice(nodes)
            kinds = [k for k in self.space.kinds_for(node.signature) if k != node.module]
            formats = [f for f in self.space.formats if f != node.format]
            if kinds and "module" in self.space.levels:
                draft.settings[f"{node.name}.module"] = rng.choice(kinds)
            elif formats:
                draft.settings[f"{node.name}.format"] = rng.choice(formats)
        if "module" in self.space.levels and len(self.space.topologies) > 1 and rng.random() < 0.5:
            draft.settings["topology"] = rng.choice([t for t in self.space.topologies if t != first.spec.topology])
        return draft

    def _ask(self, prompt: str, rollout: int) -> str | None:
        reply, usage = ask_proposer(self.proposer, prompt, rollout=rollout, min_tokens=MIN_PROPOSAL_TOKENS)
        self.spend(usage)
        return reply

    # prompts -----------------------------------------------------------------------------------------
    @functools.cached_property
    def menu(self) -> dict[str, Any]:
        """What the space offers, found by asking its ``suggest`` (no list of settings is kept here);
        the space is fixed for the run, so it is probed once."""
        topologies = []
        for name in self.space.topologies:
            trial = _ScriptedTrial({"topology": name}, lambda _: None)
            spec = self.space.suggest(trial)
            own = {key: _choices(value) for key, value in trial.asked.items() if key.startswith(f"{name}.")}
            topologies.append({"name": name, "doc": _first_sentence(topology(name)), "settings": own,
                               "nodes": [node.name for node in spec.predictors]})
        kinds = []
        probe_topology = self.space.topologies[0]
        for kind in self.space.kinds:
            trial = _ScriptedTrial({"topology": probe_topology}, lambda _: None)
            base = self.space.suggest(trial)
            first = base.predictors[topology(probe_topology).task_nodes(base)[0]].name
            trial = _ScriptedTrial({"topology": probe_topology, f"{first}.module": kind}, lambda _: None)
            self.space.suggest(trial)
            own = {key.split(".", 1)[1]: _choices(value) for key, value in trial.asked.items()
                   if key.startswith(f"{first}.") and key.split(".", 1)[1] in NODE_SETTINGS[2:]}
            kinds.append({"name": kind, "doc": _first_sentence(node_kind(kind)), "settings": own})
        return {"topologies": topologies, "kinds": kinds, "formats": list(self.space.formats),
                "max_demos": self.max_demos}

    @property
    def max_demos(self) -> int:
        """Demos a task node may show (0: the space does not search demos)."""
        searched = "prompt" in self.space.levels and self.space.demo_sets
        return self.space.max_demos if searched else 0

    def _describe(self, entry: ScoredCandidate, rng: random.Random, failures: int) -> dict[str, Any]:
        nodes = {node.name: node for node in entry.spec.predictors}
        return {"number": entry.number, "score": entry.mean, "calls": entry.calls,
                "settings": {key: value for key, value in spec_settings(entry.spec).items()},
                "instructions": {name: node.instructions[:160] for name, node in nodes.items()
                                 if _task_role(name)},
                "failures": self.failures(entry.candidate_id, rng)[:failures] if failures else []}

    def _recombine_prompt(self, shown: list[ScoredCandidate], rng: random.Random) -> str:
        archive = [self._describe(entry, rng, failures=2 if i == 0 else 0) for i, entry in enumerate(shown)]
        return render("recombine.j2", task=self.task, signature=self.space.signature, menu=self.menu,
                      archive=archive, hints=self.hints)

    def _evolve_prompt(self, parent: ScoredCandidate, node: PredictorSpec, rng: random.Random,
                       failures: list[Failure]) -> str:
        signature = dspy.Signature(node.signature)
        role = program_role(self.space.program, self.space.signature, node.name) if self.space.program else None
        kinds = [{"name": kind, "doc": _first_sentence(node_kind(kind))} for kind in self.space.kinds_for(node.signature)]
        return render("evolve_node.j2", task=self.task, signature=self.space.signature, node=node, role=role, parent=self._describe(parent, rng, 0),
                      inputs=list(signature.input_fields), outputs=list(signature.output_fields), kinds=kinds,
                      failures=failures, hints=self.hints,
                      change_instructions="prompt" in self.space.levels, max_demos=self.max_demos,
                      change_kind="module" in self.space.levels and len(kinds) > 1)

    # validation --------------------------------------------------------------------------------------
    def realize(self, draft: Draft, archive: Sequence[ScoredCandidate], known: dict[str, int]) -> Realized:
        """The draft as a spec of the space, with the notes of what had to be repaired; Rejected if none."""
        by_number = {entry.number: entry for entry in archive}
        notes: list[str] = []
        donors: dict[str, ScoredCandidate] = {}
        for name, number in draft.donors.items():
            if number in by_number:
                donors[name] = by_number[number]
            else:
                notes.append(f"{name}.from: #{number} is not a scored candidate; ignored")
        parent = draft.parent.spec
        first_task = parent.predictors[topology(parent.topology).task_nodes(parent)[0]]

        def source(name: str) -> PredictorSpec | None:
            """The node whose settings and prompt node ``name`` keeps: the donor's, else the parent's."""
            if name in donors:
                spec = donors[name].spec
                same = [node for node in spec.predictors if node.name == name]
                return same[0] if same else spec.predictors[topology(spec.topology).task_nodes(spec)[0]]
            same = [node for node in parent.predictors if node.name == name]
            if same:
                return same[0]
            return first_task if _task_role(name) else None

        parent_settings = spec_settings(parent)

        def fallback(name: str) -> Any:
            if name == "topology" or name.split(".", 1)[0] == parent.topology:
                return parent_settings.get(name)
            node_name, _, setting = name.rpartition(".")
            node = source(node_name)
            if node is not None and setting in NODE_SETTINGS:
                return getattr(node, setting)
            if setting == "n_demos":
                return len(node.demo_ids) if node is not None else 0
            if setting == "format":  # a new wiring node: the format the task nodes answer in
                return first_task.format
            return None

        usable = {key for key in draft.settings if key.rsplit(".", 1)[-1] not in PROMPT_CHOICES}
        if not usable and not donors and not draft.instructions:
            raise Rejected("no setting, 'from' or instructions found in the reply")
        trial = _ScriptedTrial(draft.settings, fallback)
        try:
            built = self.space.suggest(trial)
        except ValueError as exc:
            raise Rejected(f"not a program of this space: {exc}") from None
        notes += trial.notes
        ignored = sorted(key for key in usable if key not in trial.asked)
        if ignored:
            notes.append(f"{', '.join(ignored)}: not a setting of this program; ignored")
        predictors = list(built.predictors)
        for index in topology(built.topology).task_nodes(built):
            node = predictors[index]
            origin = source(node.name)
            update: dict[str, Any] = {}
            if origin is not None:
                update["instructions"] = origin.instructions
                named = any(f"{node.name}.{choice}" in draft.settings for choice in DEMO_CHOICES)
                if node_kind(node.module).fixed_demos and node_kind(origin.module).fixed_demos and not named:
                    update["demo_ids"] = origin.demo_ids
            if node.name in draft.instructions and "prompt" in self.space.levels:
                update["instructions"] = draft.instructions[node.name]
            try:
                predictors[index] = PredictorSpec.model_validate(node.model_copy(update=update).model_dump())
            except ValueError:
                update.pop("demo_ids", None)
                predictors[index] = PredictorSpec.model_validate(node.model_copy(update=update).model_dump())
        unknown = sorted(set(draft.instructions) - {node.name for node in predictors})
        if unknown:
            notes.append(f"instructions for {', '.join(unknown)}: no such node; ignored")
        try:
            spec = CandidateSpec.model_validate(built.model_copy(update={"predictors": tuple(predictors)}).model_dump())
        except ValueError as exc:
            raise Rejected(f"not a valid program: {exc}") from None
        if spec.hash in known:
            raise Rejected(f"it is candidate #{known[spec.hash]} again")
        parents = tuple(dict.fromkeys([draft.parent.candidate_id, *(entry.candidate_id for entry in donors.values())]))
        return Realized(spec, parents, tuple(notes))

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Scores need no memory (the archive is read from the run); a failure becomes a hint."""
        if outcome.error is not None:
            self._hint(f"a proposal failed: {outcome.error[:200]}")


def _task_role(name: str) -> bool:
    """Whether node ``name`` plays a role whose prompt the search varies (not a wiring role)."""
    try:
        return role(node_role(name)).instructions is None
    except ValueError:  # a predictor of your own program: its name is no role
        return True


def _choices(asked: Any) -> str:
    """A question the space asked, for the menu: ``2 to 3`` (a range) or ``vote or lm`` (choices)."""
    if isinstance(asked, tuple):
        return f"{asked[0]} to {asked[1]}"
    return " or ".join(map(str, asked))


def _first_sentence(registered: Any) -> str:
    doc = (sys.modules[type(registered).__module__].__doc__ or "").strip()
    doc = re.sub(r"^``\w+``:\s*", "", doc).replace("``", "")
    return " ".join(re.split(r"(?<=\.)\s", doc, maxsplit=1)[0].split())[:240]
