"""NeMo Gym's own example rollouts, as it ships them, re-scored by ``rollsweep rescore``.

The files are copies of ``resources_servers/<server>/data/example_rollouts.jsonl`` (see
fixtures/nemo_gym/README.md). Each rescored reward must equal the one NeMo Gym recorded; the one
difference is explained where it is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollsweep.cli import run_command

FIXTURES = Path(__file__).parent / "fixtures" / "nemo_gym"


def rescored(server: str, verifier: str, tmp_path: Path) -> list[tuple[dict, dict]]:
    source = FIXTURES / server / "example_rollouts.jsonl"
    out = tmp_path / f"{server}.jsonl"
    assert run_command("rescore", ["--verifier", verifier, str(source), "-o", str(out)]) == 0
    before = [json.loads(line) for line in source.read_text().splitlines()]
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(before) == len(after) == 5
    return list(zip(before, after, strict=True))


def test_math_with_judge_library_rewards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Row 2 compares (1+sqrt 3)^4033-sized expressions: about 6 s on a quiet 2-core machine,
    # 25 s on a busy one. NeMo Gym recorded 1.0 (its 5 s sympy limit was enough there); a
    # generous budget keeps the test independent of the machine's load.
    monkeypatch.setenv("ROLLSWEEP_MATH_TIMEOUT_SECONDS", "300")
    for before, after in rescored("math_with_judge", "math", tmp_path):
        assert after["reward"] == before["reward"] == before["library_reward"]
        assert after["verification"]["library_reward"] == before["library_reward"]
        assert after["verification"]["extracted_answer"] == before["extracted_answer"]


def test_mcqa_rewards(tmp_path: Path) -> None:
    rows = rescored("mcqa", "mcqa", tmp_path)
    for line, (before, after) in enumerate(rows, 1):
        if line == 3:
            # The answer ends "\boxed{\nC: An individual with ...}". NeMo Gym recorded these
            # rows before its fix of the boxed parser (#1844, #1945, after 0.4.0): its old regex
            # needed a lone letter in the box and read nothing, reward 0.0. Its current code
            # reads the "C:" label, as rollsweep does: C is right, 1.0.
            assert before["reward"] == 0.0 and before["extracted_answer"] is None
            assert after["reward"] == 1.0 and after["verification"]["extracted_answer"] == "C"
            continue
        assert after["reward"] == before["reward"]
        assert after["verification"]["extracted_answer"] == before["extracted_answer"]
    # these rows carry no options (NeMo Gym's current code would score all of them 0.0)
    assert all("options" not in before for before, _ in rows)


def test_example_single_tool_call_rewards(tmp_path: Path) -> None:
    for before, after in rescored("example_single_tool_call", "tool_use", tmp_path):
        assert after["reward"] == before["reward"] == 1.0
        assert after["verification"]["grading_mode"] == "nemo_gym"
