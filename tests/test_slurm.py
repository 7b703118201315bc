"""The pipeline on a real one-node SLURM cluster through profiles/slurm (simulated model; the
embedded model for an adaptive race).

The cluster comes from ../shared/cluster/slurm-up.sh (Debian's slurmctld/slurmd/munge): .ci/run
brings it up before the tests and down after; when it is not running, the fixture starts it and
stops it again. Skipped only when not root or when the script is missing.

Checked: every collection shard runs as a SLURM job (a job id per shard in the plugin's job logs,
and SLURM's own record of that job), the outputs equal those of a local run with the same seeds,
both ways of reaching the agent servers work (each job starts its own -- the profile's default,
right for a real cluster -- or the workflow's servers on the submit host), and a failing shard is
FAILED in SLURM, fails the run, and a rerun collects only what is missing. (That chunked and
repeat-sharded collection gives the rows of one run is
tests/test_pipeline.py::test_chunked_and_sharded_collection_equals_one_run.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import REPO, free_port, read_rows, write_stack_config, write_tasks
from test_race import round_files

SLURM_UP = REPO.parent / "shared" / "cluster" / "slurm-up.sh"
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
#: The profile as users run it, with short waits for job states (the cluster README's pitfall;
#: a test's jobs take seconds, not the hours the profile's defaults are made for).
SLURM = [
    "--profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
]
LOCAL = ["--profile", str(REPO / "profiles" / "local"), "--cores", "2"]
#: Columns that measure time, not what the rollouts were.
TIMING_COLUMNS = ("mean_latency_s",)

pytestmark = [
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0, reason="slurm-up.sh runs as root"
    ),
    pytest.mark.skipif(not SLURM_UP.exists(), reason=f"{SLURM_UP} is missing"),
]


def cluster_answers(wait_s: float = 0) -> bool:
    """slurmctld answers and the node can take jobs (idle, or busy with other jobs; a node that
    is still completing the previous job counts, so wait for it up to ``wait_s``)."""
    if shutil.which("sinfo") is None:
        return False
    deadline = time.monotonic() + wait_s
    while True:
        try:
            done = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            done = None
        states = {s.strip().rstrip("*~#!%$@^-+") for s in done.stdout.split()} if done else set()
        if done is not None and done.returncode == 0 and states & {"idle", "mix", "alloc"}:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster: the one .ci/run started, or one this module starts and stops."""
    started = False
    if not cluster_answers(wait_s=5):
        up = subprocess.run(
            ["bash", str(SLURM_UP), "up"], capture_output=True, text=True, timeout=600
        )
        started = True
        if up.returncode != 0:
            subprocess.run(["bash", str(SLURM_UP), "down"], capture_output=True, timeout=120)
            pytest.fail(f"slurm-up.sh up failed: {up.stdout[-2000:]}{up.stderr[-2000:]}")
    try:
        assert cluster_answers(wait_s=60), "the SLURM node takes no jobs"
        yield
    finally:
        if started:
            subprocess.run(["bash", str(SLURM_UP), "down"], capture_output=True, timeout=120)


def snakemake(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=900,
    )


def slurm_jobs(workdir: Path, rule: str = "collect_shard") -> dict[str, list[int]]:
    """Wildcards -> SLURM job ids of a rule, from the plugin's per-job logs (``JOBID.log``)."""
    root = workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}"
    jobs: dict[str, list[int]] = {}
    for log in sorted(root.glob("*/*.log")):
        if log.stem.isdigit():
            jobs.setdefault(log.parent.name, []).append(int(log.stem))
    return jobs


def slurm_state(job_id: int) -> str:
    """SLURM's own record of a job: scontrol (MinJobAge=300 keeps it), else sacct, else jobcomp."""
    done = subprocess.run(
        ["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True
    )
    if match := re.search(r"\bJobState=(\S+)", done.stdout):
        return match.group(1)
    done = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job_id)],
        capture_output=True,
        text=True,
    )
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.split()[0]
    jobcomp = Path("/var/log/slurm/jobcomp.log")
    if jobcomp.exists():
        for line in jobcomp.read_text().splitlines():
            if line.startswith(f"JobId={job_id} ") and (
                match := re.search(r"JobState=(\S+)", line)
            ):
                return match.group(1)
    return "UNKNOWN"


