"""The collector against real servers on loopback (simulated model backend)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import defaultdict

from conftest import (
    ThreadedServer,
    collect,
    read_rows,
    without_timing,
    write_stack_config,
    write_tasks,
)
from fastapi import FastAPI, Request

from rollsweep.servers.backends.simulated import with_answer


def test_exploration_shape_order_and_determinism(tmp_path, sim_config):
    """The seed's behavioral exploration: 50 tasks x 5 repeats at parallel 10 -> 250 rows."""
    tasks = write_tasks(tmp_path / "research_tasks.jsonl", 60)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    args = (
        "+responses_create_params.temperature=0.9",
        "+num_repeats=5",
        "+limit=50",
        "+num_samples_in_parallel=10",
    )
    result = collect(sim_config, tasks, first, *args)
    assert result.returncode == 0, result.stderr
    assert "250 rollouts" in result.stderr
    rows = read_rows(first)
    assert len(rows) == 250
    for line, row in enumerate(rows):
        assert row["_ng_task_index"] == line // 5
        assert row["_ng_rollout_index"] == line % 5
        assert row["responses_create_params"]["temperature"] == 0.9
        assert row["params"]["temperature"] == 0.9
        assert isinstance(row["reward"], float | int)
        assert row["output"].startswith("The answer is")
    # every row keeps its input fields
    assert rows[7]["task_id"] == "t0001" and rows[7]["expected_answer"]
    # seeds differ between repeats and are reproducible
    assert len({row["seed"] for row in rows}) == 250

    result = collect(sim_config, tasks, second, *args, "+num_samples_in_parallel=3")
    assert result.returncode == 0, result.stderr
    again = read_rows(second)
    assert [without_timing(r) for r in rows] == [without_timing(r) for r in again]

    rewards = [row["reward"] for row in rows]
    assert 0 < sum(rewards) / len(rewards) < 1


def test_seed_variance_script_groups_by_task(tmp_path, sim_config):
    """The seed's per-task-variance script, verbatim, on our output."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 50)
    out = tmp_path / "exploration_rollouts.jsonl"
    result = collect(
        sim_config,
        tasks,
        out,
        "+num_repeats=5",
        "+limit=50",
        "+num_samples_in_parallel=10",
        "+responses_create_params.temperature=0.9",
    )
    assert result.returncode == 0, result.stderr
    seed_script = """
import json
from collections import defaultdict
import statistics

# Group by task (every 5 rollouts)
groups = defaultdict(list)
with open('exploration_rollouts.jsonl') as f:
    for i, line in enumerate(f):
        rollout = json.loads(line)
        task_id = i // 5
        groups[task_id].append(rollout['reward'])

# Compute statistics
for task_id, rewards in groups.items():
    print(f"Task {task_id}: "
          f"μ={statistics.mean(rewards):.2f}, "
          f"σ={statistics.stdev(rewards):.2f}, "
          f"range=[{min(rewards):.2f}, {max(rewards):.2f}]")
"""
    printed = subprocess.run(
        [sys.executable, "-c", seed_script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(printed) == 50
    by_index = defaultdict(list)
    for row in read_rows(out):
        by_index[row["_ng_task_index"]].append(row["reward"])
    for task_index, line in enumerate(printed):
        rewards = by_index[task_index]
        assert len(rewards) == 5
        assert line == (
            f"Task {task_index}: μ={statistics.mean(rewards):.2f}, "
            f"σ={statistics.stdev(rewards):.2f}, range=[{min(rewards):.2f}, {max(rewards):.2f}]"
        )


def test_limit_counts_tasks_before_repeats(tmp_path, sim_config):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 10)
    out = tmp_path / "out.jsonl"
    result = collect(sim_config, tasks, out, "+limit=3", "+num_repeats=2")
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert not list(tmp_path.glob(".out.jsonl.*.ckpt.jsonl")), "checkpoint left behind"


def test_timeouts_send_rollouts_to_the_failures_sidecar(tmp_path):
    config = write_stack_config(tmp_path / "slow.yaml", latency_ms=3000)
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    out = tmp_path / "out.jsonl"
    result = collect(
        config,
        tasks,
        out,
        "+request_timeout_s=0.3",
        "+max_attempts=2",
        "+num_samples_in_parallel=2",
    )
    assert result.returncode == 1, result.stderr
    assert "2 of 2 rollouts failed" in result.stderr
    assert read_rows(out) == []
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert [(f["_ng_task_index"], f["error_kind"], f["attempts"]) for f in failures] == [
        (0, "timeout", 2),
        (1, "timeout", 2),
    ]


def test_seed_failure_mining_with_jq(tmp_path, sim_config):
    """The seed's `jq 'select(.reward < 0.3)' > failures.jsonl` pretty-prints: its `wc -l` counts
    lines and `head -1 | jq .output` reads a lone `{`; the README's `jq -c` form counts rows."""
    tasks = write_tasks(tmp_path / "research_tasks.jsonl", 20)
    out = tmp_path / "exploration_rollouts.jsonl"
    result = collect(
        sim_config, tasks, out, "+num_repeats=2", "+responses_create_params.temperature=0.9"
    )
    assert result.returncode == 0, result.stderr
    low = sum(row["reward"] < 0.3 for row in read_rows(out))
    assert 0 < low < 40

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, shell=True, capture_output=True, text=True, cwd=tmp_path)

    shell("jq 'select(.reward < 0.3)' exploration_rollouts.jsonl > failures.jsonl")
    assert int(shell("wc -l < failures.jsonl").stdout) > low  # lines, not rows
    assert shell("head -1 failures.jsonl | jq '.output'").returncode != 0

    shell("jq -c 'select(.reward < 0.3)' exploration_rollouts.jsonl > failures.jsonl")
    assert int(shell("wc -l < failures.jsonl").stdout) == low
    first = shell("head -1 failures.jsonl | jq '.output'")
    assert first.returncode == 0 and first.stdout.startswith('"')


