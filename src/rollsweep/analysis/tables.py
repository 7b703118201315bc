"""The tables of an experiment: summary, per task, task outcomes, reward distribution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from rollsweep.analysis.configs import (
    ConfigLike,
    ConfigRollouts,
    as_configs,
    param_frame,
    with_params,
)
from rollsweep.analysis.statistics import (
    cluster_bootstrap_ci,
    clustered_sem,
    jq_mean,
    pass_at_k_column,
    task_table,
)

#: Columns of ``summarize`` after the parameter columns.
SUMMARY_COLUMNS = (
    "config",
    "n_rollouts",
    "n_tasks",
    "n_repeats",
    "mean",
    "std",
    "sem",
    "ci_low",
    "ci_high",
    "pass_at_1",
    "k",
    "pass_at_k",
    "majority_at_k",
    "n_failures",
    "failure_rate",
    "n_low_reward",
    "low_reward_rate",
    "mean_latency_s",
    "mean_input_tokens",
    "mean_output_tokens",
)
PER_TASK_COLUMNS = ("config", "task_index", "task_id", "n", "mean", "std", "min", "max", "outcome")
OUTCOMES = ("always_0", "always_1", "constant_other", "mixed")


def summarize(
    configs: Sequence[ConfigLike],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    success_threshold: float = 1.0,
    low_reward_threshold: float = 0.3,
) -> pl.DataFrame:
    """One row per configuration (``summary.csv``): parameter columns, then SUMMARY_COLUMNS.

    n_rollouts, n_tasks; n_repeats = most rollouts of a task; mean (jq's add/length), std
    (sample, ddof=1), sem (clustered by task, see ``clustered_sem``), ci_low/ci_high (percentile
    bootstrap over tasks at level 1 - alpha); pass_at_1 = mean over tasks of successes/n
    (success: reward >= success_threshold); k = fewest rollouts of a task, and when k >= 2:
    pass_at_k (Chen et al., mean over tasks) and majority_at_k (share of tasks where a strict
    majority of the repeats succeed: successes > n/2); n_failures (infrastructure) and
    failure_rate = n_failures / (n_rollouts + n_failures); n_low_reward and low_reward_rate
    (rollouts with reward < low_reward_threshold, the seed's failure rate); means of latency_s,
    input_tokens and output_tokens. Null where undefined (no rollouts, fewer than two tasks).
    Every configuration's bootstrap starts from ``seed``.
    """
    items = as_configs(configs)
    if not items:
        raise ValueError("no configurations to summarize")
    rows = [
        _summary_row(
            cfg,
            n_bootstrap=n_bootstrap,
            seed=seed,
            alpha=alpha,
            success_threshold=success_threshold,
            low_reward_threshold=low_reward_threshold,
        )
        for cfg in items
    ]
    integers = {"n_rollouts", "n_tasks", "n_repeats", "k", "n_failures", "n_low_reward"}
    schema = {name: pl.Int64 if name in integers else pl.Float64 for name in SUMMARY_COLUMNS[1:]}
    body = pl.DataFrame(rows, schema=schema)
    params = param_frame(items, SUMMARY_COLUMNS).drop("_order")
    return pl.concat([params, body], how="horizontal")


def _summary_row(
    cfg: ConfigRollouts,
    *,
    n_bootstrap: int,
    seed: int,
    alpha: float,
    success_threshold: float,
    low_reward_threshold: float,
) -> dict[str, Any]:
    frame = cfg.rollouts
    n_rollouts = frame.height
    attempted = n_rollouts + cfg.n_failures
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS[1:])
    row.update(
        n_rollouts=n_rollouts,
        n_tasks=0,
        n_failures=cfg.n_failures,
        failure_rate=cfg.n_failures / attempted if attempted else None,
        n_low_reward=0,
    )
    if n_rollouts == 0:
        return row
    tasks = task_table(frame, success_threshold=success_threshold)
    sums = tasks.get_column("sum").to_numpy()
    n = tasks.get_column("n").to_numpy()
    counts = n.astype(np.float64)
    successes = tasks.get_column("successes").to_numpy()
    k = int(n.min())
    row["ci_low"], row["ci_high"] = cluster_bootstrap_ci(
        sums, counts, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed
    )
    if k >= 2:
        row["pass_at_k"] = float(pass_at_k_column(n, successes, k).mean())
        row["majority_at_k"] = float(np.mean(2 * successes > n))
    stats = frame.select(
        pl.col("reward").std(ddof=1).alias("std"),
        (pl.col("reward") < low_reward_threshold).sum().cast(pl.Int64).alias("n_low_reward"),
        *(
            pl.col(name).mean().alias(f"mean_{name}")
            for name in ("latency_s", "input_tokens", "output_tokens")
        ),
    ).row(0, named=True)
    row.update(stats)
    row.update(
        n_tasks=tasks.height,
        n_repeats=int(n.max()),
        mean=jq_mean(frame.get_column("reward")),
        sem=clustered_sem(sums, counts),
        pass_at_1=float(np.mean(successes / n)),
        k=k,
        low_reward_rate=stats["n_low_reward"] / n_rollouts,
    )
    return row


def per_task(configs: Sequence[ConfigLike], *, success_threshold: float = 1.0) -> pl.DataFrame:
    """Per configuration and task (``per_task.csv``): parameter columns, then PER_TASK_COLUMNS.

    n, mean (μ), std (σ, sample std as statistics.stdev, null for n=1), min, max over the task's
    repeats, and outcome (see ``task_table``). Sorted by configuration, then task_index.
    """
    items = as_configs(configs)
    parts = [
        task_table(cfg.rollouts, success_threshold=success_threshold).select(PER_TASK_COLUMNS[1:])
        for cfg in items
    ]
    return with_params(items, parts, PER_TASK_COLUMNS)


def task_outcomes(per_task_frame: pl.DataFrame) -> pl.DataFrame:
    """Counts of task outcomes per configuration (``task_outcomes.csv``) from ``per_task``.

    Columns: the per_task frame's parameter columns, config, n_tasks, always_0, always_1,
    constant_other, mixed.
    """
    keys = per_task_frame.columns[: per_task_frame.columns.index("config") + 1]
    counts = [(pl.col("outcome") == name).sum().cast(pl.Int64).alias(name) for name in OUTCOMES]
    return per_task_frame.group_by(keys, maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("n_tasks"), *counts
    )


def reward_distribution(
    configs: Sequence[ConfigLike], *, baseline: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Count of each reward value per configuration (``reward_distribution.csv``).

    The seed's ``jq '.reward' | sort -n | uniq -c``: parameter columns, config, reward, count,
    sorted by configuration then reward. With ``baseline`` (e.g. the previous verifier's
    rollouts) a ``baseline_count`` column sits beside ``count``, both 0 where a value is absent.
    """
    items = as_configs(configs)
    base = None
    if baseline is not None:
        base = baseline.group_by("reward").agg(pl.len().cast(pl.Int64).alias("baseline_count"))
    parts = []
    for cfg in items:
        counts = cfg.rollouts.group_by("reward").agg(pl.len().cast(pl.Int64).alias("count"))
        if base is not None:
            counts = counts.join(base, on="reward", how="full", coalesce=True).with_columns(
                pl.col("count", "baseline_count").fill_null(0)
            )
        parts.append(counts.sort("reward"))
    reserved = ("config", "reward", "count", "baseline_count")
    return with_params(items, parts, reserved)