def shard_names(experiment: str, configs: list[str], shards: list[str]) -> set[str]:
    """The plugin's wildcard directory names (``experiment_config_shard``)."""
    return {f"{experiment}_{config}_{shard}" for config in configs for shard in shards}


def write_config(path: Path, stack: Path, experiments: dict) -> Path:
    config = {
        "stack_config": [str(stack)],
        "results_dir": "results",
        "seed": 0,
        "stats": {"n_bootstrap": 500},
        "experiments": experiments,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def without_timing(row: dict) -> dict:
    row = json.loads(json.dumps(row))
    for key in ("latency_s", "model_latency_s"):
        row.get("metrics", {}).pop(key, None)
    row.get("response", {}).pop("created_at", None)
    return row


def assert_same_results(local: Path, cluster: Path, experiment: str) -> None:
    """Summary (but for timing), per-task, best parameters and rollouts are equal."""
    a, b = local / "results" / experiment, cluster / "results" / experiment
    summary_a = pl.read_csv(a / "summary.csv").drop(TIMING_COLUMNS)
    summary_b = pl.read_csv(b / "summary.csv").drop(TIMING_COLUMNS)
    assert summary_a.equals(summary_b), f"{experiment}: summary differs"
    for name in ("per_task.csv", "task_outcomes.csv", "reward_distribution.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{experiment}: {name}"
    assert json.loads((a / "best_params.json").read_text()) == json.loads(
        (b / "best_params.json").read_text()
    )
    for rollouts in sorted(a.glob("*/rollouts.jsonl")) + sorted(a.glob("*/*/rollouts.jsonl")):
        other = b / rollouts.relative_to(a)
        assert [without_timing(r) for r in read_rows(rollouts)] == [
            without_timing(r) for r in read_rows(other)
        ], rollouts


SWEEP_CONFIGS = ["temperature~0.1", "temperature~0.9"]


@pytest.fixture(scope="module")
def sweep_setup(tmp_path_factory):
    """One config, three working directories: local, SLURM with per-job servers, SLURM with the
    workflow's servers. Two experiments: a sweep (2 temperatures x 2 repeat shards) and a
    chunked one (6 tasks in 2 chunks): 6 collection shards."""
    root = tmp_path_factory.mktemp("slurm")
    tasks = write_tasks(root / "tasks.jsonl", 6)
    stack = write_stack_config(root / "stack.yaml")
    config = write_config(
        root / "config.yaml",
        stack,
        {
            "sweep": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "num_repeats": 2,
                "num_samples_in_parallel": 4,
                "grid": {"responses_create_params.temperature": [0.1, 0.9]},
            },
            "chunked": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "tasks_per_chunk": 3,
                "responses_create_params": {"temperature": 0.7},
            },
        },
    )
    local = root / "local"
    local.mkdir()
    started = time.perf_counter()
    result = snakemake(local, config, *LOCAL)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"local run: {time.perf_counter() - started:.1f} s")
    return root, config, local


