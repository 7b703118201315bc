"""The best configuration of an experiment, and whether the data separate it from the next."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from rollsweep.analysis.configs import ConfigLike, as_configs
from rollsweep.analysis.power import (
    VarianceParts,
    detectable_difference,
    holm_adjusted,
    sample_size_advice,
    variance_parts,
)
from rollsweep.analysis.statistics import (
    cluster_bootstrap_ci,
    pass_at_k_column,
    sign_flip_test,
    task_table,
)
from rollsweep.rollouts.names import METRICS


def task_values(
    rollouts: pl.DataFrame, metric: str, success_threshold: float, k: int | None = None
) -> pl.DataFrame:
    """Per task: task_index and ``value``, the task's own value of ``metric`` (its mean
    reward, success share, pass@k estimate or majority indicator)."""
    tasks = task_table(rollouts, success_threshold=success_threshold)
    n = tasks.get_column("n").to_numpy()
    c = tasks.get_column("successes").to_numpy()
    if metric == "mean":
        value = tasks.get_column("mean").to_numpy()
    elif metric == "pass_at_1":
        value = c / n
    elif metric == "pass_at_k":
        value = pass_at_k_column(n, c, int(k or 1))
    else:
        value = (2 * c > n).astype(np.float64)
    return pl.DataFrame({"task_index": tasks.get_column("task_index"), "value": value})


def _pick(summary_row: dict[str, Any], param_names: Sequence[str], metric: str) -> dict[str, Any]:
    params = {name: summary_row[name] for name in param_names if summary_row[name] is not None}
    keys = (
        "mean",
        "ci_low",
        "ci_high",
        "sem",
        "n_rollouts",
        "n_tasks",
        "n_repeats",
        "failure_rate",
    )
    picked = {
        "config": summary_row["config"],
        "params": params,
        **{key: summary_row[key] for key in keys},
    }
    if metric != "mean":
        picked[metric] = summary_row[metric]
    return picked


def best_params(
    summary: pl.DataFrame,
    configs: Sequence[ConfigLike],
    *,
    metric: str = "mean",
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int = 0,
    success_threshold: float = 1.0,
    power: float = 0.8,
    min_effect: float = 0.05,
) -> dict[str, Any]:
    """The best configuration by ``metric`` and whether the data separate it from the rest.

    ``summary`` is ``summarize(configs)``, rows in the same order as ``configs``. Returns::

        {"metric", "alpha", "n_configs",
         "verdict": "best" | "tie" | "only" | "none",
         "best":      {"config", "params", "mean", "ci_low", "ci_high", "sem", "n_rollouts",
                       "n_tasks", "n_repeats", "failure_rate"[, metric]} | None,
         "runner_up": same keys | None,
         "difference": {"estimate", "ci_low", "ci_high", "p_value", "n_paired_tasks",
                        "test"} | None,
         "comparisons": [{"config", "estimate", "p_value", "p_holm", "distinguishable",
                          "detectable_difference", "repeats_needed", "tasks_needed"}, ...],
         "indistinguishable_from_best": [config, ...],
         "power": {"power", "min_effect", "detectable_difference", "repeats_needed",
                   "tasks_needed", "advice"} | None}

    The difference is paired on task_index over the tasks both ran: per task, the winner's
    value minus the runner-up's (per-task mean reward for metric "mean"), averaged over tasks;
    its CI is a percentile bootstrap over tasks and its p-value a two-sided paired sign-flip
    test (``sign_flip_test``). Every other configuration is compared with the winner the same
    way; Holm's adjustment of those p-values controls the family-wise error, and the
    configurations not separated from the winner at ``alpha`` are ``indistinguishable_from_best``.
    verdict "best" when that set is empty, else "tie"; "only" with a single configuration with
    rollouts, "none" with no rollouts at all.

    ``power`` says how much data the comparison with the runner-up needs (``analysis.power``):
    the smallest difference it detects with probability ``power``, and the repeats (same tasks)
    or tasks that would detect ``min_effect``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    items = as_configs(configs)
    if summary.height != len(items):
        raise ValueError(f"summary has {summary.height} rows for {len(items)} configurations")
    param_names = summary.columns[: summary.columns.index("config")]
    ranked = (
        summary.with_row_index("_position")
        .filter(pl.col(metric).is_not_null())
        .sort(metric, descending=True, maintain_order=True)
    )
    result: dict[str, Any] = {
        "metric": metric,
        "alpha": alpha,
        "n_configs": summary.height,
        "verdict": "none",
        "best": None,
        "runner_up": None,
        "difference": None,
        "comparisons": [],
        "indistinguishable_from_best": [],
        "power": None,
    }
    if ranked.height == 0:
        return result
    rows = ranked.to_dicts()
    result["best"] = _pick(rows[0], param_names, metric)
    if ranked.height == 1:
        result["verdict"] = "only"
        return result
    result["runner_up"] = _pick(rows[1], param_names, metric)
    per_task = [
        task_values(items[row["_position"]].rollouts, metric, success_threshold, row["k"])
        for row in rows
    ]
    result["difference"] = paired_difference(
        _per_task_differences(per_task[0], per_task[1]),
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    settings = _Settings(
        len(rows) - 1, metric, alpha, n_bootstrap, seed, success_threshold, power, min_effect
    )
    winner = items[rows[0]["_position"]].rollouts
    comparisons = [
        _compare(winner, per_task[0], row, items[row["_position"]].rollouts, values, settings)
        for row, values in zip(rows[1:], per_task[1:], strict=True)
    ]
    result.update(_decide(comparisons, alpha=alpha, power=power, min_effect=min_effect))
    return result


def _decide(
    comparisons: list[dict[str, Any]], *, alpha: float, power: float, min_effect: float
) -> dict[str, Any]:
    """Holm's adjustment over the comparisons with the winner, the set the data do not separate
    from it, the verdict, and the power of the comparison with the runner-up."""
    adjusted = holm_adjusted([1.0 if c["p_value"] is None else c["p_value"] for c in comparisons])
    for comparison, p_holm in zip(comparisons, adjusted, strict=True):
        comparison["p_holm"] = p_holm
        comparison["distinguishable"] = bool(p_holm < alpha and (comparison["estimate"] or 0) > 0)
    indistinguishable = [c["config"] for c in comparisons if not c["distinguishable"]]
    shown = ("detectable_difference", "repeats_needed", "tasks_needed", "advice")
    return {
        "comparisons": comparisons,
        "indistinguishable_from_best": indistinguishable,
        "verdict": "tie" if indistinguishable else "best",
        "power": {
            "power": power,
            "min_effect": min_effect,
            **{key: comparisons[0][key] for key in shown},
        },
    }


class _Settings(NamedTuple):
    comparisons: int
    metric: str
    alpha: float
    n_bootstrap: int
    seed: int
    success_threshold: float
    power: float
    min_effect: float


def _compare(
    winner: pl.DataFrame,
    winner_values: pl.DataFrame,
    row: dict[str, Any],
    rollouts: pl.DataFrame,
    values: pl.DataFrame,
    settings: _Settings,
) -> dict[str, Any]:
    """The winner against one other configuration: the mean paired difference, its sign-flip
    p-value, and what the comparison can detect (before Holm's adjustment over all of them)."""
    differences = _per_task_differences(winner_values, values)
    p_value = None
    if differences.size:
        p_value = sign_flip_test(differences, n_resamples=settings.n_bootstrap, seed=settings.seed)
    parts = _variance_parts(
        winner, rollouts, settings.metric, settings.success_threshold, differences
    )
    # `best` needs every comparison to pass Holm's test, whose first step is at
    # alpha / comparisons: the advice aims at that level (Bonferroni), not at alpha
    level = {"alpha": settings.alpha / settings.comparisons, "power": settings.power}
    advice = sample_size_advice(parts, min_effect=settings.min_effect, **level)
    return {
        "config": row["config"],
        "estimate": float(differences.mean()) if differences.size else None,
        "p_value": p_value,
        "detectable_difference": detectable_difference(parts, **level),
        "repeats_needed": advice.repeats_needed,
        "tasks_needed": advice.tasks_needed,
        "advice": advice.sentence(parts.repeats),
    }


def _variance_parts(
    first: pl.DataFrame,
    second: pl.DataFrame,
    metric: str,
    success_threshold: float,
    per_task_differences: np.ndarray,
) -> VarianceParts:
    """The variance split of the paired comparison. For metric mean and pass_at_1 a repeat is
    one observation, paired on (task, repeat index); pass_at_k and majority_at_k are per-task
    quantities, so only the tasks' variance is known."""
    if metric in ("mean", "pass_at_1"):
        pairs = first.join(second, on=["task_index", "rollout_index"], suffix="_second")
        value, other = pl.col("reward"), pl.col("reward_second")
        if metric == "pass_at_1":
            value, other = value >= success_threshold, other >= success_threshold
        frame = pairs.select(
            "task_index", (value.cast(pl.Float64) - other.cast(pl.Float64)).alias("d")
        )
        if frame.height:
            return variance_parts(
                frame.get_column("task_index").to_numpy(), frame.get_column("d").to_numpy()
            )
    return variance_parts(np.arange(per_task_differences.size), per_task_differences)


def _per_task_differences(first: pl.DataFrame, second: pl.DataFrame) -> np.ndarray:
    """first's value minus second's, per task both ran (paired on task_index)."""
    paired = first.join(second, on="task_index", how="inner", suffix="_second")
    return (paired.get_column("value") - paired.get_column("value_second")).to_numpy()


def paired_difference(
    differences: np.ndarray, *, alpha: float, n_bootstrap: int, seed: int
) -> dict[str, Any]:
    """The mean of per-task differences, its bootstrap CI over tasks and its sign-flip p-value
    (None for each when no task is paired)."""
    difference: dict[str, Any] = {
        "estimate": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "n_paired_tasks": int(differences.size),
        "test": "two-sided paired sign-flip permutation test over tasks",
    }
    if differences.size:
        low, high = cluster_bootstrap_ci(
            differences, np.ones_like(differences), n_bootstrap=n_bootstrap, alpha=alpha, seed=seed
        )
        difference.update(
            estimate=float(differences.mean()),
            ci_low=low,
            ci_high=high,
            p_value=sign_flip_test(differences, n_resamples=n_bootstrap, seed=seed),
        )
    return difference


def verdict_line(picks: dict[str, Any]) -> str:
    """One line for the end of a run: the verdict, the pick against the runner-up, and for a
    tie what more data would settle it (``tie: temperature~0.5 0.31 vs temperature~0.1 0.28 —
    about 4x more repeats would detect 0.05``)."""
    best, runner_up = picks.get("best"), picks.get("runner_up")
    if best is None:
        return "none: no rollouts"
    metric = picks["metric"]
    shown = f"{best['config']} {best.get(metric, best['mean']):.3g}"
    race = picks.get("race")
    if race is not None:
        spent = (
            f"round {race['rounds']} of {race['rounds_planned']}, {race['spent']:,} rollouts "
            f"(the uniform grid: {race['uniform_rollouts']:,})"
        )
        if picks["verdict"] == "best":
            return f"best: {shown} — the race decided in {spent}"
        if runner_up is not None:
            shown += f" vs {runner_up['config']} {runner_up.get(metric, runner_up['mean']):.3g}"
        return f"tie: {shown} — the race stopped ({race['reason']}) in {spent}"
    if runner_up is None:
        return f"only: {shown}"
    shown += f" vs {runner_up['config']} {runner_up.get(metric, runner_up['mean']):.3g}"
    if picks["verdict"] == "best":
        p_values = [c["p_holm"] for c in picks["comparisons"]]
        return f"best: {shown} (largest Holm-adjusted p {max(p_values):.2g})"
    others = len(picks["indistinguishable_from_best"])
    tied = f", {others} configurations indistinguishable from it" if others > 1 else ""
    return f"tie: {shown}{tied} — {picks['power']['advice']}"
