"""The task spec: what to optimize, on which data, with which LM, under which budget.

A task is a pydantic model so that the YAML file, the Python API and the database (which keeps the
task as JSON with each run) share one definition. Unknown keys are errors: a typo in a budget must
not silently run an unbounded search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from agentsearch.exceptions import LMError, TaskSpecError, describe_validation_error
from agentsearch.search_space import ModuleSpaceConfig

SPLITS = ("train", "dev", "test")
MAX_CONCURRENCY = 256
"""More threads than this buy nothing on one process and can exhaust sockets and file descriptors."""
MAX_INSTRUCTIONS_CHARS = 20_000
"""Instructions go into every prompt: a page is plenty, a megabyte is a mistake."""
DEFAULT_MAX_FIELD_CHARS = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LMPrice(_Strict):
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


CALL_SETTINGS = ("model", "temperature", "max_tokens", "api_base", "model_type", "num_retries", "timeout")
"""LMConfig's own fields: not request ``options``."""


class LMConfig(_Strict):
    """One LM: a litellm model string plus the call settings that change its outputs.

    API keys are never part of it: litellm reads them from the environment, so nothing secret
    reaches the database or a saved program.
    """

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=0.0, ge=0.0, le=2.0,
                                      description="null: the provider's default, as a dspy.LM given none")
    max_tokens: int | None = Field(default=256, gt=0, description="null: the provider's default")
    api_base: str | None = None
    model_type: Literal["chat", "text", "responses"] = Field(default="chat", description="as dspy.LM's model_type")
    options: dict[str, JsonValue] = Field(default_factory=dict, description="other request options sent as they are "
                                                                             "(top_p, stop, seed, ...)")
    num_retries: int = Field(default=3, ge=0, le=20, description="attempts after the first for a call that fails "
                                                                   "for infrastructure reasons (429, 5xx, timeout)")
    timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds per attempt (litellm's own default is 600)")
    price: LMPrice | None = Field(default=None, description="USD per million tokens, for a model litellm cannot price")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        from agentsearch.lm._secrets import holds_secret

        for name, option in value.items():
            if holds_secret(name, option) or name in CALL_SETTINGS:
                raise ValueError(f"{name}: " + ("set it as lm." + name if name in CALL_SETTINGS else
                                 "credentials are not kept in a task; give the key through the environment "
                                 "(e.g. OPENAI_API_KEY)"))
        return value

    @field_validator("api_base")
    @classmethod
    def _no_query_secret(cls, value: str | None) -> str | None:
        from agentsearch.lm._secrets import has_query_secret

        if value is not None and has_query_secret(value):
            raise ValueError("a credential in the URL's query would be copied into every LM response (and DSPy's "
                             "cache); give the key through the environment (e.g. OPENAI_API_KEY) or as user:password@")
        return value


class ProgramConfig(_Strict):
    signature: str = Field(min_length=1, description='DSPy string signature, e.g. "sentence -> label": the task\'s '
                                                     'inputs and outputs')
    instructions: str = Field(default="", max_length=MAX_INSTRUCTIONS_CHARS)
    module: str | None = Field(default=None, description="'package.module:function' returning your own dspy.Module "
                                                         "(called with no arguments); its named predictors are "
                                                         "searched instead of a program built from the signature")
    state: dict[str, JsonValue] | None = Field(default=None, description="DSPy state (dump_state) loaded into what "
                                                                         "module builds: AgentSearch.compile's student "
                                                                         "as it was passed")

    @model_validator(mode="after")
    def _keep_state(self) -> ProgramConfig:
        if self.state is not None:
            if self.module is None:
                raise ValueError("state: only a program.module has a DSPy state")
            from agentsearch.search_space._user import keep_program_state

            keep_program_state(self.state)  # content-addressed: this process can now build ``reference``
        return self

    @property
    def reference(self) -> str | None:
        """What a program spec names: ``module``, with the digest of its ``state`` when it has one (a
        student handed over in memory is the state already)."""
        from agentsearch._references import IN_PROCESS

        if self.module is None or self.state is None or self.module.startswith(IN_PROCESS):
            return self.module
        from agentsearch.search_space._user import with_state

        return with_state(self.module, self.state)

    @field_validator("signature")
    @classmethod
    def _parses(cls, value: str) -> str:
        import dspy

        try:
            dspy.Signature(value)
        except Exception as exc:  # DSPy raises several types for a malformed string
            raise ValueError(f"not a DSPy signature ({exc})") from None
        return value

    def input_fields(self) -> list[str]:
        import dspy

        return list(dspy.Signature(self.signature).input_fields)

    def output_fields(self) -> list[str]:
        import dspy

        return list(dspy.Signature(self.signature).output_fields)


class SplitLimits(_Strict):
    train: int | None = Field(default=None, gt=0)
    dev: int | None = Field(default=None, gt=0)
    test: int | None = Field(default=None, gt=0)


class SplitSizes(_Strict):
    train: int = Field(gt=0)
    dev: int = Field(gt=0)
    test: int = Field(default=0, ge=0)


class DataConfig(_Strict):
    """Either a file per split, or one ``file`` cut into ``split`` sizes after a shuffle by the task seed.

    Paths are relative to the task file (or the working directory for a Task built in code).
    """

    train: Path | None = None
    dev: Path | None = None
    test: Path | None = None
    file: Path | None = None
    split: SplitSizes | None = None
    limit: SplitLimits = SplitLimits()
    max_field_chars: int = Field(default=DEFAULT_MAX_FIELD_CHARS, gt=0, le=10_000_000,
                                 description="longest value a data field may hold")

    @model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if self.file is not None:
            if self.split is None:
                raise ValueError("file: needs split sizes (split: {train: N, dev: N, test: N})")
            if self.train or self.dev or self.test:
                raise ValueError("file: give either one file with split sizes or train/dev/test files, not both")
        elif self.train is None or self.dev is None:
            raise ValueError("train and dev files are required (or one file with split sizes)")
        elif self.split is not None:
            raise ValueError("split: applies to a single data.file")
        return self


class AgentSearchConfig(_Strict):
    """``search.agent``: the agent level (designs written by the meta agent, run in the sandbox)."""

    optimizer: str = Field(default="meta_agent", description="meta_agent (ADAS: a new design from the archive) | "
                                                             "mcts (AFlow: a tree search over modified designs), "
                                                             "or another registered for the agent level")

    share: float = Field(default=0.5, gt=0, le=1,
                         description="with other levels: the share of max_candidates left to agent designs")
    repairs: int = Field(default=3, ge=0, le=10, description="rounds a design that will not run gets to be fixed")
    smoke_examples: int = Field(default=2, ge=1, description="train examples a new design must run on first")
    examples: int = Field(default=4, ge=0, le=32, description="train examples shown to the meta agent and "
                                                              "built into the seed designs")
    show_code: int = Field(default=3, ge=0, description="archive designs whose code the meta agent is shown")
    cpu_s: int = Field(default=10, ge=1, le=600, description="CPU seconds of a design per example")
    wall_s: float = Field(default=30, gt=0, le=3600, description="seconds of a design per example, LM time excluded")
    memory_mb: int = Field(default=512, ge=64, le=65536)
    max_lm_calls: int = Field(default=20, ge=1, le=1000, description="LM calls of a design per example")
    max_tokens: int = Field(default=1024, ge=1, le=32768, description="tokens one of a design's LM calls may ask for")
    max_prompt_chars: int = Field(default=50_000, ge=100, le=1_000_000,
                                  description="characters one of a design's LM requests may carry")
    repeats: int = Field(default=3, ge=1, le=10, description="rounds a design whose LM calls sample (temperature "
                                                             "above 0) runs on each example; its score is their mean")
    top_k: int = Field(default=3, ge=1, le=20, description="mcts: the designs it selects among (with the root) and "
                                                           "whose mean score it watches for convergence")
    patience: int = Field(default=5, ge=1, description="mcts: designs in a row without a rise of the top-k mean "
                                                       "before the search stops")

    @field_validator("optimizer")
    @classmethod
    def _agent_optimizer(cls, name: str) -> str:
        from agentsearch.optimizers._factory import optimizer_names

        if name not in optimizer_names("agent"):
            raise ValueError(f"{name!r} is no agent-level optimizer; use one of {', '.join(optimizer_names('agent'))}")
        return name


class SearchConfig(_Strict):
    levels: list[Literal["prompt", "module", "agent"]] = Field(default=["prompt"], min_length=1)
    objectives: list[Literal["score", "cost"]] = Field(
        default=["score"], description="[score] or [score, cost]: cost-aware search for the score/cost Pareto front"
    )
    pruner: Literal["wilcoxon", "none"] = Field(
        default="wilcoxon", description="stop a candidate early once it is significantly worse than the best"
    )
    minibatch: int = Field(default=10, gt=0, description="dev examples before the first pruning check; batches double")
    modules: ModuleSpaceConfig = ModuleSpaceConfig()
    agent: AgentSearchConfig = AgentSearchConfig()
    prompt_share: float = Field(
        default=0.5, ge=0, le=1,
        description="with levels [prompt, module]: the share of max_candidates searched at the prompt level first, "
                    "before module choices open around the best prompts (0: both levels from the start)",
    )
    optimizer: str = Field(
        default="tpe", description="tpe | random (Optuna samplers) | evolve (reflective evolution, GEPA-style) | "
                                   "recombine (the proposer LM recombines and evolves modules, AgentSquare-style), "
                                   "or another registered for the prompt and module levels")
    max_candidates: int = Field(default=20, gt=0, description="candidates evaluated on dev, the seed included")
    num_instructions: int = Field(default=5, gt=0, description="instruction variants, the seed's included")
    max_demos: int = Field(default=8, ge=0)
    num_demo_sets: int = Field(default=6, gt=0)
    bootstrap_examples: int = Field(default=32, ge=0, description="train examples the seed runs on to bootstrap demos")
    formats: list[Literal["chat", "json", "xml", "completion"]] = Field(default=["chat", "completion"], min_length=1)
    holdout: int = Field(default=0, ge=0, description="train examples held out of demos and proposals: before the "
                                                      "test phase the finalists are re-scored on them, with calls "
                                                      "held back from max_lm_calls (0: the best is the highest "
                                                      "dev mean)")
    finalists: int = Field(default=3, ge=2, le=20, description="with holdout: the top candidates by dev score "
                                                               "re-scored on the held-out examples")

    @property
    def runs_llm_code(self) -> bool:
        """Whether a run executes code an LM wrote (agent designs, program_of_thought nodes): it needs the sandbox."""
        return "agent" in self.levels or ("module" in self.levels and "program_of_thought" in self.modules.kinds)

    @property
    def space_levels(self) -> list[str]:
        """The levels searched through the Optuna study (the agent level has its own optimizer)."""
        return [level for level in self.levels if level != "agent"]

    @property
    def space_candidates(self) -> int:
        """Candidates (the seed included) the Optuna study gets; agent designs get the rest."""
        if "agent" not in self.levels:
            return self.max_candidates
        if not self.space_levels:
            return 1
        return max(1, self.max_candidates - round(self.max_candidates * self.agent.share))

    @model_validator(mode="after")
    def _distinct(self) -> SearchConfig:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels: each level at most once")
        if self.objectives not in (["score"], ["score", "cost"]):
            raise ValueError("objectives: use [score] or [score, cost]")
        from agentsearch.optimizers._factory import optimizer_entry, optimizer_names

        if self.optimizer not in optimizer_names("prompt"):
            raise ValueError(f"optimizer: {self.optimizer!r} is no prompt/module-level optimizer; use one of "
                             f"{', '.join(optimizer_names('prompt'))}")
        if "cost" in self.objectives and not optimizer_entry(self.optimizer).cost_aware:
            cost_aware = [name for name in optimizer_names("prompt") if optimizer_entry(name).cost_aware]
            raise ValueError(f"objectives: [score, cost] needs optimizer {' or '.join(cost_aware)}; "
                             f"{self.optimizer} maximises the score")
        return self


class BudgetConfig(_Strict):
    max_lm_calls: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)


