"""The window is real: ``+num_samples_in_parallel=N`` puts exactly N rollouts in flight at the
agent while there is work for N, never more, in one process and shared by ``+num_workers``."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import ThreadedServer, read_rows, run_cli, write_tasks
from fastapi import FastAPI, Request

HOLD_S = 0.5


class Gauge:
    """Requests the agent holds right now, and the most it held at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.served = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1
            self.served += 1


def holding_agent(gauge: Gauge) -> FastAPI:
    """A ``/run`` agent that holds every rollout HOLD_S seconds, counting what it holds."""
    app = FastAPI()

    @app.post("/run")
    async def run(request: Request) -> dict:
        task = await request.json()
        gauge.enter()
        try:
            await asyncio.sleep(HOLD_S)
        finally:
            gauge.leave()
        return {**task, "reward": 1.0, "output": "held"}

    return app


@pytest.mark.parametrize(
    ("window", "workers", "n_tasks", "repeats"),
    [
        (240, 1, 240, 3),  # three full windows, one process
        (241, 2, 241, 3),  # an odd window shared by two worker processes
        (500, 1, 100, 2),  # a window wider than the work: all of it at once
    ],
)
def test_the_window_holds_exactly_n_in_flight(tmp_path, window, workers, n_tasks, repeats):
    gauge = Gauge()
    tasks = write_tasks(tmp_path / "tasks.jsonl", n_tasks)
    out = tmp_path / "out.jsonl"
    with ThreadedServer(holding_agent(gauge)) as agent:
        result = run_cli(
            "ng_collect_rollouts",
            f"+agent_url={agent.url}",
            f"+input_jsonl_fpath={tasks}",
            f"+output_jsonl_fpath={out}",
            f"+num_repeats={repeats}",
            f"+num_samples_in_parallel={window}",
            f"+num_workers={workers}",
            "+disable_aggregation=true",
            "+progress=false",
        )
    assert result.returncode == 0, result.stderr
    total = n_tasks * repeats
    assert gauge.served == total and len(read_rows(out)) == total
    assert gauge.peak == min(window, total), (gauge.peak, window)
