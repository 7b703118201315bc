"""Aggregation of rollouts per experiment: summaries, best parameters, per-task statistics.

Plain functions over polars frames. One configuration of a sweep is a dict of parameter values
(``{"temperature": 0.5}``) with its rollouts; its label is Snakemake's Paramspace form
(``temperature~0.5``, dimensions joined by ``/``).

Statistics, in short (details in each docstring):

* ``mean`` is the plain mean of ``reward`` over the rollouts of the file, summed left to right
  as ``jq -s 'map(.reward) | add/length'`` does, so the two agree to the last bit.
* Uncertainty is clustered by task: repeats of one task are correlated, so the standard error
  and the bootstrap resample *tasks* (a task's repeats move together), never single rows.
* ``pass_at_k`` is the unbiased estimator of Chen et al. (2021) with success = reward >=
  ``success_threshold``; ``majority_at_k`` is the fraction of tasks where a strict majority of
  the repeats succeed.
* ``best_params`` compares the winner with the runner-up on the tasks both ran: a paired
  bootstrap CI of the per-task difference and a two-sided paired sign-flip (permutation) test.
* Infrastructure failures (the ``<stem>_failures.jsonl`` sidecar) are not rollouts: they are
  counted apart as ``n_failures`` and ``failure_rate``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from rollsweep.errors import UsageError
from rollsweep.protocol import failures_path_for
from rollsweep.rollouts.jsonl import atomic_output, iter_jsonl

#: Bytes read per block by the JSONL reader: bounds memory whatever the file size.
READ_BLOCK_BYTES = 16 << 20
#: Largest tasks x resamples matrix built at once by the bootstrap (elements).
_CHUNK_ELEMENTS = 4_000_000
#: Up to this many tasks with a non-zero difference, the sign-flip test is exact.
_EXACT_SIGN_FLIP_MAX = 16

_METRIC_FIELDS = ("latency_s", "input_tokens", "output_tokens", "turns", "tool_calls")
_READ_SCHEMA: dict[str, pl.DataType] = {
    "reward": pl.Float64(),
    "_ng_task_index": pl.Int64(),
    "_ng_rollout_index": pl.Int64(),
    "task_id": pl.String(),
    "metrics": pl.Struct({name: pl.Float64() for name in _METRIC_FIELDS}),
}
#: Columns of ``load_rollouts`` (plus ``output`` on request), in this order.
ROLLOUT_COLUMNS = ("task_index", "rollout_index", "task_id", "reward", *_METRIC_FIELDS)
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
METRICS = ("mean", "pass_at_1", "pass_at_k", "majority_at_k")


# --------------------------------------------------------------------------- configurations


def config_label(params: Mapping[str, Any]) -> str:
    """Paramspace-style label: ``temperature~0.5/top_p~0.9`` (``default`` for no parameters)."""
    if not params:
        return "default"
    return "/".join(f"{name}~{_scalar_text(value)}" for name, value in params.items())


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):  # as the configuration's directory is named (YAML's spelling)
        return str(value).lower()
    if isinstance(value, str | int | float) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ConfigRollouts:
    """One configuration: its parameters, its rollouts (``load_rollouts``), its failure count."""

    params: Mapping[str, Any]
    rollouts: pl.DataFrame
    n_failures: int = 0
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label if self.label is not None else config_label(self.params)


#: A ConfigRollouts, or a tuple (params, frame) or (params, frame, n_failures).
ConfigLike = ConfigRollouts | tuple[Any, ...]


def _as_configs(configs: Sequence[ConfigLike]) -> list[ConfigRollouts]:
    """Accept ConfigRollouts or tuples ``(params, frame)`` / ``(params, frame, n_failures)``."""
    result = []
    for item in configs:
        if isinstance(item, ConfigRollouts):
            result.append(item)
        elif isinstance(item, tuple) and len(item) in (2, 3):
            result.append(
                ConfigRollouts(dict(item[0]), item[1], int(item[2] or 0) if len(item) == 3 else 0)
            )
        else:
            raise TypeError(
                f"expected ConfigRollouts or (params, frame[, n_failures]), got {item!r}"
            )
    return result


def _param_frame(configs: Sequence[ConfigRollouts], reserved: Sequence[str]) -> pl.DataFrame:
    """One row per configuration: its parameter columns (union of keys), ``config``, order."""
    names: list[str] = []
    for cfg in configs:
        names.extend(name for name in cfg.params if name not in names)
    clash = sorted(set(names) & {*reserved, "_order"})
    if clash:
        raise ValueError(f"parameter names clash with output columns: {', '.join(clash)}")
    rows = [
        {
            **{name: _param_value(cfg.params.get(name)) for name in names},
            "config": cfg.name,
            "_order": position,
        }
        for position, cfg in enumerate(configs)
    ]
    return pl.DataFrame(rows, infer_schema_length=None, strict=False).select(
        *names, "config", "_order"
    )


def _param_value(value: Any) -> Any:
    """Scalars stay; lists and dicts become JSON text (CSV has no nested values)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.dumps(value, sort_keys=True)


