"""rollsweep and a real NeMo Gym 0.4.0 stack, both ways, on loopback.

The NeMo Gym stack is NeMo Gym's own ng_run (head, mcqa and example_single_tool_call resources
servers with their simple_agents, and its openai_model server) started by
../shared/nemo-gym/stack.sh; its policy is rollsweep's model server with the simulated backend,
served by rollsweep's ng_run (whose agents NeMo Gym's own collector drives in the other
direction).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port, read_rows, run_cli, start_ng_run, write_stack_config, write_tasks
from nemo_gym_stack import NemoGym, start_nemo_gym, stop_nemo_gym

from rollsweep.protocol import decode_config_dict, derive_seed, servers_of_kind

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def rollsweep_head(tmp_path_factory):
    """rollsweep's ng_run: a simulated model server (NeMo Gym's policy) and rollsweep's agents."""
    config = write_stack_config(tmp_path_factory.mktemp("rollsweep") / "stack.yaml")
    process, head = start_ng_run(config)
    yield head
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def nemo_gym(rollsweep_head) -> NemoGym:
    served = decode_config_dict(httpx.get(f"{rollsweep_head}/global_config_dict_yaml").text)
    model_url = servers_of_kind(served, "model")["sim"]
    stack = start_nemo_gym(f"{model_url}/v1", free_port())
    yield stack
    stop_nemo_gym()


def response_ids_by_task(rows: list[dict]) -> dict[int, set[str]]:
    ids: dict[int, set[str]] = {}
    for row in rows:
        ids.setdefault(row["_ng_task_index"], set()).add(row["response"]["id"])
    return ids


def boxed_letter(row: dict) -> str | None:
    found = re.findall(r"\\boxed\{([A-J])\}", row["output"])
    return found[-1] if found else None


# --------------------------------------------------------------- rollsweep's collector -> NeMo Gym


def test_collector_drives_nemo_gym_agent_by_url(tmp_path, nemo_gym):
    tasks = nemo_gym.example("mcqa")
    out = tmp_path / "mcqa.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        f"+agent_url={nemo_gym.agents['mcqa_simple_agent']}",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=4",
        "+num_samples_in_parallel=6",
        "+responses_create_params.temperature=0.7",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    n_tasks = len(read_rows(tasks))
    assert len(rows) == n_tasks * 4  # no rollout rejected
    assert not (tmp_path / "mcqa_failures.jsonl").exists()
    # task-major, repeats adjacent
    assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows] == [
        (t, r) for t in range(n_tasks) for r in range(4)
    ]
    # each repeat's seed is distinct, and it reached the model (the simulated policy's response
    # id is a digest of the seed and its answer)
    assert len({row["seed"] for row in rows}) == len(rows)
    assert all(
        row["seed"] == derive_seed(0, row["_ng_task_index"], row["_ng_rollout_index"])
        for row in rows
    )
    sent = [
        json.loads(r["responses_create_params"]["metadata"]["extra_body"])["seed"] for r in rows
    ]
    assert sent == [row["seed"] for row in rows]
    assert all(len(ids) > 1 for ids in response_ids_by_task(rows).values())
    # NeMo Gym's mcqa verdicts: its own fields, and reward 1 exactly when the boxed letter is right
    assert all("extracted_answer" in row for row in rows)
    for row in rows:
        assert row["reward"] == (1.0 if boxed_letter(row) == row["expected_answer"] else 0.0)
    assert 0 < sum(row["reward"] for row in rows) < len(rows)
    # token metrics come from the model's usage when the agent reports none of its own
    assert all(row["metrics"]["output_tokens"] > 0 for row in rows)
    # NeMo Gym's agent answered /aggregate_metrics at the end
    metrics = json.loads((tmp_path / "mcqa_aggregate_metrics.json").read_text())
    assert metrics[0]["agent_metrics"]


