"""PNG plots of an experiment's aggregates (matplotlib's Agg canvas, no pyplot global state).

Inputs are the frames of ``rollsweep.analysis.tables`` (or the files aggregation writes):
parameter columns come first, up to the ``config`` column.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from rollsweep.rollouts.jsonl import atomic_output
from rollsweep.rollouts.names import (
    BEST_PARAMS,
    PER_TASK_CSV,
    PER_TASK_VARIANCE_PNG,
    REWARD_DISTRIBUTION_CSV,
    REWARD_DISTRIBUTION_PNG,
    REWARD_VS_PARAMS_PNG,
    SUMMARY_PARQUET,
)

#: More distinct reward values than this and the distribution is drawn as a histogram.
MAX_BAR_VALUES = 30


def param_columns(frame: pl.DataFrame) -> list[str]:
    """The parameter columns of an aggregate frame: those before ``config``."""
    return frame.columns[: frame.columns.index("config")]


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    with atomic_output(path) as handle:
        figure.savefig(handle, format="png", dpi=110)
    return Path(path)


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_reward_vs_params(
    summary: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    params: Sequence[str] | None = None,
    best: str | None = None,
    indistinguishable: Sequence[str] = (),
) -> Path:
    """Mean reward against each swept parameter, with the summary's CI as error bars.

    One panel per parameter that takes several values; within a panel, one line per
    combination of the other swept parameters. Without a swept parameter, one point per
    configuration. The ``best`` configuration is starred and those ``indistinguishable`` from
    it (``best_params``) are ringed.
    """
    names = list(params) if params is not None else param_columns(summary)
    swept = [name for name in names if summary.get_column(name).drop_nulls().n_unique() > 1]
    panels = swept or ["config"]
    figure = Figure(figsize=(5.5 * len(panels), 4.2))
    for position, name in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), position)
        others = [other for other in swept if other != name]
        numeric = summary.schema[name].is_numeric()
        categories = summary.get_column(name).unique(maintain_order=True).to_list()
        groups = summary.group_by(others, maintain_order=True) if others else [((), summary)]
        for key, group in groups:
            group = group.drop_nulls(name).sort(name) if numeric else group
            mean = group.get_column("mean").to_numpy().astype(float)
            low = np.nan_to_num(mean - group.get_column("ci_low").to_numpy().astype(float))
            high = np.nan_to_num(group.get_column("ci_high").to_numpy().astype(float) - mean)
            values = group.get_column(name).to_list()
            x = values if numeric else [categories.index(value) for value in values]
            label = ", ".join(f"{o}={_fmt(v)}" for o, v in zip(others, key, strict=True)) or None
            axes.errorbar(x, mean, yerr=[low, high], marker="o", capsize=4, label=label)
            configs = group.get_column("config").to_list()
            _mark(axes, x, mean, configs, best, set(indistinguishable))
        if not numeric:
            axes.set_xticks(range(len(categories)), [_fmt(c) for c in categories], rotation=30)
        axes.set_xlabel(name)
        axes.set_ylabel("mean reward (bootstrap CI over tasks)")
        axes.set_title(f"Reward vs {name}" if swept else "Mean reward per configuration")
        axes.grid(alpha=0.3)
        if others or best is not None:
            axes.legend(fontsize="small", title=None)
    return _save(figure, path)


def _mark(
    axes: Axes,
    x: Sequence[float],
    mean: np.ndarray,
    configs: Sequence[str],
    best: str | None,
    indistinguishable: set[str],
) -> None:
    """Star the best configuration and ring those the data do not separate from it."""
    for kind, chosen in (("best", {best}), ("indistinguishable", indistinguishable)):
        at = [i for i, config in enumerate(configs) if config in chosen]
        if not at:
            continue
        style = (
            {"marker": "*", "s": 220, "color": "gold", "edgecolors": "black", "zorder": 5}
            if kind == "best"
            else {"marker": "o", "s": 180, "facecolors": "none", "edgecolors": "red", "zorder": 4}
        )
        label = "best" if kind == "best" else "indistinguishable from best (Holm)"
        labels = axes.get_legend_handles_labels()[1]
        axes.scatter(
            [x[i] for i in at], mean[at], label=None if label in labels else label, **style
        )


def plot_reward_distribution(distribution: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Count of each reward value per configuration (grouped bars), beside the baseline if any.

    With more than MAX_BAR_VALUES distinct rewards, a step histogram per configuration.
    """
    configs = distribution.get_column("config").unique(maintain_order=True).to_list()
    values = sorted(distribution.get_column("reward").unique().drop_nulls().to_list())
    has_baseline = "baseline_count" in distribution.columns
    figure = Figure(figsize=(max(6.0, 0.5 * len(values) * (len(configs) + has_baseline) + 2), 4.2))
    axes = figure.add_subplot(1, 1, 1)
    series = [
        (
            config,
            distribution.filter(pl.col("config") == config).select("reward", "count"),
        )
        for config in configs
    ]
    if has_baseline:
        first = distribution.filter(pl.col("config") == configs[0])
        series.append(("baseline", first.select("reward", pl.col("baseline_count").alias("count"))))
    if len(values) > MAX_BAR_VALUES:
        bins = np.histogram_bin_edges(values, bins=MAX_BAR_VALUES)
        for label, frame in series:
            axes.hist(
                frame.get_column("reward").to_numpy(),
                bins=bins,
                weights=frame.get_column("count").to_numpy(),
                histtype="step",
                linewidth=1.5,
                label=label,
            )
        axes.set_xlabel("reward")
    else:
        width = 0.8 / len(series)
        for number, (label, frame) in enumerate(series):
            counts = dict(zip(frame.get_column("reward"), frame.get_column("count"), strict=True))
            x = np.arange(len(values)) + (number - (len(series) - 1) / 2) * width
            heights = [counts.get(value, 0) for value in values]
            style = (
                {"hatch": "//", "color": "0.75", "edgecolor": "0.3"} if label == "baseline" else {}
            )
            bars = axes.bar(x, heights, width=width, label=label, **style)
            axes.bar_label(bars, fontsize="x-small")
        axes.set_xticks(range(len(values)), [_fmt(value) for value in values])
        axes.set_xlabel("reward value")
    axes.set_ylabel("rollouts")
    axes.set_title("Reward distribution per configuration")
    axes.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize="small")
    return _save(figure, path)