def _with_params(
    configs: Sequence[ConfigRollouts], parts: Sequence[pl.DataFrame], reserved: Sequence[str]
) -> pl.DataFrame:
    """Parameter columns and ``config`` in front of each configuration's rows, stacked."""
    if not configs:
        raise ValueError("no configurations")
    params = _param_frame(configs, reserved)
    tagged = [
        part.with_columns(pl.lit(position, pl.Int64).alias("_order"))
        for position, part in enumerate(parts)
    ]
    body = pl.concat(tagged, how="diagonal_relaxed")
    joined = params.join(body, on="_order", how="inner", maintain_order="right")
    return joined.drop("_order")


# --------------------------------------------------------------------------- reading


def load_rollouts(path: str | os.PathLike[str], *, output: bool = False) -> pl.DataFrame:
    """The columns of a rollouts JSONL file that aggregation needs, in file order.

    Columns: task_index, rollout_index (Int64), task_id (String), reward (Float64), latency_s,
    input_tokens, output_tokens, turns, tool_calls (Float64, from ``metrics``), and ``output``
    (String) when ``output=True`` (off by default: the final texts can outweigh the rest).
    ``response`` and every other field are never materialized; the file is read in blocks so
    memory stays bounded. An empty file gives an empty frame. A row without a numeric
    ``reward`` or an integer ``_ng_task_index`` is a UsageError naming file and line.
    """
    schema = dict(_READ_SCHEMA)
    if output:
        schema["output"] = pl.String()
    frame = _read_ndjson(path, schema)
    frame = frame.select(
        pl.col("_ng_task_index").alias("task_index"),
        pl.col("_ng_rollout_index").alias("rollout_index"),
        "task_id",
        "reward",
        *(pl.col("metrics").struct.field(name).alias(name) for name in _METRIC_FIELDS),
        *(["output"] if output else []),
    )
    for column, key, what in (
        ("reward", "reward", "a number"),
        ("task_index", "_ng_task_index", "an integer"),
    ):
        nulls = frame.get_column(column).is_null()
        if nulls.any():
            row = int(nulls.arg_true()[0])
            raise UsageError(
                f"missing or null, expected {what}",
                path=str(path),
                line=_line_of_row(path, row),
                key=key,
            )
    return frame


