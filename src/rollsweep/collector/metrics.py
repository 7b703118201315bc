"""The agent's ``/aggregate_metrics`` for a finished output, as NeMo Gym's collector asks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from rollsweep.protocol import AGENT_REF_KEY
from rollsweep.rollouts.jsonl import atomic_output
from rollsweep.rollouts.names import aggregate_metrics_path_for
from rollsweep.rollouts.reader import iter_rows


def _for_aggregation(row: dict[str, Any]) -> dict[str, Any]:
    """A row as NeMo Gym's collector sends it to ``/aggregate_metrics``: no request, no
    response except its usage."""
    entry = {k: v for k, v in row.items() if k not in ("response", "responses_create_params")}
    usage = (row.get("response") or {}).get("usage")
    if usage:
        entry["response"] = {"usage": usage}
    return entry


async def write_aggregate_metrics(
    agent_url: str, agent_name: str | None, output: Path, timeout_s: float
) -> Path | None:
    """Ask the agent's ``/aggregate_metrics`` about the output's rows, as NeMo Gym's collector
    does at the end of a collection; write its answer beside the output.

    An agent without the endpoint (a plain ``/run`` server) is not an error: one warning line.
    """
    rows = [_for_aggregation(row) for _, row in iter_rows(output)]
    url = f"{agent_url.rstrip('/')}/aggregate_metrics"
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.post(url, json={"verify_responses": rows})
    except httpx.HTTPError as error:
        print(f"warning: {url}: {type(error).__name__}; no aggregate metrics", file=sys.stderr)
        return None
    if reply.status_code != 200:
        print(
            f"warning: {url} answered {reply.status_code}; no aggregate metrics "
            "(+disable_aggregation=true skips the call)",
            file=sys.stderr,
        )
        return None
    answer = reply.json()
    entry = {
        AGENT_REF_KEY: {"name": agent_name or agent_url},
        **{
            key: answer.get(key, {})
            for key in ("agent_metrics", "key_metrics", "group_level_metrics")
        },
    }
    path = aggregate_metrics_path_for(output)
    with atomic_output(path) as handle:
        handle.write(orjson.dumps([entry], option=orjson.OPT_INDENT_2))
    return path