def plot_per_task_variance(
    per_task: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    max_panels: int = 9,
    max_tasks: int = 1000,
) -> Path:
    """Per task μ ± σ over its repeats, tasks sorted by μ, one panel per configuration.

    At most ``max_panels`` configurations and ``max_tasks`` tasks a panel (evenly spaced ranks).
    """
    configs = per_task.get_column("config").unique(maintain_order=True).to_list()
    shown = configs[:max_panels]
    columns = min(3, max(1, len(shown)))
    rows = math.ceil(max(1, len(shown)) / columns)
    figure = Figure(figsize=(5.0 * columns, 3.6 * rows))
    for position, config in enumerate(shown, start=1):
        axes = figure.add_subplot(rows, columns, position)
        tasks = per_task.filter(pl.col("config") == config).sort("mean", "task_index")
        total = tasks.height
        if total > max_tasks:
            tasks = tasks[np.linspace(0, total - 1, max_tasks).round().astype(int).tolist()]
        mean = tasks.get_column("mean").to_numpy().astype(float)
        sigma = np.nan_to_num(tasks.get_column("std").to_numpy().astype(float))
        rank = np.linspace(0, total - 1, tasks.height) if total else np.array([])
        axes.fill_between(rank, mean - sigma, mean + sigma, alpha=0.25, label="μ ± σ")
        axes.plot(rank, mean, marker="o" if tasks.height <= 60 else None, markersize=3, label="μ")
        mixed = per_task.filter(
            (pl.col("config") == config) & (pl.col("outcome") == "mixed")
        ).height
        axes.set_title(f"{config}\n{total} tasks, {mixed} mixed", fontsize="medium")
        axes.set_xlabel("task (sorted by mean reward)")
        axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes.set_ylabel("reward")
        axes.grid(alpha=0.3)
        if position == 1:
            axes.legend(fontsize="small", loc="upper left")
    title = "Per-task reward over repeats"
    if len(configs) > len(shown):
        title += f" (first {len(shown)} of {len(configs)} configurations)"
    figure.suptitle(title)
    return _save(figure, path)


def write_experiment_plots(
    output_dir: str | os.PathLike[str], plots_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path]:
    """Plots from the files of ``analysis.outputs.write_experiment_outputs`` in ``output_dir``.

    Writes reward_vs_params.png, reward_distribution.png and per_task_variance.png into
    ``plots_dir`` (default: ``output_dir``); returns name -> path.
    """
    source = Path(output_dir)
    target = Path(plots_dir) if plots_dir is not None else source
    summary = pl.read_parquet(source / SUMMARY_PARQUET)
    distribution = pl.read_csv(source / REWARD_DISTRIBUTION_CSV)
    per_task = pl.read_csv(source / PER_TASK_CSV, schema_overrides={"task_id": pl.String})
    picks = json.loads((source / BEST_PARAMS).read_text())
    return {
        REWARD_VS_PARAMS_PNG: plot_reward_vs_params(
            summary,
            target / REWARD_VS_PARAMS_PNG,
            best=(picks.get("best") or {}).get("config"),
            indistinguishable=picks.get("indistinguishable_from_best", []),
        ),
        REWARD_DISTRIBUTION_PNG: plot_reward_distribution(
            distribution, target / REWARD_DISTRIBUTION_PNG
        ),
        PER_TASK_VARIANCE_PNG: plot_per_task_variance(per_task, target / PER_TASK_VARIANCE_PNG),
    }


def plot_rollouts_per_round(
    per_round: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    winner: str | None = None,
    uniform_per_config: int | None = None,
) -> Path:
    """Where an adaptive sweep spent its rollouts: one bar per configuration, stacked by round
    (``race.rollouts_per_round``), the winner's label in bold and, dashed, what each
    configuration of the uniform grid would have collected."""
    configs = list(dict.fromkeys(per_round.get_column("config").to_list()))
    rounds = sorted(set(per_round.get_column("round").to_list()))
    figure = Figure(figsize=(max(5.0, 0.9 * len(configs) + 2), 3.8))
    axes = figure.add_subplot()
    bottom = np.zeros(len(configs))
    for number in rounds:
        share = per_round.filter(pl.col("round") == number)
        counts = dict(zip(share.get_column("config"), share.get_column("rollouts"), strict=True))
        heights = np.array([counts.get(label, 0) for label in configs], dtype=float)
        axes.bar(configs, heights, bottom=bottom, label=f"round {number}")
        bottom += heights
    if uniform_per_config is not None:
        axes.axhline(uniform_per_config, linestyle="--", color="grey", label="uniform grid")
    for tick in axes.get_xticklabels():
        if tick.get_text() == winner:
            tick.set_fontweight("bold")
    axes.set_ylabel("rollouts")
    axes.set_title("rollouts per configuration and round")
    axes.tick_params(axis="x", labelrotation=30)
    axes.legend(fontsize="small")
    return _save(figure, path)
