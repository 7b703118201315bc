"""A configuration's results rerun when anything that shapes its rollouts changes, and only then.

Each cause is changed on its own after a full run; the dry run must plan exactly the affected
experiment's shards and aggregates, and after the change is undone, nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port, write_tasks
from test_pipeline import planned_jobs, snakemake

VERIFIER = """
def verify(task, response):
    return 1.0 if task.get("expected_answer", "") in str(response) else 0.0
"""

#: What a dry run plans when one experiment's two configurations must be collected again.
ONE_EXPERIMENT = {"collect_shard": 2, "merge_shards": 2, "aggregate": 1, "manifest": 1, "all": 1}


def write_stack(path: Path, **changes) -> Path:
    stack = {
        "head_server": {"host": "127.0.0.1", "port": free_port()},
        "model_servers": {
            "sim_a": {"backend": "simulated", "simulated": {"peak_reward": 0.6}},
            "sim_b": {"backend": "simulated"},
        },
        "resources_servers": {
            "bundled": {"verifier": "auto"},
            "custom": {"verifier": "verifier.py"},
        },
        "agents": {
            "agent_a": {"model_server": "sim_a", "resources_server": "bundled", "max_steps": 2},
            "agent_b": {"model_server": "sim_b", "resources_server": "custom", "max_steps": 1},
        },
    }
    for dotted, value in changes.items():
        node = stack
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(stack))
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    (root / "verifier.py").write_text(VERIFIER)
    write_stack(root / "stack.yaml")
    tasks_a = write_tasks(root / "tasks_a.jsonl", 4)
    tasks_b = write_tasks(root / "tasks_b.jsonl", 4)
    config = {
        "stack_config": [str(root / "stack.yaml")],
        "results_dir": "results",
        "stats": {"n_bootstrap": 200},
        "experiments": {
            name: {
                "agent_name": f"agent_{name}",
                "input": str(tasks),
                "grid": {"responses_create_params.temperature": [0.3, 0.7]},
            }
            for name, tasks in (("a", tasks_a), ("b", tasks_b))
        },
    }
    configfile = root / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = snakemake(root, configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(root, configfile) == {}
    return root, configfile


def per_experiment(root: Path, configfile: Path) -> dict[str, int]:
    """The collect_shard jobs a dry run plans, by experiment (from Snakemake's job list)."""
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(root),
            "--configfile",
            str(configfile),
            "-n",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    counts: dict[str, int] = {}
    for line in listing.splitlines():
        line = line.strip()
        if line.startswith("output:") and "/shards/" in line:
            experiment = line.split("results/")[1].split("/")[0]
            counts[experiment] = counts.get(experiment, 0) + 1
    return counts


CAUSES = {
    "model setting": {"model_servers.sim_a.simulated.peak_reward": 0.5},
    "model backend settings of agent b": {"model_servers.sim_b.simulated.curvature": 0.9},
    "max_steps": {"agents.agent_a.max_steps": 3},
    "verifier name": {"resources_servers.bundled.verifier": "math"},
    "agent's model server": {"agents.agent_b.model_server": "sim_a"},
}
AFFECTED = {
    "model setting": "a",
    "model backend settings of agent b": "b",
    "max_steps": "a",
    "verifier name": "a",
    "agent's model server": "b",
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_a_stack_config_change_reruns_exactly_its_configurations(ran, cause):
    root, configfile = ran
    try:
        write_stack(root / "stack.yaml", **CAUSES[cause])
        assert planned_jobs(root, configfile) == ONE_EXPERIMENT
        assert per_experiment(root, configfile) == {AFFECTED[cause]: 2}
    finally:
        write_stack(root / "stack.yaml")
    assert planned_jobs(root, configfile) == {}


def test_verifier_file_code_reruns_its_configurations(ran):
    root, configfile = ran
    verifier = root / "verifier.py"
    try:
        verifier.write_text(VERIFIER.replace("1.0 if", "0.5 if"))
        assert per_experiment(root, configfile) == {"b": 2}
    finally:
        verifier.write_text(VERIFIER)
    assert planned_jobs(root, configfile) == {}


def test_task_file_content_reruns_its_configurations(ran):
    root, configfile = ran
    tasks = root / "tasks_a.jsonl"
    original = tasks.read_text()
    try:
        write_tasks(tasks, 5)
        assert per_experiment(root, configfile) == {"a": 2}
    finally:
        tasks.write_text(original)
    # the same content again (a new modification time): Snakemake's mtime trigger still sees a
    # newer input, so only its content is compared by identity; what matters here is that the
    # other experiment is never touched
    assert "b" not in per_experiment(root, configfile)