def test_slurm_run_equals_local_run(slurm_cluster, sweep_setup):
    """Acceptance 1, the profile as is: every shard a SLURM job that starts its own servers."""
    root, config, local = sweep_setup
    cluster = root / "cluster"
    cluster.mkdir()
    started = time.perf_counter()
    result = snakemake(cluster, config, *SLURM)
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-4000:]
    print(f"SLURM run: {wall:.1f} s")

    jobs = slurm_jobs(cluster)
    expected = shard_names("sweep", SWEEP_CONFIGS, ["r0-c0", "r1-c0"]) | shard_names(
        "chunked", ["default"], ["r0-c0", "r0-c3"]
    )
    assert set(jobs) == expected, jobs
    assert all(len(ids) == 1 for ids in jobs.values()), jobs
    for name, (job_id,) in jobs.items():
        assert slurm_state(job_id) == "COMPLETED", (name, job_id)
    # collection ran in SLURM jobs; merging, aggregation and the manifest on the submit host
    assert "localrule collect_shard" not in result.stderr
    assert "localrule aggregate" in result.stderr
    # the profile's default path: no workflow servers, each job started its own
    shard_logs = sorted((cluster / "results").glob("*/**/logs/r*-c*.log"))
    assert len(shard_logs) == len(expected)
    for log in shard_logs:
        assert "using the servers of ng_run" not in log.read_text(), log
        assert "0 failed" in log.read_text(), log

    for experiment in ("sweep", "chunked"):
        assert_same_results(local, cluster, experiment)
        manifest = json.loads((cluster / "results" / experiment / "manifest.json").read_text())
        assert manifest["executor"] == "slurm"
        local_manifest = json.loads((local / "results" / experiment / "manifest.json").read_text())
        assert local_manifest["executor"] == "local"
    check = subprocess.run(
        [sys.executable, "-m", "rollsweep.cli", "check-manifest", str(cluster / "results")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_slurm_jobs_use_workflow_servers_when_reachable(slurm_cluster, sweep_setup):
    """`start_servers=True`: the jobs (here on the submit host's node) use the workflow's
    servers through ROLLSWEEP_HEAD_URL, exported by sbatch; same numbers."""
    root, config, local = sweep_setup
    cluster = root / "cluster_head"
    cluster.mkdir()
    target = "results/chunked/manifest.json"
    result = snakemake(cluster, config, *SLURM, "--config", "start_servers=True", "--", target)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = slurm_jobs(cluster)
    assert set(jobs) == shard_names("chunked", ["default"], ["r0-c0", "r0-c3"]), jobs
    for (job_id,) in jobs.values():
        assert slurm_state(job_id) == "COMPLETED"
    logs = sorted((cluster / "results" / "chunked" / "default" / "logs").glob("r*-c*.log"))
    assert len(logs) == 2
    for log in logs:
        assert "using the servers of ng_run at http://127.0.0.1:" in log.read_text(), log
    assert_same_results(local, cluster, "chunked")
    assert (
        "rollsweep.servers.serve"
        not in subprocess.run(["ps", "aux"], capture_output=True, text=True).stdout
    )


def write_embedded_stack(path: Path, **agent: Any) -> Path:
    """A stack of the embedded model, the bundled verifiers and `my_agent` (with ``agent``)."""
    config = {
        "head_server": {"host": "127.0.0.1", "port": free_port()},
        "model_servers": {"policy_model": {"backend": "embedded"}},
        "resources_servers": {"bundled": {"verifier": "auto"}},
        "agents": {
            "my_agent": {"model_server": "policy_model", "resources_server": "bundled", **agent}
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.embedded
def test_adaptive_race_on_the_embedded_model_is_the_same_locally_and_in_slurm(
    slurm_cluster, tmp_path
):
    """Issue 14, acceptance 3: an adaptive experiment on the real embedded model under
    `--cores 2`, then under profiles/slurm: the same rounds, picks and rollouts, every round's
    collection a SLURM job, every round's decision on the submit host."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    stack = write_embedded_stack(tmp_path / "stack.yaml", max_steps=1)
    config = write_config(
        tmp_path / "config.yaml",
        stack,
        {
            "race": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "num_samples_in_parallel": 2,
                "grid": {"responses_create_params.temperature": [0.1, 1.5]},
                "adaptive": {"round_repeats": [1, 1]},
            }
        },
    )
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    # the SLURM jobs use the workflow's embedded model on the submit host (one model load, not
    # one per job: the test node has two CPUs, and a job that starts its own model asks for all)
    on_slurm = [*SLURM, "--config", "start_servers=True"]
    for workdir, profile in ((local, LOCAL), (cluster, on_slurm)):
        workdir.mkdir()
        started = time.perf_counter()
        result = snakemake(workdir, config, *profile)
        assert result.returncode == 0, result.stderr[-4000:]
        print(f"{workdir.name}: {time.perf_counter() - started:.1f} s")

    rounds = round_files(local)
    assert rounds and rounds == round_files(cluster)
    assert rounds[0]["in_race"] == ["temperature~0.1", "temperature~1.5"]
    assert rounds[-1]["stop"]
    # every configuration's shards of every round it raced in ran as SLURM jobs
    expected = {
        f"race_{label}_r{state['repeats'][0]}-c0" for state in rounds for label in state["in_race"]
    }
    jobs = slurm_jobs(cluster)
    assert set(jobs) == expected, jobs
    for name, (job_id,) in jobs.items():
        assert slurm_state(job_id) == "COMPLETED", (name, job_id)
    assert_same_results(local, cluster, "race")
    best = json.loads((cluster / "results" / "race" / "best_params.json").read_text())
    assert best["race"]["rounds"] == len(rounds)
    rows = read_rows(cluster / "results" / "race" / "temperature~0.1" / "rollouts.jsonl")
    assert all(row["response"]["model"].startswith("SmolLM2") for row in rows)


FAILING_VERIFIER = '''\
"""Fails task t0003 while the file FAIL sits beside this one (an injected shard failure)."""
from pathlib import Path

from rollsweep.verifiers import final_text
from rollsweep.verifiers.base import VerifierError


def verify(task, response):
    if task.get("task_id") == "t0003" and Path(__file__).with_name("FAIL").exists():
        raise VerifierError("injected failure")
    return float(task["expected_answer"] in final_text(response))
'''


def test_failing_shard_fails_in_slurm_and_rerun_completes_only_what_is_missing(
    slurm_cluster, tmp_path
):
    """Acceptance 2."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    (tmp_path / "flaky.py").write_text(FAILING_VERIFIER)
    marker = tmp_path / "FAIL"
    marker.write_text("remove me to heal the shard\n")
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        yaml.safe_dump(
            {
                "head_server": {"host": "127.0.0.1", "port": free_port()},
                "model_servers": {"sim": {"backend": "simulated"}},
                "resources_servers": {"flaky": {"verifier": "flaky.py"}},
                "agents": {
                    "my_agent": {"model_server": "sim", "resources_server": "flaky", "max_steps": 1}
                },
            }
        )
    )
    config = write_config(
        tmp_path / "config.yaml",
        stack,
        {"chunks": {"agent_name": "my_agent", "input": str(tasks), "tasks_per_chunk": 2}},
    )
    workdir = tmp_path / "run"
    workdir.mkdir()
    shards = workdir / "results" / "chunks" / "default" / "shards"

    failed = snakemake(workdir, config, *SLURM)
    assert failed.returncode != 0, failed.stderr[-3000:]
    jobs = slurm_jobs(workdir)
    assert set(jobs) == shard_names("chunks", ["default"], ["r0-c0", "r0-c2"]), jobs
    states = {name: slurm_state(ids[0]) for name, ids in jobs.items()}
    assert states == {"chunks_default_r0-c0": "COMPLETED", "chunks_default_r0-c2": "FAILED"}
    assert re.search(r"SLURM-job '\d+' failed", failed.stderr), failed.stderr[-3000:]
    made = sorted(p for p in shards.iterdir() if re.fullmatch(r"r\d+-c\d+\.jsonl", p.name))
    assert [p.name for p in made] == ["r0-c0.jsonl"]
    assert "injected failure" in (shards / "r0-c2_failures.jsonl").read_text()
    assert not (workdir / "results" / "chunks" / "summary.csv").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in made}

    marker.unlink()
    planned = snakemake(workdir, config, *SLURM, "-n", "--quiet", "rules")
    assert re.search(r"^collect_shard\s+1$", planned.stdout, re.M), planned.stdout
    rerun = snakemake(workdir, config, *SLURM)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    jobs_after = slurm_jobs(workdir)
    assert {name: len(ids) for name, ids in jobs_after.items()} == {
        "chunks_default_r0-c0": 1,
        "chunks_default_r0-c2": 2,
    }
    assert slurm_state(max(jobs_after["chunks_default_r0-c2"])) == "COMPLETED"
    assert {p: shards.joinpath(p).stat().st_mtime_ns for p in kept} == kept
    rows = read_rows(workdir / "results" / "chunks" / "default" / "rollouts.jsonl")
    assert [row["_ng_task_index"] for row in rows] == list(range(4))


FAKE_VLLM = '''\
#!{python}
"""Stand-in for `vllm serve` in tests: rollsweep's simulated model server (Chat Completions and
Responses) plus /v1/models, always on 127.0.0.1."""
import argparse

import uvicorn

from rollsweep.config import ModelServerConfig
from rollsweep.servers.model import create_model_app

parser = argparse.ArgumentParser()
parser.add_argument("command")
parser.add_argument("model")
for option in ("--served-model-name", "--host", "--api-key"):
    parser.add_argument(option)
parser.add_argument("--port", type=int)
args = parser.parse_args()
app = create_model_app(ModelServerConfig.model_validate({{"backend": "simulated"}}))
models = {{"object": "list", "data": [{{"id": args.served_model_name, "object": "model"}}]}}
app.get("/v1/models")(lambda: models)
uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
'''


def test_model_server_job_serves_the_collection_jobs(slurm_cluster, tmp_path):
    """profiles/slurm/model_server.sbatch as a service job (a stand-in for vLLM, on loopback):
    it publishes its address in a stack config fragment, the collection jobs (each with its own
    agent and verifier servers) call it, and the fragment goes away with the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(FAKE_VLLM.format(python=sys.executable))
    (bin_dir / "vllm").chmod(0o755)
    endpoint = tmp_path / "endpoint.cluster.yaml"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "ENDPOINT_FILE": str(endpoint),
        "MODEL": "stand-in",
    }
    # the script's #SBATCH lines ask for a GPU partition; the test cluster has one CPU partition
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--partition=debug",
            "--gres=none",
            "--cpus-per-task=1",
            "--mem=1G",
            "--time=10",
            str(REPO / "profiles" / "slurm" / "model_server.sbatch"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert submit.returncode == 0, submit.stderr
    model_job = int(submit.stdout.strip().split(";")[0])
    try:
        deadline = time.monotonic() + 120
        while not endpoint.exists():
            assert time.monotonic() < deadline, "the model server job published no endpoint"
            assert slurm_state(model_job) in ("PENDING", "RUNNING"), slurm_state(model_job)
            time.sleep(0.5)
        published = yaml.safe_load(endpoint.read_text())["model_servers"]["policy_model"]
        assert published["backend"] == "openai"
        assert published["openai"]["model"] == "policy"

        tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
        stack = write_embedded_stack(tmp_path / "stack.yaml")
        config = write_config(
            tmp_path / "config.yaml",
            stack,
            {"served": {"agent_name": "my_agent", "input": str(tasks)}},
        )
        data = yaml.safe_load(config.read_text())
        data["stack_config"] = [str(stack), str(endpoint)]
        config.write_text(yaml.safe_dump(data))
        workdir = tmp_path / "run"
        workdir.mkdir()
        result = snakemake(workdir, config, *SLURM)
        assert result.returncode == 0, result.stderr[-4000:]
        jobs = slurm_jobs(workdir)
        assert set(jobs) == shard_names("served", ["default"], ["r0-c0"]), jobs
        rows = read_rows(workdir / "results" / "served" / "default" / "rollouts.jsonl")
        assert [row["_ng_task_index"] for row in rows] == [0, 1, 2, 3]
        # the jobs' own model servers forward (openai backend): the simulated answers can only
        # come from the service job
        assert all(row["response"]["model"] == "simulated" for row in rows), rows[0]["response"]
        assert all(row["response"]["id"].startswith("resp_sim_") for row in rows)
        manifest = json.loads((workdir / "results" / "served" / "manifest.json").read_text())
        assert manifest["models"]["policy_model"]["backend"] == "openai"
        assert manifest["models"]["policy_model"]["model"] == "policy"
        assert slurm_state(model_job) == "RUNNING"
    finally:
        subprocess.run(["scancel", str(model_job)], capture_output=True)
    deadline = time.monotonic() + 30
    while endpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not endpoint.exists(), "the endpoint file outlived the model server job"
