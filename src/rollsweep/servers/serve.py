"""Entry point of one server process: ``python -m rollsweep.servers.serve KIND SPEC_JSON --fd N``.

The parent (the stack) binds the listening socket and hands it over, so ports never race.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import socket
import sys

import uvicorn
from fastapi import FastAPI

#: The module of each server kind; each has ``app_from_spec(spec) -> FastAPI``. A process loads
#: only its own kind's module (an agent never imports the verifiers or the model backends), which
#: keeps the start of a stack short.
SERVER_MODULES = {
    "model": "rollsweep.servers.model",
    "resources": "rollsweep.servers.resources",
    "agent": "rollsweep.servers.agent",
}


def build_app(kind: str, spec: dict) -> FastAPI:
    """The app of one server kind from its JSON spec."""
    if kind not in SERVER_MODULES:
        raise SystemExit(f"unknown server kind {kind!r}")
    return importlib.import_module(SERVER_MODULES[kind]).app_from_spec(spec)


def serve_app(app: FastAPI, sock: socket.socket) -> None:
    """Serve until SIGINT/SIGTERM on an already bound socket."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        backlog=16384,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["model", "resources", "agent"])
    parser.add_argument("spec", help="the server's config as JSON")
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    try:
        app = build_app(args.kind, json.loads(args.spec))
    except Exception as error:  # the parent shows this line as the reason the stack failed
        print(f"error: {args.kind} server failed to start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    serve_app(app, sock)


if __name__ == "__main__":
    main()