def test_collector_finds_nemo_gym_agent_through_its_head(tmp_path, nemo_gym):
    tasks = nemo_gym.example("example_single_tool_call")
    out = tmp_path / "weather.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        "+agent_name=example_single_tool_call_simple_agent",
        "+head_server.host=127.0.0.1",
        f"+head_server.port={nemo_gym.head_port}",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
        "+limit=3",
        "+disable_aggregation=true",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 6
    assert all(
        row["agent_ref"] == {"name": "example_single_tool_call_simple_agent"} for row in rows
    )
    # NeMo Gym's example_single_tool_call verify() rewards every rollout 1.0 (rollsweep's own
    # tool_use verifier would score these tool-less answers 0): the rewards are NeMo Gym's.
    assert [row["reward"] for row in rows] == [1.0] * 6
    assert not (tmp_path / "weather_aggregate_metrics.json").exists()


def test_head_without_the_agent_is_one_error_and_no_local_fallback(tmp_path, nemo_gym):
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        "+agent_name=my_agent",  # a local agent of config/servers.yaml, not at NeMo Gym's head
        f"+head_url={nemo_gym.head_url}",
        f"+input_jsonl_fpath={nemo_gym.example('mcqa')}",
        f"+output_jsonl_fpath={out}",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "has no agent 'my_agent'" in lines[0] and "mcqa_simple_agent" in lines[0]
    assert not out.exists()


# --------------------------------------------------------------- NeMo Gym's collector -> rollsweep


