"""The pipeline's configuration (``config/config.yaml``): its models, loading and checks.

The pydantic models are the one description of the config: ``config/schema.json`` (what the
Snakefile's ``validate()`` reads) is generated from them by ``rollsweep.pipeline.schema``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from rollsweep.analysis.settings import RACE_METRICS, AdaptiveSettings, StatsSettings
from rollsweep.config import StrictModel, deep_merge, load_stack_config, read_yaml
from rollsweep.errors import UsageError
from rollsweep.rollouts.rows import SamplingParams, describe_validation_error

#: Grid keys other than ``responses_create_params.*`` that a configuration may vary.
AGENT_KEYS = ("agent_name",)
HEAD_URL_PATTERN = r"^https?://[^\s/]+/?$"
#: What the JSON schema says of grid keys (the validator below says why a key is refused).
GRID_KEY_PATTERN = r"^(responses_create_params\.[A-Za-z_][A-Za-z0-9_]*|agent_name)$"
Scalar = str | int | float | bool


def _grid_schema(schema: dict[str, Any]) -> None:
    """The grid's JSON schema says what its validator checks that types cannot."""
    schema["propertyNames"] = {"pattern": GRID_KEY_PATTERN}
    schema["additionalProperties"]["minItems"] = 1


class ExperimentConfig(StrictModel):
    """One experiment: a task file, an agent, fixed settings and a grid to sweep."""

    agent_name: str = Field(default="my_agent", description="agent of the stack config")
    input: str = Field(description="task file (JSONL)")
    limit: int | None = Field(default=None, ge=1, description="first tasks only (default: all)")
    num_repeats: int = Field(default=1, ge=1, description="rollouts per task")
    num_samples_in_parallel: int = Field(
        default=8, ge=1, description="rollouts in flight per collection job"
    )
    responses_create_params: SamplingParams = Field(
        default=SamplingParams(), description="fixed sampling parameters"
    )
    grid: dict[str, list[Scalar]] = Field(
        default_factory=dict,
        description="values to sweep: responses_create_params.<name> or agent_name -> list",
        json_schema_extra=_grid_schema,
    )
    repeats_per_shard: int = Field(default=1, ge=1, description="repeats per collection job")
    tasks_per_chunk: int | None = Field(
        default=None, ge=1, description="tasks per collection job (default: all)"
    )
    max_failure_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of infrastructure failures a shard tolerates"
    )
    baseline: str | None = Field(
        default=None, description="an earlier rollouts file whose rewards go beside these"
    )
    rescore_with: str | None = Field(
        default=None,
        description="a verifier (bundled name or .py file) to re-score the frozen rollouts with",
    )
    adaptive: AdaptiveSettings | None = Field(
        default=None,
        description="race the configurations in rounds of repeats, dropping those confidently "
        "worse than the leader (instead of num_repeats for every configuration)",
        # no default in the schema: Snakemake's validate() would set it to null, then fill that
        # null with the settings' defaults and fail
        json_schema_extra=lambda schema: schema.pop("default", None),
    )
    seed: int | None = Field(default=None, description="this experiment's seed (default: seed)")
    head_url: str | None = Field(
        default=None,
        pattern=HEAD_URL_PATTERN,
        description="a running head (NeMo Gym's or rollsweep's) whose agents this experiment uses",
    )
    agent_url: str | None = Field(
        default=None,
        pattern=HEAD_URL_PATTERN,
        description="or one running agent server (NeMo Gym's /run contract)",
    )

    @property
    def total_repeats(self) -> int:
        """Repeats per task of a configuration that collects everything planned."""
        return self.adaptive.total_repeats if self.adaptive else self.num_repeats

    @model_validator(mode="after")
    def _adaptive_sets_the_repeats(self) -> ExperimentConfig:
        # (1, the default, passes: a dumped config says it, and it asks for nothing else)
        if self.adaptive is not None and self.num_repeats != 1:
            raise ValueError(
                "an adaptive experiment takes its repeats from adaptive.round_repeats; "
                "remove num_repeats"
            )
        return self

    @model_validator(mode="after")
    def _one_external_target(self) -> ExperimentConfig:
        if self.head_url is not None and self.agent_url is not None:
            raise ValueError("give head_url or agent_url, not both")
        if self.agent_url is not None and "agent_name" in self.grid:
            raise ValueError("an agent_url experiment cannot sweep agent_name (use head_url)")
        return self

    @field_validator("grid")
    @classmethod
    def _grid_is_well_formed(cls, grid: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in grid.items():
            if not (key.startswith("responses_create_params.") or key in AGENT_KEYS):
                raise ValueError(
                    f"grid key {key!r} is not sweepable (use responses_create_params.<name> "
                    f"or one of {', '.join(AGENT_KEYS)})"
                )
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"grid key {key!r} repeats a value")
            if key.startswith("responses_create_params."):
                name = key.split(".", 1)[1]
                for value in values:
                    try:
                        SamplingParams.model_validate({name: value})
                    except ValidationError as error:
                        _, message = describe_validation_error(error)
                        raise ValueError(f"grid key {key!r}: {message}") from None
        return grid


