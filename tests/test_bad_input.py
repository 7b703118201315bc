"""Bad input: one clear line naming file, line or key; exit status 2; nothing written."""

from __future__ import annotations

import json

import pytest
from conftest import math_task, run_cli

GOOD = json.dumps(math_task(0)) + "\n"


def case_files(tmp_path):
    """name -> (input file content or None for a missing file, extra args, expected text)."""
    no_params = json.dumps({"task_id": "x", "question": "1+1"}) + "\n"
    return {
        "malformed_json": (
            GOOD + '{"responses_create_params": {"input": "hi"\n',
            [],
            ":2: invalid JSON",
        ),
        "missing_params": (GOOD + no_params, [], ":2: responses_create_params: Field required"),
        "unknown_agent": (GOOD, ["+agent_name=nobody"], "+agent_name: unknown agent 'nobody'"),
        "missing_file": (None, [], "file not found"),
        "negative_limit": (
            GOOD,
            ["+limit=-1"],
            "+limit: Input should be greater than or equal to 0",
        ),
        "hot_temperature": (
            GOOD,
            ["+responses_create_params.temperature=hot"],
            "+responses_create_params.temperature: Input should be a valid number",
        ),
        "unknown_key": (GOOD, ["+colour=blue"], "+colour: unknown key"),
    }


CASES = list(case_files(None))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, case, sim_config):
    content, extra, expected = case_files(tmp_path)[case]
    tasks = tmp_path / "tasks.jsonl"
    if content is not None:
        tasks.write_text(content)
    out = tmp_path / "out.jsonl"
    args = ["+agent_name=my_agent", *extra] if not any("agent_name" in a for a in extra) else extra
    result = run_cli(
        "ng_collect_rollouts",
        *args,
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={out}",
        f"+config_paths=[{sim_config}]",
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    if content is not None and "+" not in expected.split(":")[0]:
        assert str(tasks) in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["stack.yaml"] + (["tasks.jsonl"] if content is not None else [])
    )
