"""Shared helpers: task files, a simulated stack config on free loopback ports, CLI runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from rollsweep.servers.backends.simulated import with_answer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def math_task(index: int) -> dict[str, Any]:
    """An addition task whose requests carry its answer for the simulated policy."""
    a, b = 3 + index % 17, 5 + (index * 7) % 23
    return with_answer(
        {
            "task_id": f"t{index:04d}",
            "responses_create_params": {
                "input": [
                    {"role": "user", "content": f"What is {a} + {b}? Answer in \\boxed{{}}."}
                ],
                "max_output_tokens": 32,
            },
            "question": f"What is {a} + {b}?",
            "expected_answer": str(a + b),
            "verifier": "math",
        }
    )


def write_tasks(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps(math_task(i)) + "\n" for i in range(n)))
    return path


def write_stack_config(path: Path, **simulated: Any) -> Path:
    """A stack with the simulated backend and the bundled verifiers, on a private head port."""
    config = {
        "head_server": {"host": "127.0.0.1", "port": free_port()},
        "model_servers": {"sim": {"backend": "simulated", "simulated": simulated}},
        "resources_servers": {"bundled": {"verifier": "auto"}},
        "agents": {
            "my_agent": {"model_server": "sim", "resources_server": "bundled", "max_steps": 2}
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(
    *args: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a console script of this package in a subprocess."""
    script = Path(sys.executable).parent / args[0]
    command = [str(script), *args[1:]] if script.exists() else list(args)
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def collect(config: Path, tasks: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``ng_collect_rollouts`` with the agent ``my_agent`` of a stack config, tasks to out."""
    return run_cli(
        "ng_collect_rollouts",
        "+agent_name=my_agent",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={out}",
        f"+config_paths=[{config}]",
        *extra,
    )


def without_timing(row: dict) -> dict:
    """A row without its timing fields (wall-clock latency and creation time)."""
    row = json.loads(json.dumps(row))
    row["metrics"].pop("latency_s")
    row["metrics"].pop("model_latency_s", None)
    row["response"].pop("created_at")
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def sim_config(tmp_path: Path) -> Path:
    return write_stack_config(tmp_path / "stack.yaml")


class ThreadedServer:
    """A FastAPI app served by uvicorn on a free loopback port in a background thread."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_ng_run(config: Path) -> tuple[subprocess.Popen, str]:
    port = yaml.safe_load(config.read_text())["head_server"]["port"]
    script = Path(sys.executable).parent / "ng_run"
    process = subprocess.Popen(
        [str(script), f"+config_paths=[{config}]"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    head = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{head}/global_config", timeout=0.5).status_code == 200:
                return process, head
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(process.stderr.read())
        time.sleep(0.1)
    process.kill()
    raise AssertionError("ng_run did not come up")


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [
            pid
            for pid in alive
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]
        time.sleep(0.1)
    return alive
