"""The CLI's live display: candidates done of budget, best dev score, LM calls, tokens and cost."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from agentsearch._callbacks import SearchCallback
from agentsearch.evaluators import ExampleOutcome
from agentsearch.search_space import parse_spec
from agentsearch.store import CandidateRecord, EvaluationRecord, RunUsage


class RichProgress(SearchCallback):
    def __init__(self, console: Console, max_candidates: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=False,
        )
        self.candidates: TaskID = self.progress.add_task("candidates", total=max_candidates, status="")
        self.examples: TaskID = self.progress.add_task("examples", total=1, status="")
        self.best: float | None = None
        self.usage = RunUsage(0, 0, 0.0)
        self.scored: set[int] = set()

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best:.3f}"
        return (f"best dev {best} | LM calls {self.usage.lm_calls} | tokens {self.usage.tokens}"
                f" | ${self.usage.cost_usd:.4f}")

    def on_phase(self, message: str) -> None:
        self.progress.console.log(message, markup=False)

    def on_evaluation_start(self, candidate: CandidateRecord, split: str, total: int, done: int) -> None:
        self.progress.update(self.examples, description=f"#{candidate.number} on {split}", total=total, completed=done)

    def on_example(self, outcome: ExampleOutcome, usage: RunUsage) -> None:
        self.usage = usage
        self.progress.advance(self.examples)
        self.progress.update(self.candidates, status=self._status())

    def on_evaluation_end(self, candidate: CandidateRecord, evaluation: EvaluationRecord, best_dev: float | None) -> None:
        self.best = best_dev
        if evaluation.split == "dev" and candidate.id not in self.scored:
            self.scored.add(candidate.id)
            self.progress.advance(self.candidates)
        self.progress.update(self.candidates, status=self._status())
        errors = f", {evaluation.n_errors} errors" if evaluation.n_errors else ""
        if evaluation.top_error:
            errors += f" (most common, {evaluation.top_error_count}x: {evaluation.top_error[:120]})"
        pruned = " (pruned: significantly below the best)" if evaluation.status == "pruned" else ""
        structure = parse_spec(candidate.spec).structure()
        score = "-" if evaluation.score is None else f"{evaluation.score:.3f}"
        self.progress.console.log(f"candidate #{candidate.number} [{structure}] {evaluation.split}: "
                                  f"{score} on {evaluation.n} examples{errors}{pruned}", markup=False)
