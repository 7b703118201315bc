"""Everything an experiment's aggregation writes, in one call, and the low-reward rows."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from rollsweep.analysis.configs import ConfigRollouts
from rollsweep.analysis.picks import best_params
from rollsweep.analysis.race import picks_after_race
from rollsweep.analysis.read import count_failures, load_rollouts
from rollsweep.analysis.settings import StatsSettings
from rollsweep.analysis.tables import per_task, reward_distribution, summarize, task_outcomes
from rollsweep.rollouts.jsonl import atomic_output
from rollsweep.rollouts.names import (
    AGGREGATE_FILES,
    BEST_PARAMS,
    LOW_REWARD_ROWS,
    PER_TASK_CSV,
    REWARD_DISTRIBUTION_CSV,
    SUMMARY_CSV,
    SUMMARY_PARQUET,
    TASK_OUTCOMES_CSV,
    failures_path_for,
)


class LowReward(NamedTuple):
    """What ``low_reward_rollouts`` wrote: rows below the threshold, out of all rows."""

    count: int
    total: int
    rate: float | None


def low_reward_rollouts(
    path: str | os.PathLike[str],
    out: Any,
    *,
    threshold: float = 0.3,
    rewards: pl.Series | None = None,
) -> LowReward:
    """Copy the rows with reward < threshold to ``out`` (the seed's ``jq 'select(.reward < 0.3)'``).

    ``out`` is a path or an open binary file (to gather several configurations in one file).
    Lines are copied verbatim, one JSON object a line, in file order. ``rewards`` is the file's
    reward column when already loaded (``load_rollouts``); else it is read. rate = count / total.
    """
    if rewards is None:
        rewards = load_rollouts(path).get_column("reward")
    selected = (rewards < threshold).to_numpy()
    total = selected.size
    count = int(selected.sum())
    if isinstance(out, str | os.PathLike):
        with atomic_output(out) as handle:
            _copy_selected(path, selected, handle)
    else:
        _copy_selected(path, selected, out)
    return LowReward(count, total, count / total if total else None)


def _copy_selected(path: str | os.PathLike[str], selected: np.ndarray, handle: Any) -> None:
    if not selected.any():
        return
    wanted = iter(np.flatnonzero(selected).tolist())
    target = next(wanted)
    row = -1
    with open(path, "rb") as source:
        for raw in source:
            if not raw.strip():
                continue
            row += 1
            if row == target:
                handle.write(raw if raw.endswith(b"\n") else raw + b"\n")
                target = next(wanted, None)
                if target is None:
                    return


#: (params, rollouts path, failures sidecar path or None) of one configuration.
ConfigFiles = tuple[Mapping[str, Any], str | os.PathLike[str], str | os.PathLike[str] | None]


def write_experiment_outputs(
    output_dir: str | os.PathLike[str],
    configs: Sequence[ConfigFiles],
    stats: StatsSettings | None = None,
    *,
    seed: int = 0,
    baseline: str | os.PathLike[str] | None = None,
    race: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every aggregate of an experiment into ``output_dir``; returns name -> path.

    ``configs``: (params, rollouts path, failures sidecar path or None) per configuration; None
    means the default sidecar ``<stem>_failures.jsonl`` if it exists. ``stats``: the statistics'
    settings (``stats.metric`` chooses the best configuration); every bootstrap starts from
    ``seed``. ``baseline``: a rollouts file whose reward counts go beside ours in
    reward_distribution.csv. ``race``: an adaptive experiment's ``race_outcome``, whose verdict
    best_params.json carries (``race.picks_after_race``). Files (AGGREGATE_FILES):
    summary.csv/.parquet, best_params.json, per_task.csv, task_outcomes.csv,
    reward_distribution.csv, failures.jsonl (the rows of every configuration with reward <
    low_reward_threshold, verbatim, in configuration order). Each file appears atomically.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = [_load_config(params, path, sidecar) for params, path, sidecar in configs]
    stats = stats or StatsSettings()
    summary = summarize(items, seed=seed, **stats.for_summary())
    if race is None:
        best = best_params(summary, items, seed=seed, **stats.for_picks())
    else:
        best = picks_after_race(summary, items, race, seed=seed, **stats.for_picks())
    tasks = per_task(items, success_threshold=stats.success_threshold)
    distribution = reward_distribution(
        items, baseline=load_rollouts(baseline) if baseline is not None else None
    )
    paths = {name: out / name for name in AGGREGATE_FILES}
    with atomic_output(paths[LOW_REWARD_ROWS]) as handle:
        for (_, rollouts_path, _), cfg in zip(configs, items, strict=True):
            rewards = cfg.rollouts.get_column("reward")
            low_reward_rollouts(
                rollouts_path, handle, threshold=stats.low_reward_threshold, rewards=rewards
            )
    tables = {SUMMARY_CSV: summary, PER_TASK_CSV: tasks}
    tables |= {TASK_OUTCOMES_CSV: task_outcomes(tasks), REWARD_DISTRIBUTION_CSV: distribution}
    _write_tables(paths, tables, best)
    return paths


def _load_config(
    params: Mapping[str, Any],
    rollouts_path: str | os.PathLike[str],
    sidecar: str | os.PathLike[str] | None,
) -> ConfigRollouts:
    frame = load_rollouts(rollouts_path)
    sidecar_path = sidecar if sidecar is not None else failures_path_for(rollouts_path)
    return ConfigRollouts(dict(params), frame, count_failures(sidecar_path, frame))


def _write_tables(
    paths: Mapping[str, Path], tables: Mapping[str, pl.DataFrame], best: dict[str, Any]
) -> None:
    """The CSV tables, the summary as parquet and best_params.json, each atomically."""
    for name, frame in tables.items():
        with atomic_output(paths[name]) as handle:
            frame.write_csv(handle)
    with atomic_output(paths[SUMMARY_PARQUET]) as handle:
        tables[SUMMARY_CSV].write_parquet(handle)
    with atomic_output(paths[BEST_PARAMS]) as handle:
        handle.write(json.dumps(best, indent=2, allow_nan=False).encode() + b"\n")