def _read_ndjson(path: str | os.PathLike[str], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Selected fields of a JSONL file, parsed by polars block by block (blank lines skipped)."""
    parts: list[pl.DataFrame] = []
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise UsageError("file not found", path=str(path)) from None
    except IsADirectoryError:
        raise UsageError("is a directory, expected a JSONL file", path=str(path)) from None
    with handle:
        pending = b""
        while block := handle.read(READ_BLOCK_BYTES):
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending += block
                continue
            data = pending + block[:cut] if pending else block[:cut]
            pending = block[cut:]
            parts.append(_parse_block(data, schema, path))
        if pending.strip():
            parts.append(_parse_block(pending, schema, path))
    if not parts:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(parts, rechunk=True)


def _parse_block(
    data: bytes, schema: Mapping[str, pl.DataType], path: str | os.PathLike[str]
) -> pl.DataFrame:
    if not data.strip():
        return pl.DataFrame(schema=dict(schema))
    try:
        return pl.read_ndjson(data, schema=dict(schema))
    except pl.exceptions.PolarsError as error:
        _diagnose(path, schema)
        raise UsageError(f"cannot read: {str(error).splitlines()[0]}", path=str(path)) from None


def _diagnose(path: str | os.PathLike[str], schema: Mapping[str, pl.DataType]) -> None:
    """Slow path after a parse error: find the line and key at fault and raise a UsageError."""
    shown = str(path)
    for number, row in iter_jsonl(path):  # raises for invalid JSON, naming the line
        if not isinstance(row, dict):
            raise UsageError(
                f"expected a JSON object, got a JSON {type(row).__name__}", path=shown, line=number
            )
        for key, dtype in schema.items():
            value = row.get(key)
            if value is None:
                continue
            if isinstance(dtype, pl.Struct):
                if not isinstance(value, dict):
                    raise UsageError("expected an object", path=shown, line=number, key=key)
                for sub in dtype.fields:
                    inner = value.get(sub.name)
                    if inner is not None and not _is_number(inner):
                        raise UsageError(
                            f"expected a number, got {inner!r}",
                            path=shown,
                            line=number,
                            key=f"{key}.{sub.name}",
                        )
            elif dtype == pl.Float64 and not _is_number(value):
                raise UsageError(
                    f"expected a number, got {value!r}", path=shown, line=number, key=key
                )
            elif dtype == pl.Int64 and not (isinstance(value, int) and not isinstance(value, bool)):
                raise UsageError(
                    f"expected an integer, got {value!r}", path=shown, line=number, key=key
                )
            elif dtype == pl.String and isinstance(value, dict | list):
                raise UsageError("expected a string", path=shown, line=number, key=key)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _line_of_row(path: str | os.PathLike[str], row: int) -> int | None:
    """The 1-based line number of the row-th non-blank line (rows skip blank lines)."""
    seen = -1
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                seen += 1
                if seen == row:
                    return number
    return None


def count_failures(
    path: str | os.PathLike[str] | None, rollouts: pl.DataFrame | None = None
) -> int:
    """Infrastructure failures in a sidecar file (0 when it is None or absent).

    Failures are counted once per (task, repeat); a (task, repeat) that also has a rollout in
    ``rollouts`` (it succeeded on a later run) is not counted. Rows without indices count each.
    """
    if path is None or not Path(path).exists():
        return 0
    frame = _read_ndjson(path, {"_ng_task_index": pl.Int64(), "_ng_rollout_index": pl.Int64()})
    frame = frame.rename({"_ng_task_index": "task_index", "_ng_rollout_index": "rollout_index"})
    keyed = frame.drop_nulls()
    unkeyed = frame.height - keyed.height
    keyed = keyed.unique()
    if rollouts is not None and rollouts.height:
        done = rollouts.select("task_index", "rollout_index").drop_nulls()
        keyed = keyed.join(done, on=["task_index", "rollout_index"], how="anti")
    return keyed.height + unkeyed


# --------------------------------------------------------------------------- statistics


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


def _pass_at_k_column(n: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- tables


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
    items = _as_configs(configs)
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
    params = _param_frame(items, SUMMARY_COLUMNS).drop("_order")
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
        row["pass_at_k"] = float(_pass_at_k_column(n, successes, k).mean())
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
    items = _as_configs(configs)
    parts = [
        task_table(cfg.rollouts, success_threshold=success_threshold).select(PER_TASK_COLUMNS[1:])
        for cfg in items
    ]
    return _with_params(items, parts, PER_TASK_COLUMNS)


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
    items = _as_configs(configs)
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
    return _with_params(items, parts, reserved)


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


# --------------------------------------------------------------------------- best parameters


def _task_metric(
    rollouts: pl.DataFrame, metric: str, success_threshold: float, k: int | None
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
        value = _pass_at_k_column(n, c, int(k or 1))
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
) -> dict[str, Any]:
    """The best configuration by ``metric`` and whether the data separate it from the next.

    ``summary`` is ``summarize(configs)``, rows in the same order as ``configs``. Returns::

        {"metric", "alpha", "n_configs",
         "verdict": "best" | "tie" | "only" | "none",
         "best":      {"config", "params", "mean", "ci_low", "ci_high", "sem", "n_rollouts",
                       "n_tasks", "n_repeats", "failure_rate"[, metric]} | None,
         "runner_up": same keys | None,
         "difference": {"estimate", "ci_low", "ci_high", "p_value", "n_paired_tasks",
                        "test"} | None}

    The difference is paired on task_index over the tasks both ran: per task, the winner's
    value minus the runner-up's (per-task mean reward for metric "mean"), averaged over tasks;
    its CI is a percentile bootstrap over tasks and its p-value a two-sided paired sign-flip
    test (``sign_flip_test``). verdict "best" when p < alpha and the estimate > 0, else "tie";
    "only" with a single configuration with rollouts, "none" with no rollouts at all.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    items = _as_configs(configs)
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
    }
    if ranked.height == 0:
        return result
    rows = ranked.to_dicts()
    result["best"] = _pick(rows[0], param_names, metric)
    if ranked.height == 1:
        result["verdict"] = "only"
        return result
    result["runner_up"] = _pick(rows[1], param_names, metric)
    winner, second = (items[rows[i]["_position"]] for i in (0, 1))
    tables = [
        _task_metric(cfg.rollouts, metric, success_threshold, row["k"])
        for cfg, row in ((winner, rows[0]), (second, rows[1]))
    ]
    paired = tables[0].join(tables[1], on="task_index", how="inner", suffix="_second")
    differences = (paired.get_column("value") - paired.get_column("value_second")).to_numpy()
    difference: dict[str, Any] = {
        "estimate": None,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "n_paired_tasks": int(differences.size),
        "test": "two-sided paired sign-flip permutation test over tasks",
    }
    verdict = "tie"
    if differences.size:
        estimate = float(differences.mean())
        low, high = cluster_bootstrap_ci(
            differences, np.ones_like(differences), n_bootstrap=n_bootstrap, alpha=alpha, seed=seed
        )
        p_value = sign_flip_test(differences, n_resamples=n_bootstrap, seed=seed)
        difference.update(estimate=estimate, ci_low=low, ci_high=high, p_value=p_value)
        if p_value < alpha and estimate > 0:
            verdict = "best"
    result["difference"] = difference
    result["verdict"] = verdict
    return result


