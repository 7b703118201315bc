"""The agent server: ``POST /run`` turns a task row into a rollout (NeMo Gym's contract).

seed session -> model, then tool calls and model again, up to ``max_steps`` -> verify.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from rollsweep.protocol import FAILURE_CLASS_KEY, TASK_INDEX_KEY, rollout_seed, with_seed
from rollsweep.rollouts.text import output_text


class AgentRuntime(BaseModel):
    """What one running agent needs: where its servers are and how many steps it may take."""

    name: str
    model_url: str
    resources_url: str
    max_steps: int = Field(default=4, ge=1)
    timeout_s: float = 600.0


class StepFailed(Exception):
    def __init__(self, status_code: int, detail: str, retry_after: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after


def _input_items(given: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return list(given)


async def _post(client: httpx.AsyncClient, url: str, payload: dict, **kwargs: Any) -> dict:
    reply = await client.post(url, json=payload, **kwargs)
    if reply.status_code >= 400:
        # Pass the upstream status on: 4xx is bad input (not retried), 5xx is infrastructure.
        raise StepFailed(
            reply.status_code,
            f"{url} answered {reply.status_code}: {reply.text[:300]}",
            reply.headers.get("retry-after"),
        )
    return reply.json()


async def run_rollout(
    client: httpx.AsyncClient, runtime: AgentRuntime, task: dict[str, Any]
) -> dict[str, Any]:
    """One rollout: the task's fields plus reward, output, response, metrics and verification.

    The model sees the request's seed, or (a request without one, as NeMo Gym's collector sends
    by default) a seed derived from the task and repeat indices, so repeats differ.
    """
    params = with_seed(dict(task["responses_create_params"]), rollout_seed(task))
    session = await _post(client, f"{runtime.resources_url}/seed_session", task)
    session_id = session.get("session_id")
    headers = {"X-Session-Id": session_id} if session_id else {}
    conversation = _input_items(params["input"])
    produced: list[dict[str, Any]] = []
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    turns = tool_calls = 0
    model_seconds = 0.0
    response: dict[str, Any] = {}
    for _ in range(runtime.max_steps):
        started = time.perf_counter()
        response = await _post(
            client,
            f"{runtime.model_url}/v1/responses",
            {**params, "input": conversation + produced},
        )
        model_seconds += time.perf_counter() - started
        turns += 1
        for key in usage:
            usage[key] += int((response.get("usage") or {}).get(key) or 0)
        items = response.get("output") or []
        produced.extend(items)
        calls = [item for item in items if item.get("type") == "function_call"]
        if not calls:
            break
        for call in calls:
            tool_calls += 1
            try:
                arguments = json.loads(call.get("arguments") or "{}")
            except json.JSONDecodeError:
                arguments = None
            if isinstance(arguments, dict):
                result = await _post(
                    client, f"{runtime.resources_url}/{call['name']}", arguments, headers=headers
                )
                result_text = json.dumps(result.get("output"))
            else:
                result_text = json.dumps({"error": "arguments are not a JSON object"})
            produced.append(
                {
                    "type": "function_call_output",
                    "call_id": call.get("call_id"),
                    "output": result_text,
                }
            )

    final = {**response, "output": produced, "usage": usage}
    verdict = await _post(
        client,
        f"{runtime.resources_url}/verify",
        {**task, "response": final, "session_id": session_id},
    )
    reward = verdict.pop("reward")
    # a verifier that reached no verdict (timeout, unreachable judge) marks the row the way
    # NeMo Gym does, so the collector sends it to the failures sidecar, not into the mean
    failure = {
        key: verdict.pop(key) for key in (FAILURE_CLASS_KEY, "failure_message") if key in verdict
    }
    return {
        **task,
        **failure,
        "reward": reward,
        "output": output_text(final),
        "response": final,
        "metrics": {
            "model_latency_s": round(model_seconds, 6),
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "turns": turns,
            "tool_calls": tool_calls,
        },
        "verification": verdict,
    }


def _summary(values: list[float], prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}mean/reward": statistics.fmean(values),
        f"{prefix}max/reward": max(values),
        f"{prefix}min/reward": min(values),
        f"{prefix}median/reward": statistics.median(values),
        f"{prefix}std/reward": statistics.pstdev(values),
    }


def aggregate_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """NeMo Gym's ``/aggregate_metrics`` answer for a collection's rows: reward statistics per
    task (``group_level_metrics``) and over all rows (``agent_metrics``, ``key_metrics``)."""
    by_task: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        reward = row.get("reward")
        if isinstance(reward, int | float) and not isinstance(reward, bool):
            by_task[int(row.get(TASK_INDEX_KEY) or 0)].append(float(reward))
    rewards = [reward for values in by_task.values() for reward in values]
    if not rewards:
        return {"agent_metrics": {}, "key_metrics": {}, "group_level_metrics": []}
    agent_metrics: dict[str, Any] = {
        **_summary(rewards),
        "n_rollouts": len(rewards),
        "n_tasks": len(by_task),
    }
    groups = [{TASK_INDEX_KEY: index, **_summary(by_task[index])} for index in sorted(by_task)]
    return {
        "agent_metrics": agent_metrics,
        "key_metrics": {"mean/reward": agent_metrics["mean/reward"]},
        "group_level_metrics": groups,
    }


def app_from_spec(spec: dict[str, Any]) -> FastAPI:
    """The agent server of a JSON spec (``servers.serve``)."""
    return create_agent_app(AgentRuntime.model_validate(spec))


def create_agent_app(runtime: AgentRuntime) -> FastAPI:
    """A FastAPI app for one agent."""
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state["client"] = httpx.AsyncClient(
            timeout=httpx.Timeout(runtime.timeout_s, connect=10.0),
            # A bounded pool: httpcore's upkeep grows with the pool's size on every request.
            limits=httpx.Limits(max_connections=128, max_keepalive_connections=128),
        )
        yield
        await state["client"].aclose()

    app = FastAPI(title=f"rollsweep agent {runtime.name}", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "agent": runtime.name}

    @app.post("/aggregate_metrics")
    async def aggregate(request: Request) -> dict[str, Any]:
        body = await request.json()
        rows = body.get("verify_responses") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise HTTPException(status_code=422, detail="expected {'verify_responses': [rows]}")
        return aggregate_metrics([row for row in rows if isinstance(row, dict)])

    @app.post("/run")
    async def run(request: Request) -> dict[str, Any]:
        task = await request.json()
        if not isinstance(task, dict) or not isinstance(task.get("responses_create_params"), dict):
            raise HTTPException(status_code=422, detail="a task needs 'responses_create_params'")
        try:
            return await run_rollout(state["client"], runtime, task)
        except StepFailed as error:
            status = error.status_code if error.status_code < 500 else 502
            # a rate limit passes through with its Retry-After, so the collector waits that long
            headers = {"Retry-After": error.retry_after} if error.retry_after else None
            raise HTTPException(status_code=status, detail=error.detail, headers=headers) from None
        except httpx.TransportError as error:
            raise HTTPException(
                status_code=502, detail=f"{type(error).__name__}: {error}"
            ) from None

    return app
