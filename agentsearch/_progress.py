"""The CLI's live display: candidates done of budget, the best dev score and what that program is,
LM calls (and what is left of the budget), tokens and cost.

The bars keep to one short row each (name, bar, count, elapsed time), and the status is a line of
its own under them that wraps at the terminal's width: in one row with the bars, 80 columns cut the
count and the time off, and the cut frame stayed in a piped log."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

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


class _Bars(Progress):
    """rich's Progress with a status line under its bars, wrapped rather than cut."""

    def __init__(self, status: Callable[[], str], console: Console) -> None:
        self.status = status  # before rich's own set-up, which may render already
        super().__init__(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), console=console, transient=False)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.status(), overflow="fold")


class RichProgress(SearchCallback):
    """The live display. ``narrate``: print each phase and each candidate's score above it (the CLI);
    off where log lines say those already (``AgentSearch.compile`` on a terminal)."""

    def __init__(self, console: Console, max_candidates: int, max_lm_calls: int | None = None, *,
                 narrate: bool = True) -> None:
        self.narrate = narrate
        self.best: float | None = None
        self.best_program: str | None = None
        self.max_lm_calls = max_lm_calls
        self.usage = RunUsage(0, 0, 0.0)
        self.scored: set[int] = set()
        self.progress = _Bars(self._status, console)
        self.candidates: TaskID = self.progress.add_task("candidates", total=max_candidates)
        self.examples: TaskID = self.progress.add_task("examples", total=1)

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _status(self) -> str:
        best = "-" if self.best is None else f"{self.best:.3f}"
        if self.best is not None and self.best_program:
            best += f" [{self.best_program}]"  # a Text: brackets are shown, not read as markup
        left = "" if self.max_lm_calls is None else f", {max(0, self.max_lm_calls - self.usage.lm_calls)} left"
        cost = f" | ${self.usage.cost_usd:.4f}" if self.usage.cost_usd else ""  # none known: a local model
        return f"best dev {best} | LM calls {self.usage.lm_calls}{left} | tokens {self.usage.tokens}{cost}"

    def on_phase(self, message: str) -> None:
        if self.narrate:
            self.progress.console.log(message, markup=False)

    def on_evaluation_start(self, candidate: CandidateRecord, split: str, total: int, done: int) -> None:
        self.progress.update(self.examples, description=f"#{candidate.number} on {split}", total=total, completed=done)

    def on_example(self, outcome: ExampleOutcome, usage: RunUsage) -> None:
        self.usage = usage
        self.progress.advance(self.examples)

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
        if not self.narrate:
            return
        errors = f", {evaluation.n_errors} errors" if evaluation.n_errors else ""
        if evaluation.top_error:
            errors += f" (most common, {evaluation.top_error_count}x: {evaluation.top_error[:120]})"
        pruned = " (pruned: significantly below the best)" if evaluation.status == "pruned" else ""
        structure = parse_spec(candidate.spec).structure()
        score = "-" if evaluation.score is None else f"{evaluation.score:.3f}"
        self.progress.console.log(f"candidate #{candidate.number} [{structure}] {evaluation.split}: "
                                  f"{score} on {evaluation.n} examples{errors}{pruned}", markup=False)