class Task(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    program: ProgramConfig
    data: DataConfig
    metric: str = "exact_match"
    lm: LMConfig = LMConfig(model="local/smollm2-135m")
    proposer_lm: LMConfig | None = None
    search: SearchConfig = SearchConfig()
    budget: BudgetConfig = BudgetConfig()
    storage: str | None = Field(default=None, description="SQLAlchemy URL; --storage and AGENTSEARCH_STORAGE come first")
    concurrency: int = Field(default=1, gt=0, le=MAX_CONCURRENCY)
    seed: int = 0
    base_dir: Path = Field(default=Path("."), exclude=True, description="where relative data paths start")

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, url: str | None) -> str | None:
        from agentsearch.store import storage_url_problem

        problem = None if url is None else storage_url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @model_validator(mode="after")
    def _program_levels(self) -> Task:
        if self.program.module is not None and "agent" in self.search.levels:
            raise ValueError("program.module: a program you wrote is searched at the prompt and module levels (its "
                             "predictors' prompts and reasoning kinds); agent designs would replace it: drop agent "
                             "from search.levels")
        return self

    @property
    def effective_proposer_lm(self) -> LMConfig:
        return self.proposer_lm or self.lm

    def data_path(self, split: str) -> Path | None:
        """The file a split is read from (the single ``data.file`` when splits are cut from one)."""
        path = self.data.file if self.data.file is not None else getattr(self.data, split)
        if self.data.split is not None and split == "test" and not self.data.split.test:
            return None
        return None if path is None else (self.base_dir / path)

    def with_overrides(self, **changes: Any) -> Task:
        """A copy with top-level or dotted (``search.max_candidates``) fields replaced; None leaves a field.

        With nothing to replace it is this task: validating again would read every data file again."""
        if all(value is None for value in changes.values()):
            return self
        data = self.model_dump(mode="json")
        for key, value in changes.items():
            if value is None:
                continue
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        return validate_task(data, source=f"task {self.name}", base_dir=self.base_dir)


