"""The rollout contract: the row the collector writes, the one reader, names and texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import collect, read_rows, write_tasks

from rollsweep.analysis.read import load_rollouts
from rollsweep.errors import UsageError
from rollsweep.rollouts.names import (
    checkpoint_files,
    checkpoint_path,
    config_label,
    failures_path_for,
    is_failures_file,
)
from rollsweep.rollouts.reader import line_blocks, parse_block, read_columns
from rollsweep.rollouts.rows import RolloutRow, check_rollout_row
from rollsweep.rollouts.text import content_text, final_output, output_text, prompt_text


def test_a_collected_row_is_a_full_rollout_row(tmp_path, sim_config):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 3)
    out = tmp_path / "out.jsonl"
    result = collect(sim_config, tasks, out, "+num_repeats=2")
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    keys = {field.alias or name for name, field in RolloutRow.model_fields.items()}
    for line, row in enumerate(rows, start=1):
        parsed = check_rollout_row(row, path=str(out), line=line)
        assert keys <= set(row), keys - set(row)  # the collector fills every field
        assert parsed.metrics is not None and parsed.metrics.latency_s is not None
        assert parsed.output == output_text(row["response"])
    assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows][:3] == [
        (0, 0),
        (0, 1),
        (1, 0),
    ]


def test_aggregation_refuses_a_file_that_is_not_rollouts(tmp_path):
    sidecar = failures_path_for(tmp_path / "rollouts.jsonl")
    assert sidecar.name == "rollouts_failures.jsonl" and is_failures_file(sidecar)
    sidecar.write_text(json.dumps({"_ng_task_index": 0, "error_kind": "timeout"}) + "\n")
    with pytest.raises(UsageError, match=r"rollouts_failures\.jsonl:1: responses_create_params"):
        load_rollouts(sidecar)
    row = {"responses_create_params": {}, "response": {}, "reward": float("nan")}
    with pytest.raises(UsageError, match=r"x:4: reward"):
        check_rollout_row(row, path="x", line=4)


def test_strict_reader_names_line_and_key(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"metrics": {"turns": 1}}\n\n{"metrics": {"turns": "two"}}\n')
    schema = {"metrics": pl.Struct({"turns": pl.Float64()})}
    with pytest.raises(UsageError, match=r"r\.jsonl:3: metrics\.turns: expected a number"):
        read_columns(path, schema)


def test_line_blocks_keep_lines_whole_and_stop_at_end(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [json.dumps({"reward": i, "pad": "x" * (i * 7)}).encode() + b"\n" for i in range(40)]
    path.write_bytes(b"".join(lines) + b'{"reward": 99')  # a last line cut short
    with open(path, "rb") as handle:
        blocks = list(line_blocks(handle, first=16, size=64))
    assert b"".join(blocks) == path.read_bytes()
    assert all(block.endswith(b"\n") for block in blocks[:-1])
    end = sum(len(line) for line in lines[:5])
    with open(path, "rb") as handle:
        assert b"".join(line_blocks(handle, first=16, size=64, end=end)) == b"".join(lines[:5])


def test_tolerant_block_skips_and_reports_bad_lines():
    data = (
        b'{"reward": 1.0, "_ng_task_index": 0, "task_id": 7}\n'
        b"\n"
        b"[1, 2]\n"
        b'{"reward": "high", "_ng_task_index": true}\n'
        b'{"reward": 0.5, "_ng_task_index": 1'
    )
    block = parse_block(data, base_line=10)
    assert block.n_lines == 5
    assert block.lines.tolist() == [11, 14]
    assert block.columns.get_column("reward").to_list() == [1.0, None]
    assert block.columns.get_column("task_id").to_list() == ["7", None]
    assert [number for number, _ in block.bad] == [13, 15]
    assert "not a JSON object" in block.bad[0][1] and "invalid JSON" in block.bad[1][1]
    rows = [data[s : s + n] for s, n in zip(block.starts, block.lengths, strict=True)]
    assert [json.loads(row)["reward"] for row in rows] == [1.0, "high"]
    assert np.all(block.lengths > 0)


def test_names():
    assert config_label({"flag": True, "temperature": 0.5}) == "flag~true/temperature~0.5"
    assert config_label({}) == "default"
    output = Path("/x/out.jsonl")
    assert checkpoint_path(output, "abc").name == ".out.jsonl.abc.ckpt.jsonl"
    assert checkpoint_path(output, "abc", 3).name == ".out.jsonl.abc.w3.ckpt.jsonl"


def test_checkpoint_parts_in_worker_order(tmp_path):
    output = tmp_path / "out.jsonl"
    for part in (10, 2, 0):
        checkpoint_path(output, "abc", part).touch()
    checkpoint_path(output, "other", 1).touch()
    names = [path.name for path in checkpoint_files(output, "abc")]
    assert names == [
        ".out.jsonl.abc.ckpt.jsonl",
        ".out.jsonl.abc.w0.ckpt.jsonl",
        ".out.jsonl.abc.w2.ckpt.jsonl",
        ".out.jsonl.abc.w10.ckpt.jsonl",
    ]


def test_texts():
    parts = [
        {"type": "output_text", "text": "a"},
        {"type": "refusal", "refusal": "no"},
        {"type": "input_image"},
        "b",
    ]
    assert content_text(parts) == "a\nb"
    assert content_text(parts, labels=True) == "a\n[refusal] no\n[input_image]\nb"
    assert content_text({"k": "é"}) == '{"k": "é"}'
    response = {
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "x"}],
            },
            {"type": "function_call", "name": "f"},
            {"type": "message", "content": [{"type": "refusal", "refusal": "no"}]},
        ]
    }
    assert output_text(response) == ""  # the last message has no text part
    assert final_output({"response": response}) == "[refusal] no"
    assert final_output({"output": "given", "response": response}) == "given"
    task = {
        "responses_create_params": {
            "input": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
            ]
        }
    }
    assert prompt_text(task) == "second"
    assert prompt_text({"prompt": "p"}) == "p"
