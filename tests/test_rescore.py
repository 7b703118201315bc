"""The verifier workbench: rescoring frozen rollouts with an edited verifier."""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest
from demo_rollouts import write_demo_rollouts

from rollsweep.cli import run_command
from rollsweep.config import StackConfig
from rollsweep.rescore import (
    format_distributions,
    rescore,
    task_of,
)
from rollsweep.rollouts.names import rescored_path_for

VERIFIER_V1 = """
from rollsweep.verifiers import final_text

def verify(task, response):
    boxed = "\\\\boxed{" + task["expected_answer"] + "}"
    return {"reward": 1.0 if boxed in final_text(response) else 0.0, "version": 1}
"""

# v2: the right number without the box now earns partial credit
VERIFIER_V2 = """
from rollsweep.verifiers import final_text

def verify(task, response):
    text = final_text(response)
    if "\\\\boxed{" + task["expected_answer"] + "}" in text:
        reward = 1.0
    elif text.rstrip().endswith("the answer is " + task["expected_answer"] + "."):
        reward = 0.5
    else:
        reward = 0.0
    return {"reward": reward, "version": 2}
"""


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_verifier(path: Path, source: str) -> None:
    """Write a verifier file so that it looks changed even within one mtime tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(source)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def expected_v2(row: dict) -> float:
    """What v2 gives, computed here independently from the row's own text."""
    text, answer = row["output"], row["expected_answer"]
    if f"\\boxed{{{answer}}}" in text:
        return 1.0
    return 0.5 if text.endswith(f"the answer is {answer}.") else 0.0


def test_rescoring_an_edited_verifier_changes_exactly_the_expected_rows(tmp_path: Path) -> None:
    rollouts = tmp_path / "rollouts.jsonl"
    write_demo_rollouts(rollouts, 20, 5, temperature=0.7)
    verifier = tmp_path / "my_verifier.py"
    write_verifier(verifier, VERIFIER_V1)

    first = rescore(rollouts, str(verifier), tmp_path / "v1.jsonl")
    v1_rows = read(tmp_path / "v1.jsonl")
    assert all(row["verification"] == {"version": 1} for row in v1_rows)

    write_verifier(verifier, VERIFIER_V2)  # edited in place; same process, no restart
    second = rescore(tmp_path / "v1.jsonl", str(verifier), tmp_path / "v2.jsonl")
    v2_rows = read(tmp_path / "v2.jsonl")
    assert all(row["verification"] == {"version": 2} for row in v2_rows)

    expected = [
        (line, row["_ng_task_index"], row["_ng_rollout_index"])
        for line, row in enumerate(v1_rows, start=1)
        if expected_v2(row) != row["reward"]
    ]
    assert expected, "the edit must change some rows"
    assert len(expected) < len(v1_rows), "and leave others alone"
    assert [(c.line, c.task_index, c.repeat) for c in second.changed] == expected
    for change, row in zip(
        second.changed, (v2_rows[line - 1] for line, _, _ in expected), strict=True
    ):
        assert (change.before, change.after) == (row["previous_reward"], row["reward"])
    assert second.n_rows == first.n_rows == 100
    assert second.before == Counter(row["reward"] for row in v1_rows)
    assert second.after == Counter(row["reward"] for row in v2_rows)

    # rows keep everything else, in the same order
    for old, new in zip(v1_rows, v2_rows, strict=True):
        assert new["previous_reward"] == old["reward"]
        rest = {
            k: v for k, v in new.items() if k not in ("reward", "verification", "previous_reward")
        }
        assert rest == {
            k: v for k, v in old.items() if k not in ("reward", "verification", "previous_reward")
        }

    report = second.report()
    assert f"{len(expected)} rows changed reward" in report
    assert "mean reward" in report


def test_the_verifier_sees_the_task_not_the_rollout() -> None:
    row = {
        "task_id": "t1",
        "expected_answer": "4",
        "responses_create_params": {"input": "2+2?"},
        "reward": 1.0,
        "output": "4",
        "response": {"output": []},
        "metrics": {},
        "verification": {},
        "_ng_task_index": 0,
        "_ng_rollout_index": 1,
        "params": {},
        "seed": 7,
        "previous_reward": 0.0,
    }
    assert task_of(row) == {
        "task_id": "t1",
        "expected_answer": "4",
        "responses_create_params": {"input": "2+2?"},
    }


def test_format_distributions_is_uniq_c_side_by_side() -> None:
    text = format_distributions(
        Counter({0.0: 3, 0.5: 7, 1.0: 10}), Counter({0.0: 5, 0.5: 5, 1.0: 10})
    )
    assert text.splitlines() == [
        "before        after",
        "      3 0.0         5 0.0   (+2)",
        "      7 0.5         5 0.5   (-2)",
        "     10 1.0        10 1.0",
    ]
    only_after = format_distributions(Counter({0.5: 2}), Counter({1.0: 2}))
    assert only_after.splitlines()[1:] == [
        "      2 0.5                 (-2)",
        "                    2 1.0   (+2)",
    ]


