"""Model backends: each turns a Responses API request body into a Responses API object."""

from __future__ import annotations

from typing import Any, Protocol

from rollsweep.config import ModelServerConfig


class UpstreamError(Exception):
    """The upstream answered with an error; carries its status so the server can pass it on."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class Backend(Protocol):
    model_id: str

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


def create_backend(config: ModelServerConfig) -> Backend:
    """The backend a model server config names (imports only what that backend needs)."""
    if config.backend == "embedded":
        from rollsweep.servers.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(config.embedded)
    if config.backend == "openai":
        from rollsweep.servers.backends.openai import OpenAIBackend

        assert config.openai is not None  # checked by the config model
        return OpenAIBackend(config.openai)
    from rollsweep.servers.backends.simulated import SimulatedBackend

    return SimulatedBackend(config.simulated)
