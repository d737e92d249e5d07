"""The Jinja2 templates behind every LM-written artefact: instruction proposals, meta-agent prompts, designs.

They are files (``templates/``), so a prompt can be read and changed without touching code; one
environment loads them all, so a template can include another (the seed designs share their helpers
that way and still render to self-contained code).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["py"] = repr  # a Python literal, for values rendered into code
    return environment


def render(template: str, **values: Any) -> str:
    return _environment().get_template(template).render(**values)


def template_names(folder: str) -> list[str]:
    """The templates in ``folder``, without the partials (names starting with ``_``), sorted."""
    return sorted(f"{folder}/{path.name}" for path in (TEMPLATES / folder).glob("*.j2") if not path.name.startswith("_"))


@lru_cache(maxsize=1)
def _html_environment() -> jinja2.Environment:
    """For HTML pages (the run report): every value escaped unless marked safe."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              autoescape=True)


def render_html(template: str, **values: Any) -> str:
    return _html_environment().get_template(template).render(**values)
