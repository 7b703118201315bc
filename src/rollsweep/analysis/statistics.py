"""The statistics of aggregation, over numpy arrays and polars frames.

* ``jq_mean``: the plain mean, summed left to right as ``jq -s 'map(.reward) | add/length'``
  does, so the two agree to the last bit.
* Uncertainty is clustered by task: repeats of one task are correlated, so the standard error
  and the bootstrap resample *tasks* (a task's repeats move together), never single rows.
* ``pass_at_k`` is the unbiased estimator of Chen et al. (2021).
* ``sign_flip_test``: the two-sided paired sign-flip (permutation) test over tasks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

#: Largest tasks x resamples matrix built at once by the bootstrap (elements).
_CHUNK_ELEMENTS = 4_000_000
#: Up to this many tasks with a non-zero difference, the sign-flip test is exact.
_EXACT_SIGN_FLIP_MAX = 16


def jq_mean(rewards: pl.Series | np.ndarray) -> float | None:
    """``add/length`` as jq computes it: a left-to-right float64 sum, divided by the count."""
    values = (
        rewards.to_numpy()
        if isinstance(rewards, pl.Series)
        else np.asarray(rewards, dtype=np.float64)
    )
    if values.size == 0:
        return None
    return float(np.cumsum(values, dtype=np.float64)[-1]) / values.size


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k for one task: 1 - C(n-c, k) / C(n, k), with n >= k."""
    if k > n:
        raise ValueError(f"pass@k needs n >= k, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_column(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """pass@k per task, computed once per distinct (n, c) pair."""
    pairs, inverse = np.unique(np.column_stack([n, c]), axis=0, return_inverse=True)
    values = np.array([pass_at_k(int(a), int(b), k) for a, b in pairs], dtype=np.float64)
    return values[np.asarray(inverse).reshape(-1)]


def task_table(rollouts: pl.DataFrame, *, success_threshold: float = 1.0) -> pl.DataFrame:
    """Per task: task_index, task_id, n, sum, mean, std (sample, null for n=1), min, max,
    successes (reward >= success_threshold) and outcome, sorted by task_index.

    outcome: ``always_0`` (every repeat has reward 0), ``always_1`` (every repeat 1),
    ``constant_other`` (every repeat the same other value, e.g. 0.5), ``mixed`` (rewards differ).
    """
    reward = pl.col("reward")
    table = (
        rollouts.group_by("task_index")
        .agg(
            pl.col("task_id").drop_nulls().first().alias("task_id"),
            pl.len().cast(pl.Int64).alias("n"),
            reward.sum().alias("sum"),
            reward.mean().alias("mean"),
            reward.std(ddof=1).alias("std"),
            reward.min().alias("min"),
            reward.max().alias("max"),
            (reward >= success_threshold).sum().cast(pl.Int64).alias("successes"),
        )
        .sort("task_index")
    )
    constant = pl.col("min") == pl.col("max")
    return table.with_columns(
        pl.when(constant & (pl.col("min") == 0))
        .then(pl.lit("always_0"))
        .when(constant & (pl.col("min") == 1))
        .then(pl.lit("always_1"))
        .when(constant)
        .then(pl.lit("constant_other"))
        .otherwise(pl.lit("mixed"))
        .alias("outcome")
    )


def _resample_means(
    sums: np.ndarray, counts: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of sum(sums) / sum(counts), resampling clusters with replacement.

    Clusters with the same (sum, count) are interchangeable, so when there are few distinct ones
    (binary or partial-credit rewards) a replicate is a multinomial draw over the distinct
    values: exact, and O(distinct) instead of O(clusters) per replicate.
    """
    size = sums.size
    keys, frequency = np.unique(np.column_stack([sums, counts]), axis=0, return_counts=True)
    if keys.shape[0] * 8 <= size:
        weights = rng.multinomial(size, frequency / size, size=n_resamples).astype(np.float64)
        return (weights @ keys[:, 0]) / (weights @ keys[:, 1])
    replicates = np.empty(n_resamples, dtype=np.float64)
    equal_counts = bool(np.all(counts == counts[0]))
    step = max(1, _CHUNK_ELEMENTS // size)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        index = rng.integers(0, size, size=(stop - start, size), dtype=np.int64)
        total = sums[index].sum(axis=1)
        replicates[start:stop] = (
            total / (counts[0] * size) if equal_counts else total / counts[index].sum(axis=1)
        )
    return replicates


def cluster_bootstrap_ci(
    sums: Sequence[float] | np.ndarray,
    counts: Sequence[float] | np.ndarray,
    *,
    n_bootstrap: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of sum(sums)/sum(counts), resampling clusters (tasks).

    ``sums[i]`` and ``counts[i]`` are cluster i's reward total and rollout count: a resampled
    task brings all its repeats. With one row per cluster this is the ordinary bootstrap.
    (None, None) with fewer than two clusters.
    """
    sums_array = np.asarray(sums, dtype=np.float64)
    counts_array = np.asarray(counts, dtype=np.float64)
    if sums_array.size < 2 or n_bootstrap < 1:
        return None, None
    replicates = _resample_means(sums_array, counts_array, n_bootstrap, np.random.default_rng(seed))
    low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def clustered_sem(sums: np.ndarray, counts: np.ndarray) -> float | None:
    """Cluster-robust standard error of the rollout mean (clusters = tasks).

    sqrt(G / (G - 1) * sum_t (S_t - n_t * mean)^2) / N, with G tasks, S_t and n_t a task's
    reward sum and count, N rollouts. With one rollout per task it is std / sqrt(N); with k
    repeats per task, stdev(task means) / sqrt(G). None with fewer than two tasks.
    """
    tasks = sums.size
    if tasks < 2:
        return None
    total = counts.sum()
    mean = sums.sum() / total
    residual = sums - counts * mean
    return float(math.sqrt(tasks / (tasks - 1) * float(residual @ residual)) / total)


def sign_flip_test(
    differences: Sequence[float] | np.ndarray, *, n_resamples: int = 2000, seed: int = 0
) -> float:
    """Two-sided paired sign-flip (permutation) test of mean difference = 0 over tasks.

    Under the null the sign of each task's difference is exchangeable. The p-value is the
    share of sign assignments whose |mean| reaches the observed one: exact (all 2^m of them)
    when at most 16 tasks differ, else Monte Carlo with (1 + hits) / (1 + n_resamples).
    Tasks with a zero difference carry no information and are dropped; none left gives 1.0.
    """
    values = np.asarray(differences, dtype=np.float64)
    values = values[values != 0]
    if values.size == 0:
        return 1.0
    observed = abs(values.sum())
    tolerance = 1e-9 * np.abs(values).sum()
    if values.size <= _EXACT_SIGN_FLIP_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=values.size)))
        totals = np.abs(signs @ values)
        return float(np.mean(totals >= observed - tolerance))
    rng = np.random.default_rng(seed)
    distinct, frequency = np.unique(values, return_counts=True)
    if distinct.size * 8 <= values.size:
        # Flipping each of the m tasks with value v is 2 * Binomial(m, 1/2) - m of them positive.
        positive = rng.binomial(frequency, 0.5, size=(n_resamples, distinct.size))
        totals = np.abs((2 * positive - frequency) @ distinct)
    else:
        totals = np.empty(n_resamples)
        step = max(1, _CHUNK_ELEMENTS // values.size)
        for start in range(0, n_resamples, step):
            stop = min(n_resamples, start + step)
            signs = rng.integers(0, 2, size=(stop - start, values.size)).astype(np.float64) * 2 - 1
            totals[start:stop] = np.abs(signs @ values)
    hits = int(np.count_nonzero(totals >= observed - tolerance))
    return (1 + hits) / (1 + n_resamples)
