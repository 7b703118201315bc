"""Serving the viewer on 127.0.0.1 until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import socket
import threading
import webbrowser

import uvicorn

from rollsweep.errors import UsageError
from rollsweep.sockets import bind_socket
from rollsweep.viewer import DEFAULT_PORT, HOST
from rollsweep.viewer.app import create_app
from rollsweep.viewer.workspace import Workspace


def _listen(port: int) -> socket.socket:
    try:
        return bind_socket(HOST, port)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {HOST}:{port}: {error.strerror} (choose another port, or 0 for "
            "any free port)",
            key="port",
        ) from None


def _describe(workspace: Workspace) -> str:
    described = ", ".join(source.label for source in workspace.sources[:4])
    if len(workspace.sources) > 4:
        described += f", … ({len(workspace.sources)} files)"
    return described


def _open_browser_when_started(server: uvicorn.Server, url: str) -> None:
    while not server.started and not server.should_exit:
        threading.Event().wait(0.02)
    if server.started:
        webbrowser.open(url)


def serve(paths: list[str], *, port: int = DEFAULT_PORT, open_browser: bool = False) -> int:
    """Index the sources, serve the viewer on 127.0.0.1 until Ctrl-C or SIGTERM."""
    workspace = Workspace(paths)  # UsageError for a bad path, before any port is taken
    sock = _listen(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    print(f"rollsweep viewer: {url}  ({_describe(workspace)}; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(workspace),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    if open_browser:
        threading.Thread(
            target=_open_browser_when_started, args=(server, url), name="browser", daemon=True
        ).start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        workspace.close()
    return 0
