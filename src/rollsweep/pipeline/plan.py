"""An experiment's plan: its configurations (grid points), shards and collection commands.

The Snakefile and rules stay thin: they ask an ExperimentPlan what the targets are and how to
make each one. A configuration is one point of an experiment's grid; its directory name shows
its parameters (``temperature~0.5/top_p~0.9``, Snakemake's Paramspace style), and each
configuration's rollouts are collected as shards (repeat x task chunk) that a cluster can run in
parallel, then merged in deterministic order (rollsweep.pipeline.steps).
"""

from __future__ import annotations

import itertools
import json
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rollsweep.config import StackConfig, load_stack_config
from rollsweep.pipeline.config import (
    ExperimentConfig,
    PipelineConfig,
    Scalar,
    served_by,
    short_name,
)
from rollsweep.pipeline.identity import configuration_identity, identity_hash
from rollsweep.rollouts.names import RACE_DIR, ROLLOUTS_FILE, config_label


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
    round: int = 1  # the round of an adaptive experiment that collects it (else 1)

    @property
    def name(self) -> str:
        return f"r{self.repeat_start}-c{self.task_start}"


def shards(experiment: ExperimentConfig) -> list[Shard]:
    """Repeat shards x task chunks of one configuration (round by round when adaptive)."""
    if experiment.adaptive is None:
        rounds = [(0, experiment.num_repeats)]
    else:
        starts = experiment.adaptive.round_starts()
        rounds = list(zip(starts, experiment.adaptive.round_repeats, strict=True))
    per_shard = experiment.repeats_per_shard
    repeats = [
        (number, start, min(per_shard, first + count - start))
        for number, (first, count) in enumerate(rounds, start=1)
        for start in range(first, first + count, per_shard)
    ]
    if experiment.tasks_per_chunk is None:
        chunks: list[tuple[int, int | None]] = [(0, None)]
    else:
        total = count_tasks(experiment.input, experiment.limit)
        size = experiment.tasks_per_chunk
        chunks = [(start, min(start + size, total)) for start in range(0, total, size)]
    return [Shard(r0, rn, c0, c1, number) for number, r0, rn in repeats for c0, c1 in chunks]


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

    @cached_property
    def stack(self) -> StackConfig:
        """The stack config of the local servers (read once per plan)."""
        return load_stack_config(self.pipeline.stack_config)

    def shard_files(self, label: str, rounds: int | None = None) -> list[str]:
        """The shard files that merge into one configuration's rollouts: all of them, or those
        of an adaptive experiment's first ``rounds`` rounds."""
        root = f"{self.pipeline.results_dir}/{self.name}/{label}/shards"
        return [
            f"{root}/{name}.jsonl"
            for name, shard in self.shards.items()
            if rounds is None or shard.round <= rounds
        ]

    def race_round_file(self, number: int) -> str:
        """The outcome of an adaptive experiment's round ``number``."""
        return f"{self.pipeline.results_dir}/{self.name}/{RACE_DIR}/round-{number}.json"

    def identity(self, label: str) -> str:
        """The hash of what shapes one configuration's rollouts (rollsweep.pipeline.identity): the
        collection rule's param, so that Snakemake reruns exactly what a change touches."""
        if label not in self.identities:
            if label not in self.configurations:
                raise KeyError(f"{self.name}/{label}")
            values = self.configurations[label].values
            document = configuration_identity(self.pipeline, self.name, values)
            self.identities[label] = identity_hash(document)
        return self.identities[label]

    def threads(self, label: str) -> int:
        """The CPUs one shard of a configuration keeps busy: the collection rule's threads.

        A shard that uses running servers (the workflow's, a head, an agent URL) or a model
        served elsewhere waits on the network: 1. A shard that starts its own embedded model
        (``start_servers: false``, as on a cluster) runs its pool of llama.cpp contexts, which
        sizes itself to the threads given to the job (Snakemake's OMP_NUM_THREADS)."""
        if label not in self.configurations:
            raise KeyError(f"{self.name}/{label}")
        if self.pipeline.start_servers or served_by(self.pipeline, self.experiment):
            return 1
        values = self.configurations[label].values
        agent = self.stack.agents[str(values.get("agent_name", self.experiment.agent_name))]
        model = self.stack.model_servers[agent.model_server]
        return model.embedded.max_cpus() if model.backend == "embedded" else 1

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
