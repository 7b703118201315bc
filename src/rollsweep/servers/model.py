"""The model server: ``POST /v1/responses`` (and ``/v1/chat/completions``) over a backend."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from rollsweep.config import ModelServerConfig
from rollsweep.servers.backends import UpstreamError, create_backend
from rollsweep.servers.conversion import chat_request_to_responses, responses_response_to_chat


def create_model_app(config: ModelServerConfig) -> FastAPI:
    """A FastAPI app serving one model backend; the backend loads before the port answers."""
    backend = create_backend(config)
    counters = {"requests": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await backend.aclose()

    app = FastAPI(title=f"rollsweep model server ({config.backend})", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": config.backend, "model": backend.model_id}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """Request counters, so tests can prove that a resumed run recomputed nothing."""
        return dict(counters)

    async def respond(body: dict[str, Any]) -> dict[str, Any]:
        counters["requests"] += 1
        try:
            return await backend.respond(body)
        except UpstreamError as error:
            raise HTTPException(status_code=error.status_code, detail=error.detail) from None

    @app.post("/v1/responses")
    async def responses(request: Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict) or "input" not in body:
            raise HTTPException(status_code=422, detail="expected a Responses request with 'input'")
        return await respond(body)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> dict[str, Any]:
        """The same model for Chat Completions clients (converted both ways)."""
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise HTTPException(status_code=422, detail="expected a chat request with 'messages'")
        return responses_response_to_chat(await respond(chat_request_to_responses(body)))

    return app