def validate_task(data: Any, *, source: str, base_dir: Path) -> Task:
    if not isinstance(data, dict):
        raise TaskSpecError(f"{source}: expected a mapping of fields at the top level")
    try:
        task = Task.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise TaskSpecError(f"{source}: {describe_validation_error(exc)}") from None
    _check_references(task, source)
    return task


def _check_references(task: Task, source: str) -> None:
    """Errors pydantic cannot see: files that do not exist, empty splits, fields missing from the data."""
    from agentsearch._references import resolve_callable
    from agentsearch.data import load_split, read_split
    from agentsearch.metrics import resolve_metric

    if task.data.file is not None:
        train_path, split = task.data_path("train"), task.data.split
        assert train_path is not None and split is not None  # data.file sets both (checked when parsed)
        rows = len(read_split(train_path, task.program, field="data.file", source=source,
                              max_chars=task.data.max_field_chars))
        wanted = split.train + split.dev + split.test
        if wanted > rows:
            raise TaskSpecError(f"{source}: data.split: {wanted} examples asked for, {task.data.file} has {rows}")
    splits = {split: load_split(task, split, source=source) for split in SPLITS if task.data_path(split) is not None}
    if task.program.module is not None:
        from agentsearch.search_space._user import load_user_program

        try:
            load_user_program(str(task.program.reference), base_dir=task.base_dir)
        except TaskSpecError as exc:
            raise TaskSpecError(f"{source}: program.module: {exc}") from None
    modules = task.search.modules
    for field, references in (("tools", modules.tools), ("reward", [modules.reward] if modules.reward else [])):
        for reference in references:
            try:
                resolve_callable(reference, base_dir=task.base_dir, what=field.rstrip("s"))
            except TaskSpecError as exc:
                raise TaskSpecError(f"{source}: search.modules.{field}: {exc}") from None
    try:
        metric = resolve_metric(task.metric, base_dir=task.base_dir)
    except TaskSpecError as exc:
        raise TaskSpecError(f"{source}: metric: {exc}") from None
    _check_metric_on_gold(task, metric, splits, source)
    from agentsearch.lm import model_problem

    for field, lm in (("lm", task.lm), ("proposer_lm", task.proposer_lm)):
        provider = None if lm is None else lm.options.get("custom_llm_provider")
        problem = None if lm is None else model_problem(lm.model, provider if isinstance(provider, str) else None)
        if problem is not None:
            raise TaskSpecError(f"{source}: {field}.model: {problem}")
        if lm is not None and lm.model.startswith("local/"):
            from agentsearch.lm._local import local_model_path

            try:
                local_model_path(lm.model.removeprefix("local/"))
            except LMError as exc:
                raise TaskSpecError(f"{source}: {field}.model: {exc}") from None
    if task.budget.max_cost_usd is not None:
        from agentsearch.lm._cost import has_price

        for field, lm in (("lm", task.lm), ("proposer_lm", task.proposer_lm)):
            if lm is not None and not has_price(lm):
                raise TaskSpecError(
                    f"{source}: budget.max_cost_usd: no price is known for {field}.model {lm.model!r}, so the budget "
                    f"could never fire; set {field}.price (input_per_million, output_per_million) or use max_lm_calls")


