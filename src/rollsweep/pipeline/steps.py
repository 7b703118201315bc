"""The bodies of the pipeline's script rules: merging a configuration's shards, aggregating an
experiment (scripts/merge_shards.py and scripts/aggregate.py call these)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from rollsweep.analysis.outputs import write_experiment_outputs
from rollsweep.analysis.picks import verdict_line
from rollsweep.analysis.plots import plot_rollouts_per_round, write_experiment_plots
from rollsweep.analysis.race import decide_round, race_outcome, rollouts_per_round
from rollsweep.analysis.read import load_rollouts
from rollsweep.analysis.settings import StatsSettings
from rollsweep.pipeline.config import ExperimentConfig, PipelineConfig
from rollsweep.pipeline.plan import configurations, count_tasks
from rollsweep.rollouts.jsonl import atomic_output
from rollsweep.rollouts.names import BEST_PARAMS


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


def race_round(
    number: int,
    shard_files: Mapping[str, list[str]],
    previous: str | None,
    experiment: ExperimentConfig,
    stats: StatsSettings,
    seed: int,
    output: str,
) -> dict[str, Any]:
    """Decide round ``number`` of an adaptive experiment and write its outcome to ``output``.

    ``shard_files``: label -> the shard files of rounds 1..number of each configuration in
    the race; ``previous``: the outcome file of the round before (None for round 1).
    """
    if experiment.adaptive is None:
        raise ValueError("race_round is for adaptive experiments")
    rollouts = {
        label: pl.concat([load_rollouts(path) for path in paths])
        for label, paths in shard_files.items()
    }
    before = json.loads(Path(previous).read_text()) if previous else None
    outcome = decide_round(
        number,
        rollouts,
        settings=experiment.adaptive,
        alpha=stats.alpha,
        n_configs=len(configurations("", experiment)),
        n_tasks=count_tasks(experiment.input, experiment.limit),
        previous=before,
        metric=stats.metric,
        success_threshold=stats.success_threshold,
        seed=seed,
        n_resamples=stats.n_bootstrap,
    )
    with atomic_output(output) as sink:
        sink.write(json.dumps(outcome, indent=2, allow_nan=False).encode() + b"\n")
    return outcome


def aggregate_experiment(
    name: str,
    experiment: ExperimentConfig,
    stats: StatsSettings,
    seed: int,
    rollout_paths: list[str],
    output_dir: str,
    *,
    plots_dir: str | None = None,
    race_paths: list[str] | None = None,
) -> dict[str, Path]:
    """Write the experiment's tables and plots (summary, best params, per task, ...); an
    adaptive experiment's also from the outcomes of its rounds (``race_paths``, in order)."""
    points = configurations(name, experiment)
    configs = [
        (point.params, path, None) for point, path in zip(points, rollout_paths, strict=True)
    ]
    race = _race(experiment, len(points), race_paths)[1] if race_paths else None
    written = write_experiment_outputs(
        output_dir, configs, stats, seed=seed, baseline=experiment.baseline, race=race
    )
    written |= write_experiment_plots(output_dir, plots_dir)
    return written


def _race(
    experiment: ExperimentConfig, n_configs: int, race_paths: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The outcomes of an adaptive experiment's rounds, and what the race says."""
    rounds = [json.loads(Path(path).read_text()) for path in race_paths]
    outcome = race_outcome(
        rounds,
        n_configs=n_configs,
        n_tasks=count_tasks(experiment.input, experiment.limit),
        total_repeats=experiment.total_repeats,
    )
    return rounds, outcome


def plot_race(name: str, experiment: ExperimentConfig, race_paths: list[str], output: str) -> Path:
    """The plot of where an adaptive experiment spent its rollouts, round by round."""
    n_configs = len(configurations(name, experiment))
    rounds, race = _race(experiment, n_configs, race_paths)
    return plot_rollouts_per_round(
        rollouts_per_round(rounds),
        output,
        winner=race["winner"] if race["verdict"] == "best" else None,
        uniform_per_config=race["uniform_rollouts"] // n_configs,
    )


def verdict_lines(pipeline: PipelineConfig) -> list[str]:
    """``<experiment>: <verdict line>`` for every experiment whose picks are written."""
    lines = []
    for name in pipeline.experiments:
        path = Path(pipeline.results_dir) / name / BEST_PARAMS
        if path.exists():
            lines.append(f"{name}: {verdict_line(json.loads(path.read_text()))}")
    return lines
