"""What the viewer's API computes: reward filters, row previews, conversations, task groups,
histograms and the pairing of two files. Pure functions over index frames and row dicts."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from rollsweep.rollouts.text import content_text, final_output, prompt_text

#: Two rewards closer than this are equal (filters, compare).
REWARD_TOLERANCE = 1e-9
PREVIEW_CHARS = 240

# --------------------------------------------------------------------------- reward filter

_TERM = re.compile(
    r"^(?P<op><=|>=|==|!=|<>|<|>|=)?\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$"
)
_RANGE = re.compile(r"^(?P<lo>[-+]?(?:\d+\.?\d*|\.\d+))\s*\.\.\s*(?P<hi>[-+]?(?:\d+\.?\d*|\.\d+))$")


class FilterError(ValueError):
    """A reward filter that cannot be read (the message says how to write one)."""


def _term(text: str) -> pl.Expr:
    reward = pl.col("reward")
    cleaned = text.strip().lower()
    if cleaned.startswith("reward"):
        cleaned = cleaned[len("reward") :].strip()
    if cleaned in ("missing", "null", "none", "nan"):
        return reward.is_null()
    ranged = _RANGE.match(cleaned)
    if ranged:
        lo, hi = float(ranged["lo"]), float(ranged["hi"])
        return (reward >= lo - REWARD_TOLERANCE) & (reward <= hi + REWARD_TOLERANCE)
    match = _TERM.match(cleaned)
    if not match:
        raise FilterError(
            f"cannot read {text.strip()!r}: write e.g. '< 0.3', '>= 0.5 and < 1', '== 0 or == 1', "
            "'0.2..0.8' or 'missing'"
        )
    value = float(match["value"])
    op = match["op"] or "=="
    if op in ("=", "=="):
        return (reward - value).abs() <= REWARD_TOLERANCE
    if op in ("!=", "<>"):
        return (reward - value).abs() > REWARD_TOLERANCE
    if op == "<":
        return reward < value - REWARD_TOLERANCE
    if op == "<=":
        return reward <= value + REWARD_TOLERANCE
    if op == ">":
        return reward > value + REWARD_TOLERANCE
    return reward >= value - REWARD_TOLERANCE


def parse_reward_filter(text: str | None) -> pl.Expr | None:
    """``'< 0.3'``, ``'>= 0.5 and < 1'``, ``'== 0 or == 1'``, ``'0.2..0.8'``, ``'missing'``.

    Returns a polars expression over the ``reward`` column (None for an empty filter); a row
    without a numeric reward matches only ``missing``. FilterError for anything else.
    """
    if text is None or not text.strip():
        return None
    alternatives = []
    for alternative in re.split(r"\bor\b|\|\|?", text, flags=re.IGNORECASE):
        terms = [t for t in re.split(r"\band\b|&&?|,", alternative, flags=re.IGNORECASE)]
        if not all(t.strip() for t in terms):
            raise FilterError(f"cannot read {text.strip()!r}: an 'and'/'or' is missing a side")
        expr = _term(terms[0])
        for term in terms[1:]:
            expr = expr & _term(term)
        alternatives.append(expr)
    combined = alternatives[0]
    for expr in alternatives[1:]:
        combined = combined | expr
    return combined.fill_null(False)


# --------------------------------------------------------------------------- task keys


def with_task_key(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``task_key`` (the task a row belongs to) and ``repeat_key`` (its repeat number).

    The task is ``_ng_task_index`` when present, else ``task_id``, else the row alone; the
    repeat is ``_ng_rollout_index`` when present, else the row's rank within its task.
    """
    key = (
        pl.when(pl.col("task_index").is_not_null())
        .then(pl.format("#{}", pl.col("task_index")))
        .when(pl.col("task_id").is_not_null())
        .then(pl.format("id:{}", pl.col("task_id")))
        .otherwise(pl.format("row:{}", pl.col("i")))
    )
    framed = frame.with_columns(key.alias("task_key"))
    rank = (pl.int_range(pl.len()).over("task_key")).cast(pl.Int64)
    return framed.with_columns(pl.coalesce(pl.col("repeat"), rank).alias("repeat_key"))


# --------------------------------------------------------------------------- rows


def clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The text on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def params_text(row: dict[str, Any]) -> str:
    """``temperature=0.7 top_p=0.9`` from the row's effective ``params``."""
    params = row.get("params")
    if not isinstance(params, dict):
        return ""
    return " ".join(f"{k}={_scalar(v)}" for k, v in params.items())


def _metric(row: dict[str, Any], name: str) -> Any:
    metrics = row.get("metrics")
    value = metrics.get(name) if isinstance(metrics, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def finite(value: Any) -> float | None:
    """A number as a float, None for missing, NaN and infinite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def row_summary(index_row: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """One line of the table: index columns plus short previews from the row body."""
    return {
        "i": index_row["i"],
        "line": index_row["line"],
        "task_index": index_row["task_index"],
        "repeat": index_row["repeat"],
        "task_id": index_row["task_id"],
        "reward": finite(index_row["reward"]),
        "prompt": clip(prompt_text(row)),
        "output": clip(final_output(row)),
        "params": params_text(row),
        "turns": _metric(row, "turns"),
        "tool_calls": _metric(row, "tool_calls"),
        "latency_s": _metric(row, "latency_s"),
        "output_tokens": _metric(row, "output_tokens"),
    }


# --------------------------------------------------------------------------- conversation


def _pretty(text: Any) -> tuple[str, bool]:
    """(text, is_json): JSON text pretty-printed when it parses, else as it is."""
    if isinstance(text, str):
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.dumps(json.loads(stripped), indent=2, ensure_ascii=False), True
            except ValueError:
                pass
        return text, False
    return json.dumps(text, indent=2, ensure_ascii=False), True


def _item_entry(item: Any, source: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"kind": "other", "label": "item", "text": _pretty(item)[0], "source": source}
    kind = item.get("type")
    if kind in (None, "message") and "role" in item:
        role = str(item.get("role"))
        label = {"developer": "system"}.get(role, role)
        entry_kind = label if label in ("system", "user", "assistant", "tool") else "other"
        return {
            "kind": entry_kind,
            "label": role,
            "text": content_text(item.get("content"), labels=True),
            "source": source,
        }
    if kind == "function_call":
        arguments, _ = _pretty(item.get("arguments"))
        return {
            "kind": "tool_call",
            "label": f"call {item.get('name')}",
            "text": arguments,
            "call_id": item.get("call_id"),
            "source": source,
        }
    if kind == "function_call_output":
        output, _ = _pretty(item.get("output"))
        return {
            "kind": "tool_output",
            "label": "tool result",
            "text": output,
            "call_id": item.get("call_id"),
            "source": source,
        }
    if kind == "reasoning":
        texts = [
            part.get("text", "")
            for key in ("summary", "content")
            for part in item.get(key) or []
            if isinstance(part, dict)
        ]
        return {
            "kind": "reasoning",
            "label": "reasoning",
            "text": "\n".join(texts),
            "source": source,
        }
    if kind == "message":
        return {
            "kind": "assistant",
            "label": "assistant",
            "text": content_text(item.get("content"), labels=True),
            "source": source,
        }
    return {"kind": "other", "label": str(kind), "text": _pretty(item)[0], "source": source}


def conversation(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The rollout as a list of entries ``{kind, label, text, source}``, in order.

    kind: system, user, assistant, tool_call, tool_output, reasoning, tool or other;
    source: ``input`` (the task's request) or ``output`` (what the rollout produced).
    """
    entries: list[dict[str, Any]] = []
    params = row.get("responses_create_params")
    params = params if isinstance(params, dict) else {}
    instructions = params.get("instructions")
    if isinstance(instructions, str) and instructions:
        entries.append(
            {"kind": "system", "label": "instructions", "text": instructions, "source": "input"}
        )
    given = params.get("input")
    if isinstance(given, str):
        entries.append({"kind": "user", "label": "user", "text": given, "source": "input"})
    elif isinstance(given, list):
        entries.extend(_item_entry(item, "input") for item in given)
    response = row.get("response")
    items = response.get("output") if isinstance(response, dict) else None
    if isinstance(items, list) and items:
        entries.extend(_item_entry(item, "output") for item in items)
    else:
        entries.append(
            {"kind": "assistant", "label": "output", "text": final_output(row), "source": "output"}
        )
    return entries


#: Keys the detail view shows in their own sections (the rest are "task fields").
_OWN_SECTIONS = {
    "responses_create_params",
    "reward",
    "output",
    "response",
    "metrics",
    "params",
    "seed",
    "verification",
    "_ng_task_index",
    "_ng_rollout_index",
    "task_id",
    "previous_reward",
}


def row_detail(index_row: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Everything the detail view shows about one rollout."""
    params = row.get("responses_create_params")
    params = params if isinstance(params, dict) else {}
    request = {k: v for k, v in params.items() if k not in ("input", "tools", "instructions")}
    tools = [
        t.get("name") or (t.get("function") or {}).get("name") or t.get("type")
        for t in params.get("tools") or []
        if isinstance(t, dict)
    ]
    response = row.get("response")
    return {
        **row_summary(index_row, row),
        "output": final_output(row),
        "prompt": prompt_text(row),
        "conversation": conversation(row),
        "verification": row.get("verification"),
        "metrics": row.get("metrics"),
        "params_dict": row.get("params"),
        "seed": row.get("seed"),
        "previous_reward": row.get("previous_reward"),
        "request": request,
        "tools": tools,
        "model": response.get("model") if isinstance(response, dict) else None,
        "task_fields": {k: v for k, v in row.items() if k not in _OWN_SECTIONS},
        "raw": row,
    }


# --------------------------------------------------------------------------- groups


def group_table(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per task, in order of first appearance: n, μ, σ (sample, as the seed's
    ``statistics.stdev``), min, max, and the members' row numbers, repeats and rewards."""
    keyed = with_task_key(frame)
    return keyed.group_by("task_key", maintain_order=True).agg(
        pl.col("i").first().alias("first_i"),
        pl.col("task_index").first(),
        pl.col("task_id").first(),
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("reward").mean().alias("mean"),
        pl.col("reward").std(ddof=1).alias("std"),
        pl.col("reward").min().alias("min"),
        pl.col("reward").max().alias("max"),
        pl.col("i").alias("members"),
        pl.col("repeat_key").alias("member_repeats"),
        pl.col("reward").alias("member_rewards"),
    )


GROUP_SORTS = {
    "task": ("first_i", False),
    "mean": ("mean", False),
    "-mean": ("mean", True),
    "std": ("std", False),
    "-std": ("std", True),
}

ROW_SORTS = {"file": ("i", False), "reward": ("reward", False), "-reward": ("reward", True)}


def sort_frame(frame: pl.DataFrame, sort: str, table: dict[str, tuple[str, bool]]) -> pl.DataFrame:
    if sort not in table:
        raise FilterError(f"unknown sort {sort!r} (known: {', '.join(table)})")
    column, descending = table[sort]
    if column in ("i", "first_i"):
        return frame
    return frame.sort(column, descending=descending, nulls_last=True, maintain_order=True)


# --------------------------------------------------------------------------- histogram


def histogram(rewards: pl.Series, *, max_discrete: int = 24, bins: int = 20) -> dict[str, Any]:
    """Counts per reward value when there are few (the seed's ``uniq -c``), else equal bins."""
    values = rewards.drop_nulls().drop_nans()
    missing = rewards.len() - values.len()
    out: dict[str, Any] = {
        "n": values.len(),
        "missing": missing,
        "mean": finite(values.mean()) if values.len() else None,
        "std": finite(values.std()) if values.len() > 1 else None,
    }
    if not values.len():
        return {**out, "kind": "discrete", "bins": []}
    counts = values.value_counts(sort=False).sort(values.name)
    if counts.height <= max_discrete:
        bars = [
            {"value": float(v), "lo": float(v), "hi": float(v), "count": int(c)}
            for v, c in counts.iter_rows()
        ]
        return {**out, "kind": "discrete", "bins": bars}
    lo, hi = float(values.min()), float(values.max())  # type: ignore[arg-type]
    width = (hi - lo) / bins
    positions = ((values - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64)
    tally = positions.value_counts(sort=False)
    by_bin = dict(tally.iter_rows())
    bars = [
        {"lo": lo + k * width, "hi": lo + (k + 1) * width, "count": int(by_bin.get(k, 0))}
        for k in range(bins)
    ]
    return {**out, "kind": "bins", "bins": bars}


# --------------------------------------------------------------------------- compare


def pair_frames(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Rows of two files paired by (task, repeat): one row per key present in either.

    Columns: task_key, repeat_key, task_index, repeat, task_id, i_a, i_b, reward_a, reward_b,
    delta (b - a), status (changed, same, only_a, only_b), order (a's row order, then b's).
    """
    columns = ["task_key", "repeat_key", "i", "reward", "task_index", "repeat", "task_id"]
    left = with_task_key(a).select(columns)
    right = with_task_key(b).select(columns)
    joined = left.join(
        right, on=["task_key", "repeat_key"], how="full", coalesce=True, suffix="_b"
    ).rename({"i": "i_a", "reward": "reward_a"})
    both = pl.col("i_a").is_not_null() & pl.col("i_b").is_not_null()
    differs = (
        pl.when(pl.col("reward_a").is_null() & pl.col("reward_b").is_null())
        .then(False)
        .when(pl.col("reward_a").is_null() | pl.col("reward_b").is_null())
        .then(True)
        .otherwise((pl.col("reward_a") - pl.col("reward_b")).abs() > REWARD_TOLERANCE)
    )
    status = (
        pl.when(pl.col("i_b").is_null())
        .then(pl.lit("only_a"))
        .when(pl.col("i_a").is_null())
        .then(pl.lit("only_b"))
        .when(differs)
        .then(pl.lit("changed"))
        .otherwise(pl.lit("same"))
    )
    return (
        joined.with_columns(
            pl.coalesce("task_index", "task_index_b").alias("task_index"),
            pl.coalesce("repeat", "repeat_b").alias("repeat"),
            pl.coalesce("task_id", "task_id_b").alias("task_id"),
            (pl.col("reward_b") - pl.col("reward_a")).alias("delta"),
            status.alias("status"),
            pl.when(both | pl.col("i_a").is_not_null())
            .then(pl.col("i_a"))
            .otherwise(pl.col("i_b") + (1 << 40))
            .alias("order"),
        )
        .drop("task_index_b", "repeat_b", "task_id_b")
        .sort("order")
    )


COMPARE_VIEWS = ("changed", "all", "up", "down", "only_a", "only_b", "same")
COMPARE_SORTS = {"file": ("order", False), "delta": ("delta", False), "-delta": ("delta", True)}


def compare_view(pairs: pl.DataFrame, view: str) -> pl.DataFrame:
    if view not in COMPARE_VIEWS:
        raise FilterError(f"unknown view {view!r} (known: {', '.join(COMPARE_VIEWS)})")
    if view == "all":
        return pairs
    if view == "up":
        return pairs.filter((pl.col("status") == "changed") & (pl.col("delta") > 0))
    if view == "down":
        return pairs.filter((pl.col("status") == "changed") & (pl.col("delta") < 0))
    return pairs.filter(pl.col("status") == view)


def compare_summary(pairs: pl.DataFrame, a: pl.DataFrame, b: pl.DataFrame) -> dict[str, Any]:
    counts = dict(pairs.group_by("status").len().iter_rows())
    changed = pairs.filter(pl.col("status") == "changed")
    transitions = (
        changed.group_by("reward_a", "reward_b")
        .len()
        .sort(["len", "reward_a", "reward_b"], descending=[True, False, False], nulls_last=True)
        .head(24)
    )
    paired = pairs.filter(pl.col("status").is_in(["changed", "same"]))
    return {
        "rows_a": a.height,
        "rows_b": b.height,
        "paired": paired.height,
        "changed": int(counts.get("changed", 0)),
        "same": int(counts.get("same", 0)),
        "only_a": int(counts.get("only_a", 0)),
        "only_b": int(counts.get("only_b", 0)),
        "up": changed.filter(pl.col("delta") > 0).height,
        "down": changed.filter(pl.col("delta") < 0).height,
        "mean_a": finite(a.get_column("reward").mean()) if a.height else None,
        "mean_b": finite(b.get_column("reward").mean()) if b.height else None,
        "paired_mean_a": finite(paired.get_column("reward_a").mean()) if paired.height else None,
        "paired_mean_b": finite(paired.get_column("reward_b").mean()) if paired.height else None,
        "transitions": [
            {"from": finite(ra), "to": finite(rb), "count": int(n)}
            for ra, rb, n in transitions.iter_rows()
        ],
    }


def as_records(frame: pl.DataFrame, columns: Iterable[str]) -> list[dict[str, Any]]:
    records = frame.select(list(columns)).to_dicts()
    for record in records:
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
    return records
