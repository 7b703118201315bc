"""`ng_run` serves a stack that `ng_collect_rollouts` uses; SIGTERM and kill -9 leave no orphan."""

from __future__ import annotations

import os
import signal

import httpx
import psutil
from conftest import collect, read_rows, start_ng_run, wait_gone, write_tasks


def test_collector_uses_the_running_stack_and_sigterm_stops_all(tmp_path, sim_config):
    process, head = start_ng_run(sim_config)
    try:
        served = httpx.get(f"{head}/global_config").json()
        assert set(served) == {"model", "resources", "agent"}
        assert "my_agent" in served["agent"]
        children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
        assert len(children) == 3
        tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
        out = tmp_path / "out.jsonl"
        result = collect(sim_config, tasks, out)
        assert result.returncode == 0, result.stderr
        assert "using the servers of ng_run" in result.stderr
        assert len(read_rows(out)) == 4
        model_url = served["model"]["sim"]
        assert httpx.get(f"{model_url}/stats").json()["requests"] == 4
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert wait_gone(children) == []


def test_kill_9_of_ng_run_takes_its_servers_down(sim_config):
    process, _ = start_ng_run(sim_config)
    children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert wait_gone(children) == []