# --------------------------------------------------------------------------- one call


OUTPUT_FILES = (
    "summary.csv",
    "summary.parquet",
    "best_params.json",
    "per_task.csv",
    "task_outcomes.csv",
    "reward_distribution.csv",
    "failures.jsonl",
)


def write_experiment_outputs(
    output_dir: str | os.PathLike[str],
    configs: Sequence[
        tuple[Mapping[str, Any], str | os.PathLike[str], str | os.PathLike[str] | None]
    ],
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 2000,
    seed: int = 0,
    success_threshold: float = 1.0,
    low_reward_threshold: float = 0.3,
    metric: str = "mean",
    baseline: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write every aggregate of an experiment into ``output_dir``; returns name -> path.

    ``configs``: (params, rollouts path, failures sidecar path or None) per configuration; None
    means the default sidecar ``<stem>_failures.jsonl`` if it exists. ``baseline``: a rollouts
    file whose reward counts go beside ours in reward_distribution.csv. Files (OUTPUT_FILES):
    summary.csv/.parquet, best_params.json, per_task.csv, task_outcomes.csv,
    reward_distribution.csv, failures.jsonl (the rows of every configuration with reward <
    low_reward_threshold, verbatim, in configuration order). Each file appears atomically.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for params, rollouts_path, sidecar in configs:
        frame = load_rollouts(rollouts_path)
        sidecar_path = sidecar if sidecar is not None else failures_path_for(rollouts_path)
        items.append(ConfigRollouts(dict(params), frame, count_failures(sidecar_path, frame)))
    summary = summarize(
        items,
        n_bootstrap=n_bootstrap,
        seed=seed,
        alpha=alpha,
        success_threshold=success_threshold,
        low_reward_threshold=low_reward_threshold,
    )
    best = best_params(
        summary,
        items,
        metric=metric,
        alpha=alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
        success_threshold=success_threshold,
    )
    tasks = per_task(items, success_threshold=success_threshold)
    outcomes = task_outcomes(tasks)
    distribution = reward_distribution(
        items, baseline=load_rollouts(baseline) if baseline is not None else None
    )

    paths = {name: out / name for name in OUTPUT_FILES}
    with atomic_output(paths["failures.jsonl"]) as handle:
        for (_, rollouts_path, _), cfg in zip(configs, items, strict=True):
            rewards = cfg.rollouts.get_column("reward")
            low_reward_rollouts(
                rollouts_path, handle, threshold=low_reward_threshold, rewards=rewards
            )
    for name, frame in (
        ("summary.csv", summary),
        ("per_task.csv", tasks),
        ("task_outcomes.csv", outcomes),
        ("reward_distribution.csv", distribution),
    ):
        with atomic_output(paths[name]) as handle:
            frame.write_csv(handle)
    with atomic_output(paths["summary.parquet"]) as handle:
        summary.write_parquet(handle)
    with atomic_output(paths["best_params.json"]) as handle:
        handle.write(json.dumps(best, indent=2, allow_nan=False).encode() + b"\n")
    return paths
