"""What every model backend is: it turns a Responses API request body into a Responses object."""

from __future__ import annotations

from typing import Any, Protocol


class UpstreamError(Exception):
    """The upstream answered with an error; carries its status so the server can pass it on."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class PromptTooLong(ValueError):
    """The prompt does not fit in one sequence's context."""


class Backend(Protocol):
    model_id: str

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
