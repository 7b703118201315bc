"""The sweep pipeline's logic: experiments, grids and shards as paths; collection commands; merges.

The Snakefile and rules stay thin: they ask this module what the targets are and how to make
each one. A configuration is one point of an experiment's grid; its directory name shows its
parameters (``temperature~0.5/top_p~0.9``, Snakemake's Paramspace style), and each
configuration's rollouts are collected as shards (repeat x task chunk) that a cluster can run in
parallel, then merged in deterministic order.
"""

from __future__ import annotations

import heapq
import itertools
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from pydantic import Field, ValidationError, field_validator, model_validator

from rollsweep.config import StrictModel, load_stack_config
from rollsweep.errors import UsageError
from rollsweep.rollouts.jsonl import atomic_output, dumps
from rollsweep.rollouts.names import METRICS, ROLLOUTS_FILE, config_label
from rollsweep.rollouts.rows import SamplingParams, describe_validation_error

#: Grid keys other than ``responses_create_params.*`` that a configuration may vary.
AGENT_KEYS = ("agent_name",)
HEAD_URL_PATTERN = r"^https?://[^\s/]+/?$"
Scalar = str | int | float | bool


class StatsSettings(StrictModel):
    alpha: float = Field(default=0.05, gt=0, lt=1)
    n_bootstrap: int = Field(default=2000, ge=100)
    success_threshold: float = 1.0
    low_reward_threshold: float = 0.3
    metric: str = Field(default="mean", pattern=f"^({'|'.join(METRICS)})$")


class ExperimentConfig(StrictModel):
    """One experiment: a task file, an agent, fixed settings and a grid to sweep."""

    agent_name: str = "my_agent"
    input: str
    limit: int | None = Field(default=None, ge=1)
    num_repeats: int = Field(default=1, ge=1)
    num_samples_in_parallel: int = Field(default=8, ge=1)
    responses_create_params: SamplingParams = SamplingParams()
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)
    repeats_per_shard: int = Field(default=1, ge=1)
    tasks_per_chunk: int | None = Field(default=None, ge=1)
    max_failure_rate: float = Field(default=0.0, ge=0, le=1)
    baseline: str | None = None
    #: a verifier (bundled name or .py file) to re-score this experiment's frozen rollouts with
    rescore_with: str | None = None
    seed: int | None = None
    #: a running head server (NeMo Gym's or rollsweep's ng_run) whose agents this experiment uses
    head_url: str | None = Field(default=None, pattern=HEAD_URL_PATTERN)
    #: or one agent server (NeMo Gym's /run contract) by URL
    agent_url: str | None = Field(default=None, pattern=HEAD_URL_PATTERN)

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

    stack_config: list[str] = Field(default_factory=lambda: ["config/servers.yaml"])
    start_servers: bool = True
    results_dir: str = "results"
    seed: int = 0
    #: a running head server (NeMo Gym's or rollsweep's) for every experiment without its own
    head_url: str | None = Field(default=None, pattern=HEAD_URL_PATTERN)
    stats: StatsSettings = StatsSettings()
    experiments: dict[str, ExperimentConfig]

    @model_validator(mode="after")
    def _has_experiments(self) -> PipelineConfig:
        if not self.experiments:
            raise ValueError("no experiments configured")
        return self


@dataclass(frozen=True)
class Configuration:
    """One point of an experiment's grid."""

    experiment: str
    label: str
    values: dict[str, Scalar]  # grid key -> value

    @property
    def params(self) -> dict[str, Scalar]:
        """Short parameter names (``temperature``) -> values, for tables and plots."""
        return {short_name(key): value for key, value in self.values.items()}


def short_name(grid_key: str) -> str:
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


