"""What an agent's answer becomes: a rollout row for the output, or a failure record."""

from __future__ import annotations

import math
from typing import Any

from rollsweep.collector.http import RolloutFailed
from rollsweep.collector.tasks import effective_params
from rollsweep.protocol import FAILURE_CLASS_KEY, ROLLOUT_INDEX_KEY, TASK_INDEX_KEY
from rollsweep.rollouts.text import output_text


def to_rollout_row(
    request: dict[str, Any],
    result: dict[str, Any],
    task_index: int,
    rollout_index: int,
    seed: int | None,
    latency_s: float,
) -> dict[str, Any]:
    """Merge what the agent returned with the task and the collector's bookkeeping."""
    if not isinstance(result, dict) or "reward" not in result:
        raise RolloutFailed("bad_response", "the agent's answer has no 'reward'", 1)
    reward = result["reward"]
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise RolloutFailed("bad_response", f"the agent's reward is not a number: {reward!r}", 1)
    row = {**request, **result}
    response = row.get("response") if isinstance(row.get("response"), dict) else {}
    if "output" not in row:
        row["output"] = output_text(response)
    metrics = dict(row.get("metrics") or {})
    metrics["latency_s"] = round(latency_s, 6)
    # An agent that reports no metrics of its own (NeMo Gym's) still has the model's usage.
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    for key in ("input_tokens", "output_tokens"):
        if key not in metrics and isinstance(usage.get(key), int):
            metrics[key] = usage[key]
    row["metrics"] = metrics
    row[TASK_INDEX_KEY] = task_index
    row[ROLLOUT_INDEX_KEY] = rollout_index
    row["params"] = effective_params(request)
    row["seed"] = seed
    return row


def failure_message(result: dict[str, Any]) -> str:
    """What a row marked ``_ng_failure_class`` says about its failure (first field that has it)."""
    for key in ("failure_message", "error", "message", "detail"):
        value = result.get(key)
        if value:
            return str(value)[:300]
    return f"the agent marked the rollout {FAILURE_CLASS_KEY}={result[FAILURE_CLASS_KEY]!r}"


def failure_record(
    task_index: int,
    rollout_index: int,
    request: dict[str, Any],
    kind: str,
    message: str,
    attempts: int,
) -> dict[str, Any]:
    """A line of the failures sidecar: which rollout, why, after how many attempts."""
    return {
        TASK_INDEX_KEY: task_index,
        ROLLOUT_INDEX_KEY: rollout_index,
        "task_id": request.get("task_id"),
        "error_kind": kind,
        "message": message,
        "attempts": attempts,
    }
