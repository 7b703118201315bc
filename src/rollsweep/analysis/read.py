"""The rollouts of a configuration as aggregation reads them (through rollsweep.rollouts.reader).

Infrastructure failures (the ``<stem>_failures.jsonl`` sidecar) are not rollouts: they are
counted apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from rollsweep.errors import UsageError
from rollsweep.rollouts.reader import KEY_SCHEMA, check_first_row, line_of_row, read_columns

_METRIC_FIELDS = ("latency_s", "input_tokens", "output_tokens", "turns", "tool_calls")
#: What aggregation reads of a row: the key columns, and the metrics as floats.
_READ_SCHEMA: dict[str, pl.DataType] = {
    **KEY_SCHEMA,
    "metrics": pl.Struct({name: pl.Float64() for name in _METRIC_FIELDS}),
}
#: Columns of ``load_rollouts`` (plus ``output`` on request), in this order.
ROLLOUT_COLUMNS = ("task_index", "rollout_index", "task_id", "reward", *_METRIC_FIELDS)


def load_rollouts(path: str | os.PathLike[str], *, output: bool = False) -> pl.DataFrame:
    """The columns of a rollouts JSONL file that aggregation needs, in file order.

    Columns: task_index, rollout_index (Int64), task_id (String), reward (Float64), latency_s,
    input_tokens, output_tokens, turns, tool_calls (Float64, from ``metrics``), and ``output``
    (String) when ``output=True`` (off by default: the final texts can outweigh the rest).
    ``response`` and every other field are never materialized; the file is read in blocks so
    memory stays bounded. An empty file gives an empty frame. A row without a numeric
    ``reward`` or an integer ``_ng_task_index``, or a first row that is no ``RolloutRow``, is a
    UsageError naming file and line.
    """
    check_first_row(path)
    schema = dict(_READ_SCHEMA)
    if output:
        schema["output"] = pl.String()
    frame = read_columns(path, schema)
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
                line=line_of_row(path, row),
                key=key,
            )
    return frame


def count_failures(
    path: str | os.PathLike[str] | None, rollouts: pl.DataFrame | None = None
) -> int:
    """Infrastructure failures in a sidecar file (0 when it is None or absent).

    Failures are counted once per (task, repeat); a (task, repeat) that also has a rollout in
    ``rollouts`` (it succeeded on a later run) is not counted. Rows without indices count each.
    """
    if path is None or not Path(path).exists():
        return 0
    frame = read_columns(path, {"_ng_task_index": pl.Int64(), "_ng_rollout_index": pl.Int64()})
    frame = frame.rename({"_ng_task_index": "task_index", "_ng_rollout_index": "rollout_index"})
    keyed = frame.drop_nulls()
    unkeyed = frame.height - keyed.height
    keyed = keyed.unique()
    if rollouts is not None and rollouts.height:
        done = rollouts.select("task_index", "rollout_index").drop_nulls()
        keyed = keyed.join(done, on=["task_index", "rollout_index"], how="anti")
    return keyed.height + unkeyed