def configurations(name: str, experiment: ExperimentConfig) -> list[Configuration]:
    """Every grid point, in the grid's order; ``default`` when nothing is swept."""
    if not experiment.grid:
        return [Configuration(name, "default", {})]
    keys = list(experiment.grid)
    points = []
    for combo in itertools.product(*(experiment.grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        label = config_label({short_name(k): v for k, v in values.items()})
        points.append(Configuration(name, label, values))
    return points


def count_tasks(path: str | Path, limit: int | None) -> int:
    """Non-blank lines of a task file, up to ``limit`` (cheap: no JSON parsing)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                count += 1
                if limit is not None and count >= limit:
                    break
    return count


@dataclass(frozen=True)
class Shard:
    repeat_start: int
    repeat_count: int
    task_start: int
    task_stop: int | None

    @property
    def name(self) -> str:
        return f"r{self.repeat_start}-c{self.task_start}"


def shards(experiment: ExperimentConfig) -> list[Shard]:
    """Repeat shards x task chunks of one configuration."""
    repeats = [
        (start, min(experiment.repeats_per_shard, experiment.num_repeats - start))
        for start in range(0, experiment.num_repeats, experiment.repeats_per_shard)
    ]
    if experiment.tasks_per_chunk is None:
        chunks: list[tuple[int, int | None]] = [(0, None)]
    else:
        total = count_tasks(experiment.input, experiment.limit)
        size = experiment.tasks_per_chunk
        chunks = [(start, min(start + size, total)) for start in range(0, total, size)]
    return [Shard(r0, rn, c0, c1) for r0, rn in repeats for c0, c1 in chunks]


class ExperimentPlan:
    """One experiment's configurations (by label) and shards (by name), each computed once.

    Snakemake's input and params functions ask for them once per job; recomputing the grid
    (or recounting the task file) on every call made planning a big grid quadratic. Nothing is
    computed until asked, so a missing task file fails only the experiments that need it.
    """

    def __init__(self, pipeline: PipelineConfig, name: str) -> None:
        self.pipeline = pipeline
        self.name = name
        self.experiment = pipeline.experiments[name]
        self.identities: dict[str, str] = {}  # label -> identity hash, computed when first asked

    @cached_property
    def configurations(self) -> dict[str, Configuration]:
        """Label -> configuration, in the grid's order."""
        return {point.label: point for point in configurations(self.name, self.experiment)}

    @cached_property
    def shards(self) -> dict[str, Shard]:
        """Name -> shard, in collection order."""
        return {shard.name: shard for shard in shards(self.experiment)}

    @cached_property
    def rollouts(self) -> list[str]:
        """The merged rollouts file of each configuration, in the grid's order."""
        root = f"{self.pipeline.results_dir}/{self.name}"
        return [f"{root}/{label}/{ROLLOUTS_FILE}" for label in self.configurations]

    def shard_files(self, label: str) -> list[str]:
        """The shard files that merge into one configuration's rollouts."""
        root = f"{self.pipeline.results_dir}/{self.name}/{label}/shards"
        return [f"{root}/{name}.jsonl" for name in self.shards]

    def identity(self, label: str) -> str:
        """The hash of what shapes one configuration's rollouts (rollsweep.identity): the
        collection rule's param, so that Snakemake reruns exactly what a change touches."""
        from rollsweep.identity import configuration_identity, identity_hash

        if label not in self.identities:
            if label not in self.configurations:
                raise KeyError(f"{self.name}/{label}")
            values = self.configurations[label].values
            document = configuration_identity(self.pipeline, self.name, values)
            self.identities[label] = identity_hash(document)
        return self.identities[label]

    def collect_command(self, label: str, shard: str, output: str) -> str:
        """The command that collects one shard of one configuration into ``output``."""
        if label not in self.configurations:
            raise KeyError(f"{self.name}/{label}")
        return collect_command(
            self.pipeline, self.configurations[label], self.shards[shard], output
        )


def collect_command(
    pipeline: PipelineConfig, configuration: Configuration, shard: Shard, output: str
) -> str:
    """The ng_collect_rollouts command line of one shard (shown in logs, copy-pasteable)."""
    experiment = pipeline.experiments[configuration.experiment]
    settings: dict[str, Any] = {
        "agent_name": experiment.agent_name,
        "input_jsonl_fpath": experiment.input,
        "output_jsonl_fpath": output,
    }
    if experiment.limit is not None:
        settings["limit"] = experiment.limit
    settings |= {
        "num_repeats": shard.repeat_count,
        "first_repeat": shard.repeat_start,
        "task_start": shard.task_start,
    }
    if shard.task_stop is not None:
        settings["task_stop"] = shard.task_stop
    settings["num_samples_in_parallel"] = experiment.num_samples_in_parallel
    settings["seed"] = pipeline.seed if experiment.seed is None else experiment.seed
    settings["max_failure_rate"] = experiment.max_failure_rate
    for key, value in experiment.responses_create_params.model_dump(exclude_none=True).items():
        settings[f"responses_create_params.{key}"] = value
    settings |= configuration.values
    settings |= served_by(pipeline, experiment) or {
        "config_paths": "[" + ",".join(pipeline.stack_config) + "]"
    }
    settings["disable_aggregation"] = True  # the pipeline's own aggregate rules do that
    settings["progress"] = False
    args = [f"+{key}={_cli_value(value)}" for key, value in settings.items()]
    return shlex.join(["ng_collect_rollouts", *args])


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and not value.startswith("["):
        # keep strings strings when YAML would read them as something else ("0.5", "true")
        reparsed = json.dumps(value)
        return value if value.replace("_", "").replace("-", "").isalnum() else reparsed
    return str(value)


# --------------------------------------------------------------------------- merging


def _rows(path: Path) -> Iterator[tuple[tuple[int, int], bytes]]:
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                row = orjson.loads(raw)
                key = (int(row["_ng_task_index"]), int(row["_ng_rollout_index"]))
                yield key, raw if raw.endswith(b"\n") else raw + b"\n"


def merge_shards(shard_paths: list[str | Path], output: str | Path) -> int:
    """Merge shard files (each in task-major order) into one, task-major, repeats adjacent.

    Streams: a k-way merge holding one row per shard. A (task, repeat) in two shards is an
    error, since shards never overlap.
    """
    streams = [_rows(Path(path)) for path in shard_paths]
    written = 0
    previous: tuple[int, int] | None = None
    with atomic_output(output) as sink:
        for key, raw in heapq.merge(*streams, key=lambda item: item[0]):
            if key == previous:
                raise ValueError(f"rollout {key} appears in two shards")
            sink.write(raw)
            previous = key
            written += 1
    return written


def aggregate_experiment(
    name: str,
    experiment: ExperimentConfig,
    stats: StatsSettings,
    seed: int,
    rollout_paths: list[str],
    output_dir: str,
    *,
    plots_dir: str | None = None,
) -> dict[str, Path]:
    """Write the experiment's tables and plots (summary, best params, per task, ...)."""
    # matplotlib, heavy: imported only by the job that draws
    from rollsweep.analysis.outputs import write_experiment_outputs
    from rollsweep.analysis.plots import write_experiment_plots

    points = configurations(name, experiment)
    configs = [
        (point.params, path, None) for point, path in zip(points, rollout_paths, strict=True)
    ]
    written = write_experiment_outputs(
        output_dir,
        configs,
        alpha=stats.alpha,
        n_bootstrap=stats.n_bootstrap,
        seed=seed,
        success_threshold=stats.success_threshold,
        low_reward_threshold=stats.low_reward_threshold,
        metric=stats.metric,
        baseline=experiment.baseline,
    )
    written |= write_experiment_plots(output_dir, plots_dir)
    return written


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


def start_workflow_servers(pipeline: PipelineConfig) -> Any:
    """Start the servers of the pipeline's agents once, with a head server that jobs find via
    the ``ROLLSWEEP_HEAD_URL`` environment variable; returns the handle to stop them."""
    import os
    import sys

    from rollsweep.servers.stack import HEAD_URL_ENV, BackgroundStack, Stack

    if not agents_used(pipeline):
        return None  # every experiment uses servers that already run
    stack = Stack(load_stack_config(pipeline.stack_config), agents=agents_used(pipeline))
    servers = BackgroundStack(stack)
    head_url = servers.start()
    os.environ[HEAD_URL_ENV] = head_url
    print(
        f"rollsweep: servers for {', '.join(agents_used(pipeline))} at {head_url}", file=sys.stderr
    )
    return servers


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_output(path) as handle:
        handle.write(json.dumps(payload, indent=2, default=str).encode() + b"\n")


__all__ = [
    "Configuration",
    "ExperimentConfig",
    "ExperimentPlan",
    "PipelineConfig",
    "aggregate_experiment",
    "collect_command",
    "configurations",
    "dumps",
    "load_pipeline_config",
    "merge_shards",
    "shards",
]
