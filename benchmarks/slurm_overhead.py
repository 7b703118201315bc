"""What running the pipeline on SLURM adds per job: the same small workflow locally and through
profiles/slurm on the one-node test cluster, simulated model.

    sudo ../shared/cluster/slurm-up.sh up        # or WITH_DBD=1 ... for sacct
    python benchmarks/slurm_overhead.py [--shards 8] [--tasks 20]
    sudo ../shared/cluster/slurm-up.sh down

Three runs of one configuration collected as N repeat shards (one SLURM job each): locally
(``--profile profiles/local --cores 2``), on SLURM with the profile as is (each job starts its own
agent/verifier/model servers), and on SLURM with ``start_servers=True`` (jobs use the workflow's
servers on the submit host). From SLURM's records (jobcomp file, or sacct with accounting;
1 s resolution): submit -> start latency of the first wave and the job run times. From the shard
logs: the collector's own time, so that run time - collection time is what each job adds (two
Snakemake start-ups -- the job and its step -- and, without workflow servers, starting them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import record
from conftest import write_stack_config, write_tasks

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
INIT_S = 2  # --slurm-init-seconds-before-status-checks: also the poll interval once jobs end


def run(workdir: Path, config: Path, *extra: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), *extra],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"snakemake failed in {workdir}:\n{done.stderr[-3000:]}")
    return wall


def job_ids(workdir: Path) -> list[int]:
    logs = (workdir / ".snakemake" / "slurm_logs" / "rule_collect_shard").glob("*/*.log")
    return sorted(int(log.stem) for log in logs if log.stem.isdigit())


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def job_times(ids: list[int]) -> dict[int, tuple[dt.datetime, dt.datetime, dt.datetime]]:
    """Job id -> (submit, start, end), from sacct when accounting works, else the jobcomp file."""
    wanted = set(ids)
    times: dict[int, tuple[dt.datetime, dt.datetime, dt.datetime]] = {}
    sacct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,End", "-j", ",".join(map(str, ids))],
        capture_output=True,
        text=True,
    )
    if sacct.returncode == 0:
        for line in sacct.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 4 and parts[0].isdigit() and int(parts[0]) in wanted:
                times[int(parts[0])] = (_time(parts[1]), _time(parts[2]), _time(parts[3]))
    jobcomp = Path("/var/log/slurm/jobcomp.log")
    if len(times) < len(wanted) and jobcomp.exists():
        for line in jobcomp.read_text().splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields.get("JobId", "").isdigit() and int(fields["JobId"]) in wanted:
                times[int(fields["JobId"])] = (
                    _time(fields["SubmitTime"]),
                    _time(fields["StartTime"]),
                    _time(fields["EndTime"]),
                )
    return times


def collect_seconds(workdir: Path) -> list[float]:
    """The collector's own time per shard, from its summary line in the shard logs."""
    seconds = []
    for log in (workdir / "results").glob("*/*/logs/r*-c*.log"):
        match = re.search(r"retries(?:, [^,]+)*?, ([\d.]+) s ->", log.read_text())
        if match:
            seconds.append(float(match.group(1)))
    return seconds


def slurm_figures(workdir: Path, wall: float, slots: int) -> dict:
    ids = job_ids(workdir)
    times = job_times(ids)
    if len(times) != len(ids):
        sys.exit(f"no SLURM record for some jobs of {workdir}: {sorted(set(ids) - set(times))}")
    first_wave = sorted(times.values(), key=lambda t: t[0])[:slots]
    runs = [(end - start).total_seconds() for _, start, end in times.values()]
    collect = collect_seconds(workdir)
    return {
        "wall_s": round(wall, 1),
        "jobs": len(ids),
        "submit_to_start_s": round(
            statistics.mean((start - submit).total_seconds() for submit, start, _ in first_wave), 1
        ),
        "job_run_s_mean": round(statistics.mean(runs), 1),
        "collect_s_mean": round(statistics.mean(collect), 2) if collect else None,
        "in_job_overhead_s": round(statistics.mean(runs) - statistics.mean(collect or [0]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8, help="repeat shards = SLURM jobs")
    parser.add_argument("--tasks", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode:
        sys.exit("no SLURM cluster answers: sudo ../shared/cluster/slurm-up.sh up first")
    slots = int(
        subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[
            0
        ]
    )

    with tempfile.TemporaryDirectory(prefix="rollsweep-slurm-bench-") as tmp:
        root = Path(tmp)
        tasks = write_tasks(root / "tasks.jsonl", args.tasks)
        stack = write_stack_config(root / "stack.yaml")
        config = root / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "stack_config": [str(stack)],
                    "results_dir": "results",
                    "stats": {"n_bootstrap": 200},
                    "experiments": {
                        "bench": {
                            "agent_name": "my_agent",
                            "input": str(tasks),
                            "num_repeats": args.shards,
                            "num_samples_in_parallel": 4,
                        }
                    },
                }
            )
        )
        slurm = [
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--slurm-init-seconds-before-status-checks",
            str(INIT_S),
        ]
        dirs = {name: root / name for name in ("local", "slurm", "slurm_head")}
        for path in dirs.values():
            path.mkdir()
        local_wall = run(
            dirs["local"], config, "--profile", str(REPO / "profiles" / "local"), "--cores", "2"
        )
        print(f"local: {local_wall:.1f} s")
        own = slurm_figures(dirs["slurm"], run(dirs["slurm"], config, *slurm), slots)
        print(f"SLURM, per-job servers: {own}")
        head = slurm_figures(
            dirs["slurm_head"],
            run(dirs["slurm_head"], config, *slurm, "--config", "start_servers=True"),
            slots,
        )
        print(f"SLURM, workflow servers: {head}")

    shards = args.shards
    figures = {
        "command": " ".join(["python benchmarks/slurm_overhead.py", *sys.argv[1:]]),
        "cluster": f"one node, {slots} CPUs, Slurm "
        + subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.split()[-1],
        "shards": shards,
        "tasks_per_shard": args.tasks,
        "init_seconds_before_status_checks": INIT_S,
        "local_wall_s": round(local_wall, 1),
        "slurm_per_job_servers": own,
        "slurm_workflow_servers": head,
        "extra_wall_per_job_s": round((own["wall_s"] - local_wall) / shards, 1),
        "extra_wall_per_job_workflow_servers_s": round((head["wall_s"] - local_wall) / shards, 1),
    }
    print(json.dumps(figures, indent=2))
    record("slurm_overhead", figures)


if __name__ == "__main__":
    main()