GOLD_CHECKS = 3
"""Dev examples the metric is tried on, with their gold answers as the prediction, before anything runs."""


def _check_metric_on_gold(task: Task, metric: Any, splits: dict[str, Any], source: str) -> None:
    """A metric that raises would stop every run: find out now, before a database or an LM is touched.

    A builtin is tried as a run uses it, closed over the task's label sets (see ``task_metric``)."""
    import math

    import dspy

    from agentsearch.metrics import BUILTIN_METRICS, task_metric

    if task.metric in BUILTIN_METRICS:
        metric = task_metric(task, splits)
    for item in splits["dev"][:GOLD_CHECKS]:
        prediction = dspy.Prediction(**dict(item.example.labels().items()))
        try:
            score = float(metric(item.example, prediction))
        except Exception as exc:
            raise TaskSpecError(f"{source}: metric: {task.metric} raised on dev example {item.id!r} with its gold answer "
                                f"as the prediction ({type(exc).__name__}: {exc})") from None
        if math.isnan(score) or not 0.0 <= score <= 1.0:
            raise TaskSpecError(f"{source}: metric: {task.metric} returned {score} for dev example {item.id!r}; "
                                f"a score must lie in [0, 1]")


MAX_TASK_FILE_BYTES = 1 << 20
"""A task file's size limit (1 MiB): settings and instructions, never data."""


