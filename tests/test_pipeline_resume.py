"""kill -9 of a Snakemake sweep in the middle, then `--rerun-incomplete`: same aggregates."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import polars as pl
from conftest import write_tasks
from test_pipeline import snakemake, start_snakemake, write_pipeline

TIMING_COLUMNS = ("mean_latency_s",)


def sweep_config(workdir: Path) -> Path:
    workdir.mkdir()
    tasks = write_tasks(workdir / "tasks.jsonl", 30)
    experiment = {
        "agent_name": "my_agent",
        "input": str(tasks),
        "num_samples_in_parallel": 2,
        "num_repeats": 2,
        "grid": {"responses_create_params.temperature": [0.2, 0.8]},
    }
    return write_pipeline(workdir, {"sweep": experiment}, latency_ms=60)


def aggregates(workdir: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    out = workdir / "results" / "sweep"
    summary = pl.read_csv(out / "summary.csv").drop(TIMING_COLUMNS)
    per_task = pl.read_csv(out / "per_task.csv")
    best = json.loads((out / "best_params.json").read_text())
    return summary, per_task, best


def test_kill_9_mid_sweep_then_rerun_incomplete(tmp_path):
    reference = sweep_config(tmp_path / "reference")
    result = snakemake(tmp_path / "reference", reference)
    assert result.returncode == 0, result.stderr[-3000:]

    crashed = sweep_config(tmp_path / "crashed")
    workdir = tmp_path / "crashed"
    process = start_snakemake(workdir, crashed)
    # Wait until some rollouts are checkpointed, then kill the whole run (snakemake and jobs).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        checkpoints = list(workdir.glob("results/sweep/*/shards/.*.ckpt.jsonl"))
        if sum(len(p.read_bytes().splitlines()) for p in checkpoints) >= 20:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (workdir / "results/sweep/summary.csv").exists()

    result = snakemake(workdir, crashed, "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "removed the locks of an interrupted run" in result.stderr

    expected, got = aggregates(tmp_path / "reference"), aggregates(workdir)
    assert got[0].equals(expected[0])
    assert got[1].equals(expected[1])
    assert got[2] == expected[2]
