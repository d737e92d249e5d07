"""Writes the example's movie-review sentences (train/dev/test .jsonl) from templates, deterministically.

The example must run on a machine without the shared benchmark data, so its data is made here:
short review sentences whose sentiment a reader can tell, labelled positive or negative.
Run: python examples/sentiment/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SUBJECTS = ["the film", "this movie", "the acting", "the script", "the soundtrack", "the story", "the ending",
            "the cast", "the director's work", "the dialogue", "the pacing", "the cinematography"]
POSITIVE = ["is a delight from start to finish", "is wonderful", "made me smile the whole time",
            "is brilliant and moving", "is a joy to watch", "is funny, warm and clever", "deserves every award",
            "is beautifully done", "left me thrilled", "is a real triumph", "is charming and fresh",
            "is one of the best this year"]
NEGATIVE = ["is a complete waste of time", "is dull and lifeless", "made me want to leave early",
            "is a boring mess", "is painful to sit through", "is clumsy and stupid", "falls flat",
            "is badly done", "left me bored", "is a total disaster", "is tired and stale",
            "is one of the worst this year"]
SIZES = {"train": 60, "dev": 40, "test": 60}


def sentences(rng: random.Random) -> list[dict[str, str]]:
    rows = [{"sentence": f"{s} {p}.", "label": "positive"} for s in SUBJECTS for p in POSITIVE]
    rows += [{"sentence": f"{s} {n}.", "label": "negative"} for s in SUBJECTS for n in NEGATIVE]
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = sentences(random.Random(0))
    folder = Path(__file__).parent / "data"
    folder.mkdir(exist_ok=True)
    start = 0
    for split, size in SIZES.items():
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows[start:start + size]:
                handle.write(json.dumps(row) + "\n")
        start += size


if __name__ == "__main__":
    main()
