"""The Snakemake pipeline end to end on the simulated backend (real servers on loopback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, read_rows, write_stack_config, write_tasks
from test_collect_simulated import collect, without_timing

from rollsweep.pipeline.config import load_pipeline_config
from rollsweep.pipeline.plan import ExperimentPlan

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def write_pipeline(tmp_path: Path, experiments: dict, **simulated) -> Path:
    stack = write_stack_config(tmp_path / "stack.yaml", **simulated)
    config = {
        "stack_config": [str(stack)],
        "results_dir": "results",
        "seed": 0,
        "stats": {"n_bootstrap": 500},
        "experiments": experiments,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config),
            "--cores",
            "2",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_snakemake(workdir: Path, config: Path) -> subprocess.Popen:
    """A Snakemake run in the background, in its own process group (to kill it whole)."""
    return subprocess.Popen(
        [
            *SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
            "--cores",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def planned_jobs(tmp_path: Path, config: Path) -> dict[str, int]:
    result = snakemake(tmp_path, config, "-n", "--quiet", "rules")
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def sweep(tasks: Path, temperatures: list[float], **extra) -> dict:
    return {
        "agent_name": "my_agent",
        "input": str(tasks),
        "num_samples_in_parallel": 8,
        "grid": {"responses_create_params.temperature": temperatures},
        **extra,
    }


def test_sweep_runs_aggregates_and_reruns_only_what_changed(tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 12)
    config = write_pipeline(
        tmp_path,
        {
            "sweep": sweep(tasks, [0.1, 0.5, 0.9], num_repeats=2),
            "debug": {"agent_name": "my_agent", "input": str(tasks), "limit": 3},
        },
    )
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "results"
    summary = pl.read_csv(results / "sweep" / "summary.csv")
    assert summary["config"].to_list() == ["temperature~0.1", "temperature~0.5", "temperature~0.9"]
    for row in summary.iter_rows(named=True):
        rollouts = results / "sweep" / row["config"] / "rollouts.jsonl"
        rows = read_rows(rollouts)
        assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows] == [
            (t, r) for t in range(12) for r in range(2)
        ]
        assert row["n_rollouts"] == 24 and row["n_tasks"] == 12 and row["k"] == 2
        if shutil.which("jq"):
            jq = subprocess.run(
                ["jq", "-s", "map(.reward) | add/length", str(rollouts)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert float(jq) == row["mean"]
        else:
            assert sum(r["reward"] for r in rows) / len(rows) == row["mean"]
    best = json.loads((results / "sweep" / "best_params.json").read_text())
    assert best["verdict"] in ("best", "tie")
    for name in ("per_task.csv", "reward_distribution.csv", "failures.jsonl", "task_outcomes.csv"):
        assert (results / "sweep" / name).exists()
    for plot in ("reward_vs_params", "reward_distribution", "per_task_variance"):
        assert (results / "sweep" / "plots" / f"{plot}.png").stat().st_size > 1000
    # no server is left running after the workflow
    assert (
        "rollsweep.servers.serve"
        not in subprocess.run(["ps", "aux"], capture_output=True, text=True).stdout
    )

    assert planned_jobs(tmp_path, config) == {}

    changed = yaml.safe_load(config.read_text())
    changed["experiments"]["sweep"]["grid"]["responses_create_params.temperature"][2] = 0.7
    config.write_text(yaml.safe_dump(changed, sort_keys=False))
    assert planned_jobs(tmp_path, config) == {
        "collect_shard": 2,
        "merge_shards": 1,
        "aggregate": 1,
        "manifest": 1,
        "all": 1,
    }


def test_known_optimum_is_picked_and_equal_configs_tie(tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 80)
    config = write_pipeline(
        tmp_path,
        {
            "gap": sweep(tasks, [0.1, 0.5, 1.2]),
            # the simulated policy ignores top_p: two configurations equal by construction
            "same": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "responses_create_params": {"temperature": 0.5},
                "grid": {"responses_create_params.top_p": [0.9, 0.95]},
            },
        },
        curvature=1.5,
        task_spread=0.1,
    )
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    gap = json.loads((tmp_path / "results/gap/best_params.json").read_text())
    assert gap["best"]["params"] == {"temperature": 0.5}
    assert gap["verdict"] == "best", gap
    same = json.loads((tmp_path / "results/same/best_params.json").read_text())
    assert same["verdict"] == "tie", same
    assert same["difference"]["estimate"] == 0


BAD_CONFIGS = {
    "unknown key": ({"colour": "blue"}, "experiments.bad.colour"),
    "empty grid": ({"grid": {"responses_create_params.temperature": []}}, "has no values"),
    "non-numeric value": (
        {"grid": {"responses_create_params.temperature": ["hot"]}},
        "valid number",
    ),
    "negative repeats": ({"num_repeats": -1}, "experiments.bad.num_repeats"),
    "unknown agent": ({"agent_name": "nobody"}, "unknown agent 'nobody'"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_before_any_job(tmp_path, case):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    change, expected = BAD_CONFIGS[case]
    config = write_pipeline(
        tmp_path, {"bad": {"agent_name": "my_agent", "input": str(tasks), **change}}
    )
    result = snakemake(tmp_path, config)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "results").exists()


def test_chunked_and_sharded_collection_equals_one_run(tmp_path):
    """4 task chunks x 3 repeat shards, merged, give the rows of one unsharded run."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    config = write_pipeline(
        tmp_path,
        {
            "chunked": {
                "agent_name": "my_agent",
                "input": str(tasks),
                "num_repeats": 3,
                "tasks_per_chunk": 3,
                "responses_create_params": {"temperature": 0.7},
            }
        },
    )
    assert planned_jobs(tmp_path, config)["collect_shard"] == 12
    result = snakemake(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    merged = read_rows(tmp_path / "results/chunked/default/rollouts.jsonl")

    single = tmp_path / "single.jsonl"
    stack = tmp_path / "stack.yaml"
    run = collect(
        stack, tasks, single, "+num_repeats=3", "+responses_create_params.temperature=0.7"
    )
    assert run.returncode == 0, run.stderr
    assert [without_timing(r) for r in merged] == [without_timing(r) for r in read_rows(single)]


def test_experiment_plan_names_every_shard_and_command_once(tmp_path):
    """The plan Snakemake's input and params functions read: every grid point by label, every
    shard by name (the task file counted once), and each shard's own command line."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 7)
    stack = write_stack_config(tmp_path / "stack.yaml")
    grid = {"responses_create_params.temperature": [0.1, 0.5], "agent_name": ["my_agent"]}
    config = {
        "stack_config": [str(stack)],
        "results_dir": "out",
        "experiments": {
            "x": {"input": str(tasks), "num_repeats": 3, "tasks_per_chunk": 3, "grid": grid}
        },
    }
    plan = ExperimentPlan(load_pipeline_config(config), "x")
    labels = ["temperature~0.1/agent_name~my_agent", "temperature~0.5/agent_name~my_agent"]
    assert list(plan.configurations) == labels
    assert plan.rollouts == [f"out/x/{label}/rollouts.jsonl" for label in labels]
    names = [f"r{r}-c{c}" for r in range(3) for c in (0, 3, 6)]
    assert list(plan.shards) == names
    tasks.unlink()  # counted once: planning more jobs does not read the file again
    assert plan.shard_files(labels[1]) == [f"out/x/{labels[1]}/shards/{n}.jsonl" for n in names]

    command = plan.collect_command(labels[1], "r2-c6", "shard.jsonl")
    assert "+responses_create_params.temperature=0.5" in command
    assert "+first_repeat=2" in command and "+num_repeats=1" in command
    assert "+task_start=6" in command and "+task_stop=7" in command
    with pytest.raises(KeyError, match=r"x/temperature~0\.9"):
        plan.collect_command("temperature~0.9/agent_name~my_agent", "r0-c0", "shard.jsonl")


def test_collection_threads_are_what_the_shard_runs(tmp_path):
    """A shard that calls running servers takes one thread; one that starts its own embedded
    model takes its pool (n_instances x n_threads, or the default pool of 4 contexts)."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        yaml.safe_dump(
            {
                "model_servers": {
                    "small": {"backend": "embedded"},
                    "pinned": {
                        "backend": "embedded",
                        "embedded": {"n_instances": 3, "n_threads": 2},
                    },
                    "sim": {"backend": "simulated"},
                },
                "resources_servers": {"bundled": {"verifier": "auto"}},
                "agents": {
                    name: {"model_server": name, "resources_server": "bundled"}
                    for name in ("small", "pinned", "sim")
                },
            }
        )
    )
    grid = {"agent_name": ["small", "pinned", "sim"]}

    def threads(**settings) -> dict[str, int]:
        config = {
            "stack_config": [str(stack)],
            **settings,
            "experiments": {"x": {"input": str(tasks), "agent_name": "sim", "grid": grid}},
        }
        plan = ExperimentPlan(load_pipeline_config(config), "x")
        return {label: plan.threads(label) for label in plan.configurations}

    assert threads(start_servers=False) == {
        "agent_name~small": 4,
        "agent_name~pinned": 6,
        "agent_name~sim": 1,
    }
    assert set(threads(start_servers=True).values()) == {1}
    assert set(threads(start_servers=False, head_url="http://127.0.0.1:9").values()) == {1}
