"""The bodies of the pipeline's script rules: merging a configuration's shards, aggregating an
experiment (scripts/merge_shards.py and scripts/aggregate.py call these)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

import orjson

from rollsweep.analysis.outputs import write_experiment_outputs
from rollsweep.analysis.picks import verdict_line
from rollsweep.analysis.plots import write_experiment_plots
from rollsweep.analysis.settings import StatsSettings
from rollsweep.pipeline.config import ExperimentConfig, PipelineConfig
from rollsweep.pipeline.plan import configurations
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
    points = configurations(name, experiment)
    configs = [
        (point.params, path, None) for point, path in zip(points, rollout_paths, strict=True)
    ]
    written = write_experiment_outputs(
        output_dir, configs, stats, seed=seed, baseline=experiment.baseline
    )
    written |= write_experiment_plots(output_dir, plots_dir)
    return written


def verdict_lines(pipeline: PipelineConfig) -> list[str]:
    """``<experiment>: <verdict line>`` for every experiment whose picks are written."""
    lines = []
    for name in pipeline.experiments:
        path = Path(pipeline.results_dir) / name / BEST_PARAMS
        if path.exists():
            lines.append(f"{name}: {verdict_line(json.loads(path.read_text()))}")
    return lines
