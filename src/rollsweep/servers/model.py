"""The model server: ``POST /v1/responses`` (and ``/v1/chat/completions``) over a backend."""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from rollsweep.config import ModelServerConfig
from rollsweep.protocol import request_seed
from rollsweep.servers.backends.base import Backend, UpstreamError
from rollsweep.servers.backends.embedded import EmbeddedBackend
from rollsweep.servers.backends.openai import OpenAIBackend
from rollsweep.servers.backends.simulated import InjectedFault, SimulatedBackend
from rollsweep.servers.conversion.requests import chat_request_to_responses
from rollsweep.servers.conversion.responses import complete_response, responses_response_to_chat


class _RawSendApp(FastAPI):
    """FastAPI that keeps the server's own ``send`` in the scope, to drop connections on purpose."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["rollsweep.raw_send"] = send
        await super().__call__(scope, receive, send)


async def drop_connection(request: Request) -> Response:
    """Close the client's connection without an answer (an injected fault).

    Under uvicorn the connection's transport is aborted, so the client reads nothing at all
    ("server disconnected without sending a response"). Elsewhere the status line goes out and
    the body never comes (the server closes a response it did not complete).
    """
    raw_send = request.scope.get("rollsweep.raw_send")
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        for _ in range(3):  # let the server see the connection is gone before we return
            await asyncio.sleep(0)
        return Response(status_code=500)
    assert raw_send is not None
    await raw_send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]}
    )
    raise ConnectionAbortedError("injected dropped connection")


def create_backend(config: ModelServerConfig) -> Backend:
    """The backend a model server config names."""
    if config.backend == "embedded":
        return EmbeddedBackend(config.embedded)
    if config.backend == "openai":
        assert config.openai is not None  # checked by the config model
        return OpenAIBackend(config.openai)
    return SimulatedBackend(config.simulated)


def _secrets(config: ModelServerConfig) -> list[str]:
    """API keys this server holds, so that no error message passes them on."""
    name = config.openai.api_key_env if config.openai is not None else None
    value = os.environ.get(name) if name else None
    return [value] if value and len(value) >= 4 else []


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


class ModelService:
    """What the model server's routes share: the backend, its secrets and request counters."""

    def __init__(self, config: ModelServerConfig) -> None:
        self.config = config
        self.backend = create_backend(config)
        self.secrets = _secrets(config)
        self.counters = {"requests": 0, "completed": 0}

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        """The backend's Responses object for a request, with every required field."""
        self.counters["requests"] += 1
        # NeMo Gym sends the seed inside metadata.extra_body; the backends read it at the top.
        seed = request_seed(body)
        if seed is not None:
            body = {**body, "seed": seed}
        try:
            answer = complete_response(await self.backend.respond(body), body)
        except UpstreamError as error:
            detail = _redact(error.detail, self.secrets)
            raise HTTPException(status_code=error.status_code, detail=detail) from None
        self.counters["completed"] += 1
        return answer


async def injected_response(request: Request, fault: InjectedFault) -> Response:
    """What the client sees of a fault the simulated backend injected."""
    if fault.kind == "error_429":
        seconds = fault.retry_after_s or 0.0
        shown = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
        return JSONResponse(
            {"detail": "injected fault: rate limited"},
            status_code=429,
            headers={"Retry-After": shown},
        )
    if fault.kind == "drop_connection":
        return await drop_connection(request)
    return JSONResponse({"detail": "injected fault: internal error"}, status_code=500)


router = APIRouter()


def _service(request: Request) -> ModelService:
    return request.app.state.service


Service = Annotated[ModelService, Depends(_service)]


@router.get("/health")
async def health(service: Service) -> dict[str, Any]:
    return {"status": "ok", "backend": service.config.backend, "model": service.backend.model_id}


@router.get("/stats")
async def stats(service: Service) -> dict[str, Any]:
    """Request counters, so tests can prove that a resumed run recomputed nothing."""
    faults = getattr(service.backend, "faults", None)
    injected = dict(faults.injected) if faults is not None else {}
    return {**service.counters, "faults": injected}


@router.post("/v1/responses")
async def responses(request: Request, service: Service) -> Any:
    body = await request.json()
    if not isinstance(body, dict) or "input" not in body:
        raise HTTPException(status_code=422, detail="expected a Responses request with 'input'")
    try:
        return await service.respond(body)
    except InjectedFault as fault:
        return await injected_response(request, fault)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, service: Service) -> Any:
    """The same model for Chat Completions clients (converted both ways)."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise HTTPException(status_code=422, detail="expected a chat request with 'messages'")
    try:
        return responses_response_to_chat(await service.respond(chat_request_to_responses(body)))
    except InjectedFault as fault:
        return await injected_response(request, fault)


def app_from_spec(spec: dict[str, Any]) -> FastAPI:
    """The model server of a JSON spec (``servers.serve``)."""
    return create_model_app(ModelServerConfig.model_validate(spec))


def create_model_app(config: ModelServerConfig) -> FastAPI:
    """A FastAPI app serving one model backend; the backend loads before the port answers."""
    service = ModelService(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await service.backend.aclose()

    app = _RawSendApp(title=f"rollsweep model server ({config.backend})", lifespan=lifespan)
    app.state.service = service
    app.include_router(router)
    return app