def test_rescore_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rollouts = tmp_path / "rollouts.jsonl"
    write_demo_rollouts(rollouts, 4, 2)
    verifier = tmp_path / "v.py"
    write_verifier(verifier, VERIFIER_V1)
    assert run_command("rescore", ["--verifier", str(verifier), str(rollouts)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("before")
    assert rescored_path_for(rollouts) == tmp_path / "rollouts_rescored.jsonl"
    assert len(read(rescored_path_for(rollouts))) == 8
    # bundled verifiers by name work too
    assert (
        run_command(
            "rescore", ["--verifier", "math", str(rollouts), "-o", str(tmp_path / "m.jsonl")]
        )
        == 0
    )
    capsys.readouterr()

    broken = tmp_path / "broken.py"
    write_verifier(broken, "def verify(task, response)\n    return 1.0\n")
    raising = tmp_path / "raising.py"
    write_verifier(raising, "def verify(task, response):\n    return task['missing']\n")
    out_path = tmp_path / "never.jsonl"
    cases = [
        ["--verifier", str(broken), str(rollouts), "-o", str(out_path)],
        ["--verifier", str(raising), str(rollouts), "-o", str(out_path)],
        ["--verifier", str(tmp_path / "absent.py"), str(rollouts), "-o", str(out_path)],
        ["--verifier", "no_such_verifier", str(rollouts), "-o", str(out_path)],
        ["--verifier", str(verifier), str(tmp_path / "absent.jsonl"), "-o", str(out_path)],
        ["--verifier", str(verifier), str(rollouts), "-o", str(rollouts)],
        [str(rollouts)],
    ]
    for argv in cases:
        assert run_command("rescore", argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, (argv, err)
        assert not out_path.exists(), argv  # nothing half-written
    assert (
        run_command("rescore", ["--verifier", str(broken), str(rollouts), "-o", str(out_path)]) == 2
    )
    assert f"{broken}:1: syntax error" in capsys.readouterr().err
    assert (
        run_command("rescore", ["--verifier", str(raising), str(rollouts), "-o", str(out_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert f"{rollouts}:1" in err and "KeyError" in err and f"{raising}:2" in err
    # --on-error zero: such rows score 0.0 and say why
    argv = ["--verifier", str(raising), str(rollouts), "-o", str(out_path), "--on-error", "zero"]
    assert run_command("rescore", argv) == 0
    rows = read(out_path)
    assert all(row["reward"] == 0.0 and "KeyError" in row["verification"]["error"] for row in rows)


def test_rescore_never_calls_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Collect real rollouts through a simulated model server, then rescore with an edited
    verifier: the model server's request counter does not move, and rescoring runs with every
    outgoing connection of this process refused."""
    from rollsweep.servers.stack import Stack

    verifier = tmp_path / "verify.py"
    write_verifier(verifier, VERIFIER_V1)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": f"t{i}",
                    "responses_create_params": {
                        "input": f"What is {i} + {i}? Answer in \\boxed{{}}.",
                        "max_output_tokens": 32,
                    },
                    "expected_answer": str(2 * i),
                }
            )
            + "\n"
            for i in range(6)
        )
    )
    config = StackConfig.model_validate(
        {
            "model_servers": {"sim": {"backend": "simulated"}},
            "resources_servers": {"mine": {"verifier": str(verifier)}},
            "agents": {"agent": {"model_server": "sim", "resources_server": "mine"}},
        }
    )
    rollouts = tmp_path / "rollouts.jsonl"
    with Stack(config) as stack:
        model_url = stack.urls()["model"]["sim"]
        agent_url = stack.agent_urls()["agent"]
        status = run_command(
            "collect",
            [
                f"+agent_url={agent_url}",
                f"+input_jsonl_fpath={tasks}",
                f"+output_jsonl_fpath={rollouts}",
                "+num_repeats=3",
            ],
        )
        assert status == 0
        requests_after_collection = httpx.get(f"{model_url}/stats", timeout=10).json()["requests"]
        assert requests_after_collection >= 18

        write_verifier(verifier, VERIFIER_V2)

        def refuse(*args, **kwargs):
            raise AssertionError(f"rescore tried to open a connection: {args}")

        with monkeypatch.context() as patched:
            patched.setattr(socket.socket, "connect", refuse)
            patched.setattr(socket.socket, "connect_ex", refuse)
            patched.setattr(socket, "create_connection", refuse)
            result = rescore(rollouts, str(verifier), tmp_path / "rescored.jsonl")

        assert httpx.get(f"{model_url}/stats", timeout=10).json()["requests"] == (
            requests_after_collection
        )
    assert result.n_rows == 18
    rows = read(tmp_path / "rescored.jsonl")
    assert all(row["verification"]["version"] == 2 for row in rows)
    assert [r["reward"] for r in read(rollouts)] == [r["previous_reward"] for r in rows]


# --------------------------------------------------------------------------- NeMo Gym's rollouts

NEMO_GYM_IF = (
    Path(__file__).parent
    / "fixtures"
    / "nemo_gym"
    / "instruction_following"
    / "example_rollouts.jsonl"
)


def test_nemo_gyms_instruction_following_rollouts_rescore_to_their_recorded_rewards(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """NeMo Gym 0.4.0's data/example_rollouts.jsonl, as shipped: the same rewards, row by row,
    and the same per-instruction verdicts (its rows use ids beyond IFEval's 25)."""
    out = tmp_path / "rescored.jsonl"
    assert (
        run_command(
            "rescore", ["--verifier", "instruction_following", str(NEMO_GYM_IF), "-o", str(out)]
        )
        == 0
    )
    assert "no reward changed" in capsys.readouterr().out
    shipped, rescored = read(NEMO_GYM_IF), read(out)
    assert len(rescored) == len(shipped) == 5
    assert Counter(row["reward"] for row in shipped) == {0.0: 3, 1.0: 2}
    for before, after in zip(shipped, rescored, strict=True):
        assert after["reward"] == before["reward"]
        verification = after["verification"]
        assert verification["grading_mode"] == "binary"
        assert verification["verdicts"] == "strict"
        assert verification["follow_instruction_list"] == before["follow_instruction_list"]
        assert verification["follow_all_instructions"] == before["follow_all_instructions"]


def test_nemo_gym_main_rows_with_verifier_metadata_rescore_the_same(tmp_path: Path) -> None:
    """NeMo Gym's current main keeps the verifier fields under verifier_metadata."""
    moved = tmp_path / "main_format.jsonl"
    fields = ("instruction_id_list", "prompt", "kwargs")
    with moved.open("w") as handle:
        for row in read(NEMO_GYM_IF):
            metadata = {key: row.pop(key) for key in fields}
            handle.write(json.dumps({**row, "verifier_metadata": metadata}) + "\n")
    result = rescore(moved, "instruction_following", tmp_path / "out.jsonl")
    assert result.n_rows == 5 and result.n_changed == 0
    # fraction mode, asked for in the row, is the share of NeMo Gym's own verdicts
    fraction = tmp_path / "fraction.jsonl"
    with fraction.open("w") as handle:
        for row in read(NEMO_GYM_IF):
            handle.write(json.dumps({**row, "grading_mode": "fraction"}) + "\n")
    rescore(fraction, "instruction_following", tmp_path / "fraction_out.jsonl")
    for shipped, row in zip(read(NEMO_GYM_IF), read(tmp_path / "fraction_out.jsonl"), strict=True):
        verdicts = shipped["follow_instruction_list"]
        assert row["reward"] == pytest.approx(sum(verdicts) / len(verdicts))


def test_a_row_without_verdict_goes_to_the_sidecar_not_to_zero(tmp_path: Path) -> None:
    """math-verify past its limit on one row: that row is listed in the sidecar and left out."""
    slow = r"\frac{(3-\sqrt{3})(2-\sqrt{3})^{2016}+(3+\sqrt{3})(2+\sqrt{3})^{2016}}{2}"
    near_miss = slow.replace("2016}+", "2017}+")

    def rollout(index: int, expected: str, answer: str, **extra) -> dict:
        message = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": answer}],
        }
        return {
            "expected_answer": expected,
            "responses_create_params": {"input": "q"},
            "response": {"output": [message]},
            "reward": 1.0,
            "_ng_task_index": index,
            "_ng_rollout_index": 0,
            **extra,
        }

    source = tmp_path / "rollouts.jsonl"
    rows = [
        rollout(0, "4", r"\boxed{4}"),
        # a near miss (another power) that math-verify must evaluate to reject: slow
        rollout(1, slow, rf"\boxed{{{near_miss}}}", library_verifier_timeout_seconds=0.3),
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = rescore(source, "math", tmp_path / "out.jsonl")
    assert [row["_ng_task_index"] for row in read(tmp_path / "out.jsonl")] == [0]
    failures = read(tmp_path / "out_failures.jsonl")
    assert [(f["_ng_task_index"], f["error_kind"]) for f in failures] == [(1, "verifier_timeout")]
    assert "1 rows reached no verdict [verifier_timeout 1]" in result.report()
