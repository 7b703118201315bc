"""``ng_run`` (and ``rollsweep serve``): start all servers of a stack config and a head server
that lists them; stop all on exit."""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn

from rollsweep.cli.args import parse_overrides
from rollsweep.config import HeadServerConfig, load_stack_config
from rollsweep.errors import UsageError
from rollsweep.servers.stack import Stack, create_head_app
from rollsweep.sockets import bind_socket


def _listen(head: HeadServerConfig) -> socket.socket:
    try:
        return bind_socket(head.host, head.port)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {head.host}:{head.port}: {error.strerror} "
            "(another ng_run? choose +head_server.port=N)",
            key="+head_server.port",
        ) from None


def _announce(stack: Stack, head_url: str) -> None:
    for kind, servers in stack.urls().items():
        for name, url in servers.items():
            print(f"{kind:<9} {name:<24} {url}", file=sys.stderr)
    print(f"head      {head_url}  (Ctrl-C stops all)", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    """Serve until Ctrl-C or SIGTERM; ``+config_paths`` picks the stack config files."""
    overrides = parse_overrides(argv)
    paths = overrides.pop("config_paths", None)
    if isinstance(paths, str):
        paths = [paths]
    config = load_stack_config(paths, overrides)
    head_socket = _listen(config.head_server)
    stack = Stack(config)
    try:
        stack.start()
        head_url = f"http://{config.head_server.host}:{head_socket.getsockname()[1]}"
        head = create_head_app(stack, head_url)
        _announce(stack, head_url)
        server = uvicorn.Server(uvicorn.Config(head, log_level="warning", access_log=False))
        asyncio.run(server.serve(sockets=[head_socket]))
    finally:
        stack.stop()
    return 0