def test_a_verifier_timeout_is_a_failure_not_a_zero(tmp_path):
    """math-verify past its time limit: the rollout goes to the sidecar as verifier_timeout."""
    # a policy that is always wrong, so the slow expression always reaches math-verify's compare
    sim_config = write_stack_config(
        tmp_path / "stack.yaml", peak_reward=0.0, curvature=0.0, task_spread=0.0
    )
    slow = r"\frac{(3-\sqrt{3})(2-\sqrt{3})^{2016}+(3+\sqrt{3})(2+\sqrt{3})^{2016}}{2}"
    tasks = tmp_path / "tasks.jsonl"
    rows = [
        {
            "responses_create_params": {"input": "Compute it; answer in \\boxed{}."},
            "expected_answer": slow,
            "verifier": "math",
            "library_verifier_timeout_seconds": 0.5,
        },
        {
            "responses_create_params": {"input": "What is 2 + 2? Answer in \\boxed{}."},
            "expected_answer": "4",
            "verifier": "math",
        },
    ]
    tasks.write_text("".join(json.dumps(with_answer(row)) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    result = collect(sim_config, tasks, out, "+max_failure_rate=1")
    assert result.returncode == 0, result.stderr
    assert [row["_ng_task_index"] for row in read_rows(out)] == [1]
    assert read_rows(out)[0]["reward"] == 0.0  # a wrong answer that math-verify did decide
    failures = read_rows(tmp_path / "out_failures.jsonl")
    assert [(f["_ng_task_index"], f["error_kind"]) for f in failures] == [(0, "verifier_timeout")]
    assert "0.5" in failures[0]["message"]


def test_nemo_gym_collector_flags(tmp_path, sim_config):
    """NeMo Gym's flags: num_repeats_add_seed=false sends no seed, resume_from_cache=false starts
    over, upload_rollouts_to_wandb is accepted and ignored, disable_aggregation skips the call."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", 3)
    out = tmp_path / "out.jsonl"
    result = collect(
        sim_config,
        tasks,
        out,
        "+num_repeats=2",
        "+num_repeats_add_seed=false",
        "+upload_rollouts_to_wandb=true",
        "+disable_aggregation=true",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert all(row["seed"] is None for row in rows)
    # the seed would travel in metadata.extra_body (the task's own metadata stays as it was)
    metadata = [row["responses_create_params"]["metadata"] for row in rows]
    assert all(set(entry) == {"expected_answer"} for entry in metadata)
    assert not (tmp_path / "out_aggregate_metrics.json").exists()

    seeded = collect(sim_config, tasks, out, "+num_repeats=2", "+resume_from_cache=false")
    assert seeded.returncode == 0, seeded.stderr
    assert "resumed" not in seeded.stderr
    rows = read_rows(out)
    assert len({row["seed"] for row in rows}) == 6
    assert json.loads((tmp_path / "out_aggregate_metrics.json").read_text())[0]["agent_metrics"]


def test_aggregate_metrics_get_every_row_with_a_content_length(tmp_path):
    """The end-of-run ``/aggregate_metrics`` call, as NeMo Gym's collector makes it: every row
    without request and response (but the response's usage), in a body with a Content-Length
    (it is spooled to a nameless file, not held in memory, and that file leaves nothing)."""
    import asyncio

    from rollsweep.collector.metrics import write_aggregate_metrics

    seen: dict = {}
    app = FastAPI()

    @app.post("/aggregate_metrics")
    async def aggregate(request: Request) -> dict:
        seen["headers"] = dict(request.headers)
        seen["body"] = json.loads(await request.body())
        return {"agent_metrics": {"rows": len(seen["body"]["verify_responses"])}}

    out = tmp_path / "out.jsonl"
    rows = [
        {
            "reward": index % 2,
            "responses_create_params": {"input": "x" * 100},
            "response": {"output": ["y" * 100], "usage": {"total_tokens": index}},
            "_ng_task_index": index,
            "note": "z" * 50,
        }
        for index in range(3000)
    ]
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with ThreadedServer(app) as server:
        written = asyncio.run(write_aggregate_metrics(server.url, "agent", out, 30))
    sent = seen["body"]["verify_responses"]
    assert sent == [
        {
            "reward": row["reward"],
            "_ng_task_index": row["_ng_task_index"],
            "note": row["note"],
            "response": {"usage": row["response"]["usage"]},
        }
        for row in rows
    ]
    assert int(seen["headers"]["content-length"]) > 256 * 1024  # more than one chunk
    assert "transfer-encoding" not in seen["headers"]
    assert json.loads(written.read_text())[0]["agent_metrics"] == {"rows": 3000}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "out.jsonl",
        "out_aggregate_metrics.json",
    ]
