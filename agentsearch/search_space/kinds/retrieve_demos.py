"""``retrieve_demos``: Predict with the ``retrieve_k`` train examples nearest the input (BM25) as its
demos; its ``demo_ids`` are the pool it draws from, not fixed demos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentsearch.search_space.kinds._base import Demos, NodeKind, Params


class RetrieveDemos(NodeKind):
    name = "retrieve_demos"
    order = 6
    options = ("retrieve_k",)
    fixed_demos = False
    lift_rank = 3

    def build(self, spec: Any, signature: Any, demos: Demos, base_dir: Path | None) -> Any:
        from agentsearch.search_space._nodes import RetrieveDemos as Module

        return Module(signature, [demos[demo_id] for demo_id in spec.demo_ids], spec.retrieve_k)

    def available(self, space: Any) -> bool:
        return bool(space.retrieval_pool and space.max_demos)

    def suggest(self, space: Any, trial: Any, node: str) -> Params:
        return {"demo_ids": space.retrieval_pool,
                "retrieve_k": trial.suggest_int(f"{node}.retrieve_k", 1, space.max_demos)}

    def configurations(self, space: Any) -> int:
        return space.max_demos

    def lift(self, space: Any, prompt: Params) -> Params:
        return {"retrieve_k": max(1, min(prompt.get("answer.n_demos") or space.max_demos, space.max_demos))}