def test_nemo_gym_collector_drives_rollsweep_ng_run(tmp_path, rollsweep_head, nemo_gym):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 8)
    head_port = httpx.URL(rollsweep_head).port
    theirs = tmp_path / "theirs.jsonl"
    ng = subprocess.run(
        [
            nemo_gym.collector(),
            "+agent_name=my_agent",
            f"+input_jsonl_fpath={tasks}",
            f"+output_jsonl_fpath={theirs}",
            "+num_repeats=3",
            "+num_samples_in_parallel=8",
            "+head_server.host=127.0.0.1",
            f"+head_server.port={head_port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ng.returncode == 0, ng.stdout[-2000:] + ng.stderr[-2000:]
    aggregate = json.loads((tmp_path / "theirs_aggregate_metrics.json").read_text())
    assert aggregate[0]["agent_ref"] == {"name": "my_agent"}
    assert aggregate[0]["key_metrics"]["mean/reward"] >= 0

    ours = tmp_path / "ours.jsonl"
    mine = run_cli(
        "ng_collect_rollouts",
        "+agent_name=my_agent",
        f"+head_url={rollsweep_head}",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={ours}",
        "+num_repeats=3",
    )
    assert mine.returncode == 0, mine.stderr
    their_rows = sorted(
        read_rows(theirs), key=lambda r: (r["_ng_task_index"], r["_ng_rollout_index"])
    )
    our_rows = read_rows(ours)
    assert len(their_rows) == len(our_rows) == 24
    assert [r["reward"] for r in their_rows] == [r["reward"] for r in our_rows]
    assert [r["response"]["id"] for r in their_rows] == [r["response"]["id"] for r in our_rows]
    # repeats are not copies of each other
    assert all(len(ids) > 1 for ids in response_ids_by_task(their_rows).values())


def test_rollsweep_head_speaks_nemo_gyms_config_dict(rollsweep_head):
    served = decode_config_dict(httpx.get(f"{rollsweep_head}/global_config_dict_yaml").text)
    head = httpx.URL(rollsweep_head)
    assert served["head_server"] == {"host": head.host, "port": head.port}
    agent = served["my_agent"]["responses_api_agents"]["rollsweep_agent"]
    assert agent["model_server"] == {"type": "responses_api_models", "name": "sim"}
    assert httpx.get(f"http://{agent['host']}:{agent['port']}/health").status_code == 200


# --------------------------------------------------------------- failures the NeMo Gym way


def test_failure_classes_go_to_the_sidecar_never_the_mean(tmp_path):
    port = free_port()
    agent = subprocess.Popen([sys.executable, str(FIXTURES / "flaky_ng_agent.py"), str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{url}/stats", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
        out = tmp_path / "out.jsonl"
        args = (
            "ng_collect_rollouts",
            f"+agent_url={url}",
            f"+input_jsonl_fpath={tasks}",
            f"+output_jsonl_fpath={out}",
            "+num_samples_in_parallel=10",
            "+rollout_timeout_s=3",
            "+max_attempts=2",
            "+max_failure_rate=1",
        )
        result = run_cli(*args, timeout=120)
        assert result.returncode == 0, result.stderr
        rows = read_rows(out)
        assert [r["_ng_task_index"] for r in rows] == [0, 5]
        assert all(r["reward"] == 1.0 for r in rows)
        assert "mean reward 1.000" in result.stderr
        assert "2 not persisted" in result.stderr
        failures = read_rows(tmp_path / "out_failures.jsonl")
        kinds = {f["_ng_task_index"]: f["error_kind"] for f in failures}
        assert kinds == {
            1: "judge_failed",
            6: "judge_failed",
            2: "http_500",
            7: "http_500",
            3: "rollout_timeout",
            8: "rollout_timeout",
        }
        assert failures[0]["message"] == "judge model unreachable"
        # a rerun retries the failures and the unpersisted rows, never the good ones
        again = run_cli(*args, timeout=120)
        assert again.returncode == 0, again.stderr
        calls = httpx.get(f"{url}/stats").json()
        assert calls["0"] == 1 and calls["5"] == 1
        assert calls["4"] == 2 and calls["1"] == 2
    finally:
        agent.kill()  # it may still hold a hanging request
        agent.wait(timeout=10)


# --------------------------------------------------------------- the pipeline over NeMo Gym


def test_pipeline_sweeps_a_nemo_gym_environment(tmp_path, nemo_gym):
    config = {
        "results_dir": str(tmp_path / "results"),
        "stats": {"n_bootstrap": 200},
        "head_url": nemo_gym.head_url,
        "experiments": {
            "mcqa_sweep": {
                "agent_name": "mcqa_simple_agent",
                "input": str(nemo_gym.example("mcqa")),
                "num_repeats": 2,
                "num_samples_in_parallel": 4,
                "grid": {"responses_create_params.temperature": [0.2, 0.8]},
            },
            "agents": {
                "input": str(nemo_gym.example("mcqa")),
                "limit": 3,
                "grid": {
                    "agent_name": ["mcqa_simple_agent", "example_single_tool_call_simple_agent"]
                },
            },
        },
    }
    configfile = tmp_path / "ng.yaml"
    configfile.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        ["snakemake", "--cores", "2", "--configfile", str(configfile), "--directory", "."],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = tmp_path / "results" / "mcqa_sweep"
    n_tasks = len(read_rows(nemo_gym.example("mcqa")))
    for temperature in ("0.2", "0.8"):
        rows = read_rows(results / f"temperature~{temperature}" / "rollouts.jsonl")
        assert len(rows) == n_tasks * 2
        assert all("extracted_answer" in row for row in rows)  # NeMo Gym's mcqa verified them
    import polars as pl

    summary = pl.read_csv(results / "summary.csv")
    assert summary.height == 2
    assert set(summary["n_rollouts"].to_list()) == {n_tasks * 2}
    best = json.loads((results / "best_params.json").read_text())
    assert best["verdict"] in ("best", "tie")
    per_task = pl.read_csv(results / "per_task.csv")
    assert per_task.height == 2 * n_tasks
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["servers"]["head_url"] == nemo_gym.head_url
    served = manifest["servers"]["agents"]["mcqa_simple_agent"]
    assert served["responses_api_agents"]["simple_agent"]["port"]
    assert "policy_model" in manifest["servers"]["servers"]  # the model server the agent names
    assert manifest["stack"]["agents"] == {}  # no local server made these rows
    assert "dummy" not in (results / "manifest.json").read_text()  # NeMo Gym's policy_api_key
    check = run_cli("rollsweep", "check-manifest", str(results))
    assert check.returncode == 0, check.stdout + check.stderr

    # a grid over two NeMo Gym agents: each configuration's rows come from its own agent
    agents = tmp_path / "results" / "agents"
    mcqa = read_rows(agents / "agent_name~mcqa_simple_agent" / "rollouts.jsonl")
    weather = read_rows(
        agents / "agent_name~example_single_tool_call_simple_agent" / "rollouts.jsonl"
    )
    assert len(mcqa) == len(weather) == 3
    assert all("extracted_answer" in row for row in mcqa)
    assert [row["reward"] for row in weather] == [1.0] * 3  # that environment's verify()
    summary = pl.read_csv(agents / "summary.csv")
    assert summary.height == 2
