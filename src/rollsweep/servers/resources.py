"""The resources server: a verifier behind ``/seed_session``, ``/verify`` and tool endpoints."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request

from rollsweep.config import ResourcesServerConfig
from rollsweep.verifiers import load_verifier
from rollsweep.verifiers.base import VerifierError, VerifierFailure, normalize_result

#: Sessions kept for tool calls; old ones are dropped so an abandoned rollout cannot leak memory.
MAX_SESSIONS = 100_000


def app_from_spec(spec: dict[str, Any]) -> FastAPI:
    """The resources server of a JSON spec (``servers.serve``)."""
    return create_resources_app(ResourcesServerConfig.model_validate(spec))


def create_resources_app(config: ResourcesServerConfig) -> FastAPI:
    """A FastAPI app for one verifier (bundled name or user file, reloaded when it changes)."""
    verifier_spec = config.verifier
    load_verifier(verifier_spec)  # fail at start-up, not at the first request
    sessions: OrderedDict[str, dict[str, Any]] = OrderedDict()
    app = FastAPI(title=f"rollsweep resources server ({verifier_spec})")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "verifier": verifier_spec}

    @app.get("/tools")
    def tools() -> list[dict[str, Any]]:
        return list(load_verifier(verifier_spec).tool_specs)

    @app.post("/seed_session")
    async def seed_session(request: Request) -> dict[str, Any]:
        task = await request.json()
        session_id = uuid.uuid4().hex
        sessions[session_id] = task if isinstance(task, dict) else {}
        while len(sessions) > MAX_SESSIONS:
            sessions.popitem(last=False)
        return {"session_id": session_id}

    @app.post("/verify")
    def verify(body: dict[str, Any]) -> dict[str, Any]:
        response = body.get("response")
        if not isinstance(response, dict):
            raise HTTPException(status_code=422, detail="/verify needs a 'response' object")
        task = {k: v for k, v in body.items() if k not in ("response", "session_id")}
        if body.get("session_id"):
            sessions.pop(body["session_id"], None)
        try:
            verifier = load_verifier(verifier_spec)
            return normalize_result(verifier.verify(task, response))
        except VerifierFailure as failure:
            # NeMo Gym's convention: HTTP 200, reward 0.0 and _ng_failure_class, so the row
            # goes to the failures sidecar instead of counting as a wrong answer
            return failure.as_result()
        except VerifierError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None

    @app.post("/{tool_name}")
    def call_tool(
        tool_name: str, arguments: dict[str, Any], x_session_id: str | None = Header(default=None)
    ) -> dict[str, Any]:
        verifier = load_verifier(verifier_spec)
        tool = verifier.tools.get(tool_name)
        if tool is None:
            raise HTTPException(status_code=404, detail=f"unknown tool {tool_name!r}")
        task = sessions.get(x_session_id or "", {})
        try:
            return {"output": tool(arguments, task)}
        except (TypeError, ValueError, KeyError) as error:
            # A bad tool call is the model's mistake: report it back to the model as the result.
            return {"output": {"error": f"{type(error).__name__}: {error}"}}

    return app
