"""Reading a task's splits into DSPy examples, each with a stable id.

Ids matter: candidate specs refer to demos by id and the store keys per-example results by id, so
resuming a run or re-scoring a saved program needs the same id for the same row. A row's ``id``
column is used when present, else ``<split>:<row number>``.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agentsearch.exceptions import TaskSpecError

if TYPE_CHECKING:
    import dspy

    from agentsearch.task import ProgramConfig, Task


@dataclass(frozen=True)
class LabelledExample:
    id: str
    example: dspy.Example


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8" writes one) is read as one, not as a header's first characters
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if suffix == ".jsonl":
            rows = []
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {number} is not JSON ({exc.msg})") from None
                    if not isinstance(row, dict):
                        raise ValueError(f"line {number} is not a JSON object")
                    rows.append(row)
            return rows
        if suffix == ".csv":
            return list(csv.DictReader(handle))
    raise ValueError("expected a .jsonl or .csv file")


def _bad_value(row: dict, inputs: list[str], outputs: list[str], max_chars: int) -> str | None:
    """What is wrong with a row's signature fields: null, NaN, an empty answer, or a value too long."""
    for name in inputs + outputs:
        value = row[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"field {name!r} is {'null' if value is None else 'NaN'} (a missing value)"
        if name in outputs and not str(value).strip():
            return f"field {name!r} is empty: every example needs its gold answer"
        if len(str(value)) > max_chars:
            return f"field {name!r} has {len(str(value)):,} characters, over data.max_field_chars={max_chars:,}"
    return None


def _check_ids(rows: list[dict], path: Path, *, field: str, source: str) -> None:
    """Ids key stored results and demos: two rows with one id would overwrite each other's results."""
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        if "id" not in row or row["id"] is None or not str(row["id"]).strip():
            raise TaskSpecError(f"{source}: {field}: {path} row {number} has no id while other rows have one")
        key = str(row["id"])
        if key in first_row:
            raise TaskSpecError(f"{source}: {field}: {path} rows {first_row[key]} and {number} share id {key!r}")
        first_row[key] = number


def read_split(
    path: Path, program: ProgramConfig, *, field: str, source: str, split: str | None = None, limit: int | None = None,
    max_chars: int = 100_000,
) -> list[LabelledExample]:
    import dspy

    if path.is_dir():
        raise TaskSpecError(f"{source}: {field}: {path} is a folder; name a .jsonl or .csv file")
    if not path.is_file():
        raise TaskSpecError(f"{source}: {field}: file not found: {path}")
    try:
        rows = _read_rows(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise TaskSpecError(f"{source}: {field}: {path}: {exc}") from None
    if not rows:
        raise TaskSpecError(f"{source}: {field}: {path} has no examples")
    inputs, outputs = program.input_fields(), program.output_fields()
    for number, row in enumerate(rows, start=1):
        missing = [name for name in inputs + outputs if name not in row]
        if missing:
            raise TaskSpecError(
                f"{source}: {field}: {path} row {number} lacks field {missing[0]!r} named by program.signature"
            )
        problem = _bad_value(row, inputs, outputs, max_chars)
        if problem:
            raise TaskSpecError(f"{source}: {field}: {path} row {number}: {problem}")
    if any("id" in row for row in rows):
        _check_ids(rows, path, field=field, source=source)
    prefix = split or path.stem
    examples = [
        LabelledExample(
            id=str(row["id"]) if "id" in row else f"{prefix}:{number}",
            example=dspy.Example({name: row[name] for name in inputs + outputs}).with_inputs(*inputs),
        )
        for number, row in enumerate(rows)
    ]
    return examples[:limit] if limit else examples


def load_split(task: Task, split: str, *, source: str | None = None) -> list[LabelledExample]:
    """The examples of one split, capped by ``data.limit``; an absent test split is an error here.

    A split cut from one ``data.file`` keeps the file's row ids (``<file stem>:<row>``), and the cut
    depends only on the task seed, so every run of the task sees the same three splits.
    """
    source = source or f"task {task.name}"
    path = task.data_path(split)
    if path is None:
        raise TaskSpecError(f"{source}: data.{split}: no {split} split is configured")
    limit = getattr(task.data.limit, split)
    if task.data.split is None:
        return read_split(path, task.program, field=f"data.{split}", source=source, split=split, limit=limit,
                          max_chars=task.data.max_field_chars)
    rows = read_split(path, task.program, field="data.file", source=source, max_chars=task.data.max_field_chars)
    random.Random(task.seed).shuffle(rows)
    sizes = task.data.split
    start = {"train": 0, "dev": sizes.train, "test": sizes.train + sizes.dev}[split]
    examples = rows[start:start + getattr(sizes, split)]
    return examples[:limit] if limit else examples
