"""The CLI's live display: candidates done of budget, the best dev score and what that program is,
LM calls (and what is left of the budget), tokens and cost."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
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
from agentsearch.search_space import DesignSpec, parse_spec
from agentsearch.store import CandidateRecord, EvaluationRecord, RunUsage


def describe(spec: dict) -> str:
    """A program in a few words: its structure, each distinct prompt format, its demo count."""
    parsed = parse_spec(spec)
    if isinstance(parsed, DesignSpec):
        return parsed.structure()
    formats = ",".join(dict.fromkeys(node.format for node in parsed.predictors))
    demos = sum(len(node.demo_ids) for node in parsed.predictors)
    return f"{parsed.structure()}; {formats}; {demos} demo{'s' if demos != 1 else ''}"


class RichProgress(SearchCallback):
    def __init__(self, console: Console, max_candidates: int, max_lm_calls: int | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=False,
        )
        self.candidates: TaskID = self.progress.add_task("candidates", total=max_candidates, status="")
        self.examples: TaskID = self.progress.add_task("examples", total=1, status="")
        self.best: float | None = None
        self.best_program: str | None = None
        self.max_lm_calls = max_lm_calls
        self.usage = RunUsage(0, 0, 0.0)
        self.scored: set[int] = set()

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best:.3f}"
        if self.best is not None and self.best_program:
            best += escape(f" [{self.best_program}]")  # brackets are rich markup: shown, not parsed
        left = "" if self.max_lm_calls is None else f", {max(0, self.max_lm_calls - self.usage.lm_calls)} left"
        return (f"best dev {best} | LM calls {self.usage.lm_calls}{left} | tokens {self.usage.tokens}"
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
        if best_dev != self.best:
            self.best_program = None  # a better one found elsewhere (another worker, a resumed run)
        self.best = best_dev
        if (evaluation.split == "dev" and evaluation.status == "complete" and evaluation.score is not None
                and evaluation.score == best_dev and self.best_program is None):
            self.best_program = describe(candidate.spec)  # a tie keeps the earlier, as the choice does
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
