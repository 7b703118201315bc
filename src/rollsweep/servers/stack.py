"""Start the servers of a config as child processes, wait until they answer, stop them all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rollsweep.children import die_with_parent
from rollsweep.config import StackConfig
from rollsweep.errors import ServerUnavailable
from rollsweep.protocol import (
    HEAD_SERVER_KEY,
    decode_config_dict,
    encode_config_dict,
    server_entry,
)
from rollsweep.sockets import bind_socket

START_TIMEOUT_S = 120.0
#: Where a workflow tells its collection jobs about the head server it started.
HEAD_URL_ENV = "ROLLSWEEP_HEAD_URL"


@dataclass
class ServerProcess:
    name: str
    kind: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def last_log_line(self) -> str:
        try:
            lines = [
                line for line in self.log_path.read_text(errors="replace").splitlines() if line
            ]
        except FileNotFoundError:
            return ""
        errors = [line for line in lines if line.startswith("error:")]
        return (errors or lines or [""])[-1]


@dataclass
class Stack:
    """The servers of one config (or the subset that some agents need), as child processes."""

    config: StackConfig
    agents: list[str] | None = None
    host: str = "127.0.0.1"
    log_dir: Path | None = None
    servers: dict[str, ServerProcess] = field(default_factory=dict)

    def _needed(self) -> tuple[list[str], list[str], list[str]]:
        """(model servers, resources servers, agents) to start: all, or what the agents use."""
        if self.agents is None:
            config = self.config
            return list(config.model_servers), list(config.resources_servers), list(config.agents)
        models = sorted({self.config.agents[a].model_server for a in self.agents})
        resources = sorted({self.config.agents[a].resources_server for a in self.agents})
        return models, resources, list(self.agents)

    def _spawn(self, key: str, kind: str, spec: dict[str, Any], sock: socket.socket) -> None:
        assert self.log_dir is not None
        log_path = self.log_dir / f"{key.replace(':', '_')}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        port = sock.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "rollsweep.servers.serve",
            kind,
            json.dumps(spec),
            "--fd",
            str(sock.fileno()),
        ]
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(sock.fileno(),),
            preexec_fn=die_with_parent,
        )
        log.close()
        sock.close()
        self.servers[key] = ServerProcess(
            key, kind, f"http://{self.host}:{port}", process, log_path
        )

    def start(self, timeout_s: float = START_TIMEOUT_S) -> dict[str, str]:
        """Start every needed server at once; return agent name -> URL once all answer."""
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="rollsweep-servers-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        models, resources, agents = self._needed()
        sockets = {f"model:{name}": bind_socket(self.host) for name in models} | {
            f"resources:{name}": bind_socket(self.host) for name in resources
        }
        agent_sockets = {f"agent:{name}": bind_socket(self.host) for name in agents}
        try:
            for name in models:
                spec = self.config.model_servers[name].model_dump()
                self._spawn(f"model:{name}", "model", spec, sockets[f"model:{name}"])
            for name in resources:
                spec = self.config.resources_servers[name].model_dump()
                self._spawn(f"resources:{name}", "resources", spec, sockets[f"resources:{name}"])
            for name in agents:
                agent = self.config.agents[name]
                spec = {
                    "name": name,
                    "model_url": self.servers[f"model:{agent.model_server}"].url,
                    "resources_url": self.servers[f"resources:{agent.resources_server}"].url,
                    "max_steps": agent.max_steps,
                }
                self._spawn(f"agent:{name}", "agent", spec, agent_sockets[f"agent:{name}"])
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self.agent_urls()

    def agent_urls(self) -> dict[str, str]:
        return {
            key.split(":", 1)[1]: server.url
            for key, server in self.servers.items()
            if server.kind == "agent"
        }

    def urls(self) -> dict[str, dict[str, str]]:
        """Every server's URL by kind, as ng_run's head server reports them."""
        grouped: dict[str, dict[str, str]] = {"model": {}, "resources": {}, "agent": {}}
        for key, server in self.servers.items():
            grouped[server.kind][key.split(":", 1)[1]] = server.url
        return grouped

    def wait_ready(self, timeout_s: float) -> None:
        """Poll each server's /health; fail with its log's last line if one dies first."""
        deadline = time.monotonic() + timeout_s
        pending = dict(self.servers)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for key, server in list(pending.items()):
                    code = server.process.poll()
                    if code is not None:
                        raise ServerUnavailable(
                            f"{server.kind} server {key} exited with status {code} during "
                            f"start-up: {server.last_log_line()} (log: {server.log_path})"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{server.url}/health").status_code == 200:
                            del pending[key]
                if pending and time.monotonic() > deadline:
                    names = ", ".join(pending)
                    raise ServerUnavailable(f"servers not ready after {timeout_s:.0f} s: {names}")
                if pending:
                    time.sleep(0.05)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every child, then SIGKILL what is still alive after the grace period."""
        for server in self.servers.values():
            if server.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for server in self.servers.values():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                server.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    server.process.kill()
                server.process.wait()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def discover(head_url: str, timeout_s: float = 0.5) -> dict[str, Any] | None:
    """The config dict a head server reports (rollsweep's ``ng_run`` or NeMo Gym's), read from
    ``GET /global_config_dict_yaml``; None when nothing answers there."""
    try:
        reply = httpx.get(f"{head_url.rstrip('/')}/global_config_dict_yaml", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    try:
        return decode_config_dict(reply.text)
    except ValueError:
        return None


def config_dict(stack: Stack, head_url: str) -> dict[str, Any]:
    """The stack as NeMo Gym's head describes its servers, so NeMo Gym's collector finds them:
    ``head_server``, then ``<name>: {<kind section>: {<type>: {host, port, ...}}}``."""
    head = httpx.URL(head_url)
    described: dict[str, Any] = {HEAD_SERVER_KEY: {"host": head.host, "port": head.port}}
    config = stack.config
    for key, server in stack.servers.items():
        kind, name = key.split(":", 1)
        settings: dict[str, Any] = {}
        if kind == "agent":
            agent = config.agents[name]
            settings = {
                "model_server": {"type": "responses_api_models", "name": agent.model_server},
                "resources_server": {"type": "resources_servers", "name": agent.resources_server},
                "max_steps": agent.max_steps,
            }
        elif kind == "model":
            settings = {"backend": config.model_servers[name].backend}
        else:
            settings = {"verifier": config.resources_servers[name].verifier}
        entry_name = name if name not in described else f"{name}_{kind}"
        described[entry_name] = server_entry(kind, f"rollsweep_{kind}", server.url, **settings)
    return described


def create_head_app(stack: Stack, head_url: str) -> Any:
    """The head server: ``/global_config_dict_yaml`` as NeMo Gym's head answers it (YAML text
    in a JSON string), and ``/global_config`` with the servers' URLs by kind."""
    # fastapi and uvicorn are heavy, and the Snakefile imports this module while it is parsed
    # (server discovery): only a process that serves loads them
    from fastapi import FastAPI

    head = FastAPI(title="rollsweep head server")
    head.get("/global_config_dict_yaml")(lambda: encode_config_dict(config_dict(stack, head_url)))
    head.get("/global_config")(stack.urls)
    head.get("/health")(lambda: {"status": "ok"})
    return head


@dataclass
class BackgroundStack:
    """A stack plus its head server in a thread: the servers of one Snakemake run."""

    stack: Stack
    head_url: str = ""
    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> str:
        import uvicorn  # heavy: see create_head_app

        self.stack.start()
        sock = bind_socket(self.stack.host, 0)
        self.head_url = f"http://{self.stack.host}:{sock.getsockname()[1]}"
        head = create_head_app(self.stack, self.head_url)
        config = uvicorn.Config(head, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # the main thread owns signals
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.head_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.stack.stop()