def load_task(path: str | Path) -> Task:
    """Read and validate a task file; every problem raises TaskSpecError naming the file and field."""
    path = Path(path)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_TASK_FILE_BYTES:  # checked before parsing: YAML takes minutes over tens of MB
            raise TaskSpecError(f"{path}: {size / 2**20:.1f} MiB, over the {MAX_TASK_FILE_BYTES // 2**20} MiB a task "
                                f"file may hold: it holds settings; examples go in data files (data.train, ...)")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskSpecError(f"{path}: cannot read task file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise TaskSpecError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskSpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return validate_task(data, source=str(path), base_dir=path.resolve().parent)


def as_task(task: Task | str | Path) -> Task:
    """A validated task: a file is read and checked; a Task built in code gets the checks pydantic cannot make
    (files, data rows, metric), once."""
    if isinstance(task, Task):
        return validate_task(task.model_dump(mode="json"), source=f"task {task.name}", base_dir=task.base_dir)
    if not isinstance(task, str | Path):
        if type(task).__module__.split(".")[0] == "dspy" or hasattr(task, "named_predictors"):
            raise TypeError(f"optimize() takes a task (a task file or a Task), not a {type(task).__name__}: to "
                            "optimize a DSPy program, use agentsearch.AgentSearch(metric=...).compile(program, "
                            "trainset=..., valset=...)")
        raise TypeError(f"optimize() takes a task (a task file's path or a Task), not a {type(task).__name__}")
    return load_task(task)
