"""Any OpenAI-compatible endpoint: Responses passed through, or Chat Completions converted."""

from __future__ import annotations

import os
from typing import Any

import httpx

from rollsweep.config import OpenAISettings
from rollsweep.errors import UsageError
from rollsweep.servers.backends.base import UpstreamError
from rollsweep.servers.conversion.requests import responses_request_to_chat
from rollsweep.servers.conversion.responses import chat_response_to_responses

#: Keys of our requests that an upstream Responses API does not accept.
_NOT_FOR_UPSTREAM_RESPONSES = ("seed",)


class OpenAIBackend:
    def __init__(self, settings: OpenAISettings) -> None:
        self.settings = settings
        self.model_id = settings.model
        headers = {}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        if not settings.base_url.startswith(("http://", "https://")):
            raise UsageError("must start with http:// or https://", key="openai.base_url")
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
        )

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        reply = await self._client.post(path, json=payload)
        if reply.status_code >= 400:
            raise UpstreamError(reply.status_code, reply.text[:500])
        return reply.json()

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.settings.api == "responses":
            payload = {k: v for k, v in body.items() if k not in _NOT_FOR_UPSTREAM_RESPONSES}
            payload["model"] = self.model_id
            return await self._post("/responses", payload)
        chat = responses_request_to_chat(body, model=self.model_id)
        result = await self._post("/chat/completions", chat)
        return chat_response_to_responses(result, request=body)

    async def aclose(self) -> None:
        await self._client.aclose()
