"""Topologies: how a program's nodes are wired, one module per topology.

Each topology is one subclass of ``Topology`` in a module of this package, found here by name: it
declares the roles its nodes play (what each reads and writes, fixed instructions for the nodes
that only wire), the spec options it owns, how a spec of it is checked and run, what the search
space asks a trial for it and how many programs that adds, and how a module-level lift puts the
best prompts into it. Adding a topology is adding its module (and its test); nothing else names it.
"""

from __future__ import annotations

from agentsearch._registry import import_parts
from agentsearch.search_space.topologies._base import (
    Role,
    Topology,
    node_role,
    topology,
    topology_names,
)

import_parts(__name__, __path__)

__all__ = ["Role", "Topology", "node_role", "topology", "topology_names"]
