"""The agent's ``/aggregate_metrics`` for a finished output, as NeMo Gym's collector asks it."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import orjson

from rollsweep.protocol import AGENT_REF_KEY
from rollsweep.rollouts.jsonl import atomic_output, iter_rows
from rollsweep.rollouts.names import aggregate_metrics_path_for


def _for_aggregation(row: dict[str, Any]) -> dict[str, Any]:
    """A row as NeMo Gym's collector sends it to ``/aggregate_metrics``: no request, no
    response except its usage."""
    entry = {k: v for k, v in row.items() if k not in ("response", "responses_create_params")}
    usage = (row.get("response") or {}).get("usage")
    if usage:
        entry["response"] = {"usage": usage}
    return entry


#: Bytes of the request body sent at a time.
BODY_CHUNK_BYTES = 256 * 1024


def _spool_request_body(output: Path, spool: BinaryIO) -> int:
    """Write ``{"verify_responses": [...]}`` over the output's rows to ``spool``, one row at a
    time; return its length. The rows are never all held: 100,000 of them as Python objects
    added about 330 MB to the collector's peak RSS (benchmarks/collector_throughput.py). Spooled
    rather than streamed chunked, so the request has a Content-Length as NeMo Gym's has (a
    minimal agent need not read chunked bodies)."""
    spool.write(b'{"verify_responses":[')
    separator = b""
    for _, row in iter_rows(output):
        spool.write(separator + orjson.dumps(_for_aggregation(row)))
        separator = b","
    spool.write(b"]}")
    return spool.tell()


async def _chunks(spool: BinaryIO) -> AsyncIterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(BODY_CHUNK_BYTES):
        yield chunk


async def write_aggregate_metrics(
    agent_url: str, agent_name: str | None, output: Path, timeout_s: float
) -> Path | None:
    """Ask the agent's ``/aggregate_metrics`` about the output's rows, as NeMo Gym's collector
    does at the end of a collection; write its answer beside the output.

    An agent without the endpoint (a plain ``/run`` server) is not an error: one warning line.
    """
    url = f"{agent_url.rstrip('/')}/aggregate_metrics"
    try:
        with tempfile.TemporaryFile(dir=output.parent) as spool:
            length = _spool_request_body(output, spool)
            headers = {"content-type": "application/json", "content-length": str(length)}
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                reply = await client.post(url, content=_chunks(spool), headers=headers)
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
