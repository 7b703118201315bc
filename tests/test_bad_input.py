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


# --------------------------------------------------------------------------- more kinds, in-process
#
# The same contract for broken task files, broken values and broken configs, run in-process
# (ng_collect_rollouts raises SystemExit) so that the many kinds stay fast.


def _row(**params) -> str:
    task = math_task(0)
    task["responses_create_params"].update(params)
    return json.dumps(task) + "\n"


def _config_with(path, change) -> str:
    import yaml

    config = yaml.safe_load(path.read_text())
    change(config)
    target = path.with_name("broken.yaml")
    target.write_text(yaml.safe_dump(config))
    return str(target)


def _faults(config) -> None:
    config["model_servers"]["sim"]["simulated"] = {"faults": {"error_500": 0.7, "hang": 0.6}}


def _unknown_server(config) -> None:
    config["agents"]["my_agent"]["model_server"] = "nope"


def _bad_backend(config) -> None:
    config["model_servers"]["sim"]["backend"] = "gpt5"


HUGE = GOOD + '{"a": "' + "x" * 3_000_000 + '"}\n'

#: name -> (task file content (str/bytes), extra args, expected text, names the input file)
MORE_CASES = {
    "truncated_last_line": (GOOD + GOOD[:40], [], ":2: invalid JSON", True),
    "truncated_hint": (GOOD + GOOD[:40], [], "the last line looks truncated", True),
    "invalid_utf8": (
        GOOD.encode() + b'{"responses_create_params": {"input": "\xff\xfe"}}\n',
        [],
        ":2: invalid UTF-8",
        True,
    ),
    "empty_file": ("", [], "no tasks to run", True),
    "blank_lines_only": ("\n  \n\n", [], "no tasks to run", True),
    "line_of_many_mb": (HUGE, ["+max_line_bytes=1000000"], ":2: line is 3,000,010 bytes", True),
    "duplicate_task_id": (GOOD + GOOD, [], ":2: task_id: duplicate task_id 't0000'", True),
    "json_array": (GOOD + "[1, 2]\n", [], ":2: expected a JSON object, got a JSON list", True),
    "json_string": (GOOD + '"hi"\n', [], ":2: expected a JSON object, got a JSON str", True),
    "params_not_an_object": (
        GOOD + json.dumps({"responses_create_params": "hi"}) + "\n",
        [],
        ":2: responses_create_params: Input should be a valid dictionary",
        True,
    ),
    "input_wrong_type": (GOOD + _row(input=42), [], ":2: responses_create_params.input", True),
    "tools_not_a_list": (GOOD + _row(tools="x"), [], ":2: responses_create_params.tools", True),
    "row_temperature_string": (
        GOOD + _row(temperature="hot"),
        [],
        ":2: responses_create_params.temperature: Input should be a valid number",
        True,
    ),
    "row_temperature_nan": (
        GOOD
        + GOOD.replace('"max_output_tokens": 32', '"max_output_tokens": 32, "temperature": NaN'),
        [],
        ":2: invalid JSON",
        True,
    ),
    "row_temperature_too_hot": (
        GOOD + _row(temperature=3.5),
        [],
        ":2: responses_create_params.temperature: Input should be less than or equal to 2",
        True,
    ),
    "row_top_p_zero": (GOOD + _row(top_p=0), [], ":2: responses_create_params.top_p", True),
    "row_negative_max_tokens": (
        GOOD + _row(max_output_tokens=-5),
        [],
        ":2: responses_create_params.max_output_tokens",
        True,
    ),
    "task_id_an_object": (
        GOOD + json.dumps({**math_task(1), "task_id": {"a": 1}}) + "\n",
        [],
        ":2: task_id",
        True,
    ),
    "nan_temperature": (
        GOOD,
        ["+responses_create_params.temperature=.nan"],
        "+responses_create_params.temperature: Input should be a finite number",
        False,
    ),
    "limit_not_a_number": (GOOD, ["+limit=abc"], "+limit: Input should be a valid integer", False),
    "zero_repeats": (GOOD, ["+num_repeats=0"], "+num_repeats: Input should be greater", False),
    "zero_parallel": (GOOD, ["+num_samples_in_parallel=0"], "+num_samples_in_parallel", False),
    "failure_rate_over_1": (GOOD, ["+max_failure_rate=2"], "+max_failure_rate", False),
    "resume_not_a_bool": (
        GOOD,
        ["+resume=maybe"],
        "+resume: Input should be a valid boolean",
        False,
    ),
    "negative_timeout": (GOOD, ["+request_timeout_s=-1"], "+request_timeout_s", False),
    "infinite_timeout": (GOOD, ["+rollout_timeout_s=.inf"], "+rollout_timeout_s", False),
    "zero_attempts": (GOOD, ["+max_attempts=0"], "+max_attempts", False),
    "not_key_value": (GOOD, ["limit"], "expected +key=value, got 'limit'", False),
    "value_and_group": (GOOD, ["+limit=1", "+limit.x=2"], "+limit.x: is given both", False),
    "limit_zero": (GOOD, ["+limit=0"], "no tasks to run", True),
    "input_is_a_directory": ("DIR", [], "is a directory, expected a JSONL file", False),
    "output_is_a_directory": (GOOD, ["OUT_DIR"], "+output_jsonl_fpath: is a directory", False),
    "output_is_the_input": (GOOD, ["OUT_SAME"], "+output_jsonl_fpath: must differ", False),
    "config_missing": (GOOD, ["CONFIG_MISSING"], "missing.yaml: config file not found", False),
    "config_bad_yaml": (GOOD, ["CONFIG_YAML"], "bad.yaml:2: invalid YAML", False),
    "config_unknown_server": (GOOD, [_unknown_server], "names model_server 'nope'", False),
    "config_unknown_backend": (GOOD, [_bad_backend], "model_servers.sim.backend", False),
    "config_fault_rates_over_1": (GOOD, [_faults], "fault rates sum to 1.3", False),
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_more_bad_input_kinds(tmp_path, case, sim_config, capsys):
    import signal

    from rollsweep.cli import ng_collect_rollouts

    content, extra, expected, names_input = MORE_CASES[case]
    tasks = tmp_path / "tasks.jsonl"
    if content == "DIR":
        tasks.mkdir()
    elif isinstance(content, bytes):
        tasks.write_bytes(content)
    else:
        tasks.write_text(content)
    out = tmp_path / "out.jsonl"
    config = str(sim_config)
    args = []
    for item in extra:
        if item == "OUT_DIR":
            out = tmp_path / "out_dir"
            out.mkdir()
        elif item == "OUT_SAME":
            out = tasks
        elif item == "CONFIG_MISSING":
            config = str(tmp_path / "missing.yaml")
        elif item == "CONFIG_YAML":
            (tmp_path / "bad.yaml").write_text("a: [1, 2\nb: 3\n")
            config = str(tmp_path / "bad.yaml")
        elif callable(item):
            config = _config_with(sim_config, item)
        else:
            args.append(item)
    before = sorted(p.name for p in tmp_path.iterdir())
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            ng_collect_rollouts(
                [
                    "+agent_name=my_agent",
                    f"+input_jsonl_fpath={tasks}",
                    f"+output_jsonl_fpath={out}",
                    f"+config_paths=[{config}]",
                    *args,
                ]
            )
    finally:
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    assert exited.value.code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert expected in lines[0], lines[0]
    if names_input:
        assert str(tasks) in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written"
    if content != "DIR" and out != tasks:
        assert not out.exists() or out.is_dir()


def test_at_least_twenty_kinds_of_bad_input():
    assert len(CASES) + len(MORE_CASES) >= 20


def test_stack_config_errors_are_caught_before_any_server_starts(tmp_path):
    """A missing verifier file, an unknown bundled verifier and a bad agent URL: exit 2."""
    from conftest import run_cli

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(GOOD)
    out = tmp_path / "out.jsonl"
    for verifier, expected in (
        ("nope.py", "verifier file not found"),
        ("mathh", "unknown verifier"),
    ):
        stack = tmp_path / "stack.yaml"
        stack.write_text(
            "model_servers: {m: {backend: simulated}}\n"
            f"resources_servers: {{r: {{verifier: {verifier}}}}}\n"
            "agents: {a: {model_server: m, resources_server: r}}\n"
        )
        result = run_cli(
            "ng_collect_rollouts",
            "+agent_name=a",
            f"+input_jsonl_fpath={tasks}",
            f"+output_jsonl_fpath={out}",
            f"+config_paths=[{stack}]",
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and expected in result.stderr
        assert "resources_servers.r.verifier" in result.stderr
    result = run_cli(
        "ng_collect_rollouts",
        "+agent_url=not a url",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={out}",
        timeout=60,
    )
    assert result.returncode == 2 and "+agent_url" in result.stderr
    assert not out.exists()
