"""Node kinds: the reasoning modules a node of a program may be, one module per kind.

Each kind is one subclass of ``NodeKind`` in a module of this package, found here by name: it
declares the spec options it owns, how its DSPy module is built, what the search space asks a trial
for it and how many configurations that adds, and how a module-level lift turns the best prompt
into a node of its kind. Adding a kind is adding its module (and its test); nothing else names it.
"""

from __future__ import annotations

from agentsearch._registry import import_parts
from agentsearch.search_space.kinds._base import (
    NodeKind,
    demo_kinds,
    kind_names,
    node_kind,
)

import_parts(__name__, __path__)

__all__ = ["NodeKind", "demo_kinds", "kind_names", "node_kind"]
