"""``+num_workers=N``: several collector processes, one task-major output, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    REPO,
    collect,
    read_rows,
    run_cli,
    without_timing,
    write_stack_config,
    write_tasks,
)

from rollsweep.config import load_stack_config
from rollsweep.servers.stack import Stack


def collector(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "ng_collect_rollouts"
    return [str(script) if script.exists() else "ng_collect_rollouts", *args]


def checkpoints(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f".{output.name}.*.ckpt.jsonl"))


def lines(paths: list[Path]) -> int:
    return sum(path.read_bytes().count(b"\n") for path in paths if path.exists())


@pytest.fixture
def stack(tmp_path):
    config = write_stack_config(tmp_path / "stack.yaml", latency_ms=20)
    started = Stack(load_stack_config([config]), log_dir=tmp_path / "logs")
    started.start()
    yield started
    started.stop()


def test_workers_write_the_rows_of_one_worker_line_by_line(tmp_path, sim_config):
    """Through a stack the collector starts itself (worker processes spawned, as it has
    server threads): 1, 2 and 3 workers give the same output apart from timing fields."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 41)
    outputs = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"out{workers}.jsonl"
        result = collect(
            sim_config,
            tasks,
            out,
            "+num_repeats=3",
            "+num_samples_in_parallel=16",
            "+responses_create_params.temperature=0.7",
            f"+num_workers={workers}",
        )
        assert result.returncode == 0, result.stderr
        assert "123 rollouts" in result.stderr
        assert not checkpoints(out), "checkpoints removed after a complete run"
        aggregate = out.with_name(f"{out.stem}_aggregate_metrics.json")
        assert json.loads(aggregate.read_text())[0]["agent_metrics"], "one /aggregate_metrics"
        outputs[workers] = read_rows(out)
    one = outputs[1]
    assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in one] == [
        (task, repeat) for task in range(41) for repeat in range(3)
    ]
    for workers in (2, 3):
        assert [without_timing(r) for r in outputs[workers]] == [without_timing(r) for r in one]


def test_kill_9_of_a_multi_worker_run_then_resume_with_other_n(tmp_path, stack):
    """kill -9 of the parent stops its workers (checkpoint parts kept whole); a rerun with
    another number of workers resumes from all parts, and the output equals one worker's."""
    agent_url = stack.agent_urls()["my_agent"]
    tasks = write_tasks(tmp_path / "tasks.jsonl", 150)
    common = (
        f"+agent_url={agent_url}",
        f"+input_jsonl_fpath={tasks}",
        "+num_repeats=2",
        "+num_samples_in_parallel=4",
        "+seed=3",
        "+disable_aggregation=true",
    )
    reference = tmp_path / "reference.jsonl"
    result = subprocess.run(
        collector(*common, f"+output_jsonl_fpath={reference}"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr

    out = tmp_path / "out.jsonl"
    with open(tmp_path / "collector.log", "wb") as log:
        process = subprocess.Popen(
            collector(*common, f"+output_jsonl_fpath={out}", "+num_workers=2"),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 60
    while len(checkpoints(out)) < 2 or lines(checkpoints(out)) < 60:
        assert time.monotonic() < deadline and process.poll() is None, "no progress"
        time.sleep(0.02)
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 2
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "the workers stop when their parent is killed"
    kept = lines(checkpoints(out))
    assert 60 <= kept < 300
    assert not out.exists()

    result = subprocess.run(
        collector(*common, f"+output_jsonl_fpath={out}", "+num_workers=3"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert f"{kept} resumed from checkpoint" in result.stderr
    assert not checkpoints(out)
    assert [without_timing(r) for r in read_rows(out)] == [
        without_timing(r) for r in read_rows(reference)
    ]


def test_help_documents_num_workers():
    result = run_cli("ng_collect_rollouts", "--help")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if "+num_workers" in line)
    assert "task-major" in line and "default 1" in line
