"""Building a search space: bootstrapped and labelled demos, and instructions written by the proposer LM."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import dspy

from agentsearch.data import LabelledExample
from agentsearch.exceptions import LMUnavailableError
from agentsearch.lm import Usage, UsageMeter
from agentsearch.optimizers._demo_sets import MAX_CLASSES, class_labels, make_demo_sets
from agentsearch.optimizers._templates import render
from agentsearch.search_space import CandidateSpec, ModuleSpaceConfig, SearchSpace

# Tips steer each proposal somewhere different, as MIPROv2's do; without them a small proposer repeats itself.
TIPS = (
    "Keep it short and direct.",
    "Name the exact set of allowed answers.",
    "Describe what signals in the input decide the answer.",
    "Tell the model to answer with the label only, no explanation.",
    "Be creative: rephrase the task from the reader's point of view.",
    "Mention the common mistakes to avoid.",
)


MIN_PROPOSAL_TOKENS = 200
"""A task LM may be capped at a few tokens (a label); an instruction needs room."""


def summarize_data(examples: Sequence[LabelledExample], outputs: Sequence[str]) -> str:
    """A deterministic summary (no LM call): size, and label distribution or answer length per output."""
    parts = [f"{len(examples)} training examples."]
    for name in outputs:
        values = Counter(str(item.example[name]) for item in examples)
        if len(values) <= MAX_CLASSES:
            share = ", ".join(f"{value!r} {count / len(examples):.0%}" for value, count in values.most_common())
            parts.append(f"{name} takes the values {share}.")
        else:
            mean_words = sum(len(str(item.example[name]).split()) for item in examples) / len(examples)
            parts.append(f"{name} is free text of about {mean_words:.0f} words.")
    return " ".join(parts)


def ask_proposer(lm: dspy.BaseLM, prompt: str, *, rollout: int, min_tokens: int) -> tuple[str | None, Usage]:
    """One sampled proposal (temperature 1, its own cache entry per ``rollout``) and what it cost.

    None when the call fails for the prompt's sake (too long for the context): the caller decides
    what a missing proposal means. An LM outage is not a missing proposal: LMUnavailableError
    propagates and stops the run, which a resume continues once the LM is back.
    """
    meter = UsageMeter()
    try:
        with dspy.context(usage_tracker=meter):
            replies = lm(messages=[{"role": "user", "content": prompt}], temperature=1.0, rollout_id=rollout,
                         max_tokens=max(lm.kwargs.get("max_tokens") or 0, min_tokens))
    except LMUnavailableError as exc:
        exc.usage = meter.usage  # the caller's budget still counts the attempts
        raise
    except Exception:
        return None, meter.usage
    reply = replies[0] if replies else ""
    return (reply if isinstance(reply, str) else str(reply.get("text", ""))), meter.usage


def clean_instruction(text: str) -> str:
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return ""
    first = paragraphs[0].removeprefix("Instruction:").removeprefix("New instruction:").strip().strip('"').strip()
    return first[:800]


def propose_instructions(
    lm: dspy.BaseLM, seed: CandidateSpec, train: Sequence[LabelledExample], *, count: int, rng: random.Random,
    role: str | None = None,
) -> tuple[list[str], Usage]:
    """Up to ``count`` new, distinct instructions; proposals that fail or repeat are dropped.
    ``role``: what the predictor does within a larger program (``program_role``), shown to the proposer."""
    predictor = seed.predictors[0]
    signature = dspy.Signature(predictor.signature)
    summary = summarize_data(train, list(signature.output_fields))
    usage = Usage()
    found: list[str] = []
    for attempt in range(2 * count):
        if len(found) >= count:
            break
        shown = rng.sample(list(train), min(3, len(train)))
        prompt = render(
            "propose_instruction.j2",
            inputs=list(signature.input_fields),
            outputs=list(signature.output_fields),
            seed_instruction=predictor.instructions,
            summary=summary,
            examples=[dict(item.example.items()) for item in shown],
            tip=TIPS[attempt % len(TIPS)],
            role=role,
        )
        try:
            reply, spent = ask_proposer(lm, prompt, rollout=attempt, min_tokens=MIN_PROPOSAL_TOKENS)
        except LMUnavailableError as exc:  # what the earlier proposals spent is counted too
            usage.add(exc.usage)
            exc.usage = usage
            raise
        usage.add(spent)
        text = clean_instruction(reply or "")
        if text and text != predictor.instructions and text not in found:  # a failed or repeated one is dropped
            found.append(text)
    return found, usage


def build_space(
    seed: CandidateSpec,
    *,
    train: Sequence[LabelledExample],
    bootstrapped: dict[str, dict[str, Any]],
    instructions: list[str],
    formats: Sequence[str],
    num_demo_sets: int,
    max_demos: int,
    levels: Sequence[str],
    modules: ModuleSpaceConfig,
    rng: random.Random,
) -> SearchSpace:
    """``bootstrapped`` maps a train example id to the seed's passing output for it, inputs included."""
    demos: dict[str, dict[str, Any]] = {}
    for item in train:
        demos[item.id] = bootstrapped.get(item.id) or dict(item.example.items())
    preferred = [item.id for item in train if item.id in bootstrapped]
    others = [item.id for item in train if item.id not in bootstrapped]
    outputs = list(dspy.Signature(seed.predictors[0].signature).output_fields)
    demo_sets = make_demo_sets(preferred, others, num_sets=num_demo_sets, size=max_demos, rng=rng,
                               label_of=class_labels(train, outputs))
    pool = tuple(item.id for item in train) if modules.retrieves(levels, max_demos) else ()
    used = {demo for demo_set in demo_sets for demo in demo_set} | set(pool)
    return SearchSpace(
        signature=seed.predictors[0].signature,
        instructions=(seed.predictors[0].instructions, *instructions),
        demo_sets=demo_sets,
        retrieval_pool=pool,
        demos={demo_id: demos[demo_id] for demo_id in demos if demo_id in used},
        formats=tuple(formats),
        max_demos=max_demos if demo_sets else 0,
        levels=tuple(levels),
        modules=modules,
    )