class PipelineConfig(StrictModel):
    """The whole of ``config/config.yaml``."""

    stack_config: list[str] = Field(
        default_factory=lambda: ["config/servers.yaml"],
        min_length=1,
        description="stack config files (servers and agents), merged in order",
    )
    start_servers: bool = Field(
        default=True,
        description="start the stack once per run; false: each collection job starts its own",
    )
    results_dir: str = Field(default="results", description="where outputs go")
    seed: int = Field(default=0, description="run seed (each rollout's derives from it)")
    head_url: str | None = Field(
        default=None,
        pattern=HEAD_URL_PATTERN,
        description="a running head (NeMo Gym's or rollsweep's) for experiments without their own",
    )
    stats: StatsSettings = StatsSettings()
    experiments: dict[str, ExperimentConfig] = Field(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _has_experiments(self) -> PipelineConfig:
        if not self.experiments:
            raise ValueError("no experiments configured")
        return self

    @model_validator(mode="after")
    def _races_rank_by_a_mean(self) -> PipelineConfig:
        racing = [name for name, e in self.experiments.items() if e.adaptive is not None]
        if racing and self.stats.metric not in RACE_METRICS:
            raise ValueError(
                f"stats.metric {self.stats.metric!r}: adaptive experiments ({', '.join(racing)}) "
                f"rank by {' or '.join(RACE_METRICS)}"
            )
        return self


def short_name(grid_key: str) -> str:
    """``responses_create_params.temperature`` -> ``temperature``."""
    return grid_key.rsplit(".", 1)[-1]


def load_pipeline_config(data: dict[str, Any], *, source: str = "config") -> PipelineConfig:
    """Validate the Snakemake config dict; errors name the key, in one line."""
    try:
        pipeline = PipelineConfig.model_validate(data)
    except ValidationError as error:
        key, message = describe_validation_error(error)
        raise UsageError(message, path=source, key=key) from None
    stack = load_stack_config(pipeline.stack_config)
    for name, experiment in pipeline.experiments.items():
        agents = [experiment.agent_name, *experiment.grid.get("agent_name", [])]
        if served_by(pipeline, experiment):
            agents = []  # checked against the head (or agent) when its shards run
        for agent in agents:
            if agent not in stack.agents:
                known = ", ".join(sorted(stack.agents))
                raise UsageError(
                    f"unknown agent {agent!r} (known: {known})",
                    path=source,
                    key=f"experiments.{name}.agent_name",
                )
        short = [short_name(k) for k in experiment.grid]
        if len(set(short)) != len(short):
            raise UsageError(
                "two grid keys share a short name", path=source, key=f"experiments.{name}.grid"
            )
    return pipeline


def served_by(pipeline: PipelineConfig, experiment: ExperimentConfig) -> dict[str, str]:
    """Where an experiment's agents already run: ``{"agent_url": ...}`` or ``{"head_url": ...}``
    (the experiment's own, else the pipeline's head), or {} for the local stack's agents."""
    if experiment.agent_url is not None:
        return {"agent_url": experiment.agent_url}
    head = experiment.head_url or pipeline.head_url
    return {"head_url": head} if head is not None else {}


def agents_used(pipeline: PipelineConfig) -> list[str]:
    """Every local-stack agent that some experiment (or grid) of the pipeline runs."""
    names: set[str] = set()
    for experiment in pipeline.experiments.values():
        if served_by(pipeline, experiment):
            continue
        names.add(experiment.agent_name)
        names.update(str(agent) for agent in experiment.grid.get("agent_name", []))
    return sorted(names)


def load_config_files(config_files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The Snakemake config as a run with these ``--configfile``s and ``--config`` builds it
    (Snakemake's merge: nested mappings key by key, anything else replaced)."""
    merged: dict[str, Any] = {}
    for path in config_files:
        merged = deep_merge(merged, read_yaml(path))
    return deep_merge(merged, overrides)
