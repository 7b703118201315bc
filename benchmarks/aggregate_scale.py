"""Aggregation at scale: polars on 1,000,000 rollouts beside jq, and the dry run of a big grid.

    python benchmarks/aggregate_scale.py [--rows 1000000] [--grid 10]

Figures (issue 4): aggregation wall time and peak memory for one experiment file of N rollouts
(every table of `write_experiment_outputs`), `jq -s 'map(.reward) | add/length'` on the same
file (time and peak memory), and `snakemake -n` on a grid of grid**3 configurations.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

REPO = Path(__file__).resolve().parents[1]


def write_rollouts(path: Path, rows: int, repeats: int = 5) -> None:
    """Rows shaped like the collector's (small response), rewards 0 / 0.5 / 1."""
    rng = random.Random(0)
    with open(path, "wb") as handle:
        for i in range(rows):
            task, repeat = divmod(i, repeats)
            reward = rng.choice((0.0, 0.0, 0.5, 1.0))
            row = {
                "task_id": f"task-{task}",
                "responses_create_params": {
                    "input": [{"role": "user", "content": f"What is {task} + 1?"}],
                    "temperature": 0.5,
                    "seed": i,
                },
                "expected_answer": str(task + 1),
                "reward": reward,
                "output": f"The answer is \\boxed{{{task + int(reward)}}}.",
                "response": {
                    "id": f"resp_{i}",
                    "output": [{"type": "message", "role": "assistant", "content": []}],
                    "usage": {"input_tokens": 40, "output_tokens": 12},
                },
                "_ng_task_index": task,
                "_ng_rollout_index": repeat,
                "metrics": {
                    "latency_s": 0.5,
                    "model_latency_s": 0.45,
                    "input_tokens": 40,
                    "output_tokens": 12,
                    "turns": 1,
                    "tool_calls": 0,
                },
                "params": {"temperature": 0.5},
                "seed": i,
                "verification": {"extracted_answer": str(task)},
            }
            handle.write(orjson.dumps(row) + b"\n")


#: Runs a command and prints its peak RSS: a fresh parent per command, so RUSAGE_CHILDREN's
#: high-water mark belongs to that command alone.
PEAK_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=sys.stderr); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def timed_child(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) of a command, and its stdout."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, *command], capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - started
    return wall, int(done.stdout.strip()) / 1024, done.stderr


AGGREGATE = textwrap.dedent(
    """
    import sys
    from rollsweep.analysis.outputs import write_experiment_outputs
    write_experiment_outputs(sys.argv[2], [({"temperature": 0.5}, sys.argv[1], None)])
    """
)


def dry_run_grid(workdir: Path, size: int) -> tuple[float, int]:
    tasks = workdir / "tasks.jsonl"
    tasks.write_text(
        '{"responses_create_params": {"input": "1+1?"}, "expected_answer": "2"}\n' * 10
    )
    step = 1 / size
    grid = {
        "responses_create_params.temperature": [round(0.1 + i * step, 4) for i in range(size)],
        "responses_create_params.top_p": [round(0.5 + i * 0.5 / size, 4) for i in range(size)],
        "responses_create_params.max_output_tokens": [32 + 8 * i for i in range(size)],
    }
    config = {
        "stack_config": [str(REPO / "config" / "servers.yaml")],
        "experiments": {"big": {"input": str(tasks), "grid": grid}},
    }
    path = workdir / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(path),
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    jobs = 0
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            jobs = int(parts[1])
    return wall, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--grid", type=int, default=10, help="values per dimension (3 dims)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rollouts = workdir / "rollouts.jsonl"
        started = time.perf_counter()
        write_rollouts(rollouts, args.rows)
        size_mb = rollouts.stat().st_size / 2**20
        print(
            f"wrote {args.rows:,} rows ({size_mb:.0f} MiB) in {time.perf_counter() - started:.1f} s"
        )

        figures: dict = {"rows": args.rows, "file_mib": round(size_mb)}
        if shutil.which("jq"):
            wall, peak, out = timed_child(["jq", "-s", "map(.reward) | add/length", str(rollouts)])
            figures["jq_s"], figures["jq_peak_mib"] = round(wall, 2), round(peak)
            figures["jq_mean"] = float(out)
            print(f"jq -s 'map(.reward)|add/length': {wall:.1f} s, peak {peak:.0f} MiB")
        wall, peak, _ = timed_child(
            [sys.executable, "-c", AGGREGATE, str(rollouts), str(workdir / "out")]
        )
        figures["aggregate_s"], figures["aggregate_peak_mib"] = round(wall, 2), round(peak)
        print(f"rollsweep aggregation (all tables): {wall:.1f} s, peak {peak:.0f} MiB")
        summary = (workdir / "out" / "summary.csv").read_text().splitlines()
        print("summary:", summary[1][:100])
        if "jq_s" in figures:
            figures["speedup_vs_jq"] = round(figures["jq_s"] / figures["aggregate_s"], 1)

        wall, jobs = dry_run_grid(workdir, args.grid)
        figures["grid_points"] = args.grid**3
        figures["dry_run_s"], figures["dry_run_jobs"] = round(wall, 2), jobs
        print(f"snakemake -n on a {args.grid**3}-point grid: {wall:.1f} s ({jobs} jobs)")
    record("aggregate_scale", figures)


if __name__ == "__main__":
    main()
