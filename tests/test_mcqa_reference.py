"""The mcqa verifier against NeMo Gym's current mcqa server (verdicts recorded from its code)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rollsweep.verifiers import load_verifier

FIXTURES = Path(__file__).parent / "fixtures" / "mcqa"
OPTIONS = [{"A": "Berlin"}, {"B": "Paris"}, {"C": "Rome"}, {"D": "Madrid"}]


def reply(text: str) -> dict:
    return {"output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_agrees_with_nemo_gym_in_every_grading_mode() -> None:
    corpus = {row["id"]: row for row in read(FIXTURES / "corpus.jsonl")}
    verify = load_verifier("mcqa").verify
    per_mode: Counter[str] = Counter()
    credited: Counter[str] = Counter()
    for ref in read(FIXTURES / "nemo_gym_verdicts.jsonl"):
        row = corpus[ref["id"]]
        task = {k: row[k] for k in ("options", "expected_answer", "template_metadata") if k in row}
        if ref["grading_mode"] is not None:
            task["grading_mode"] = ref["grading_mode"]
        got = verify(task, reply(row["response"]))
        assert (got["reward"], got["extracted_answer"]) == (
            ref["reward"],
            ref["extracted_answer"],
        ), (ref, row["response"])
        mode = ref["grading_mode"] or "template_metadata"
        per_mode[mode] += 1
        credited[mode] += got["reward"] == 1.0
    for mode in (
        "strict_single_letter_boxed",
        "lenient_boxed",
        "lenient_answer_colon",
        "lenient_answer_colon_md",
    ):
        assert per_mode[mode] >= 50 and 10 <= credited[mode] < per_mode[mode], mode
    assert per_mode["template_metadata"] >= 5


def test_changes_since_nemo_gym_0_4_0() -> None:
    verify = load_verifier("mcqa").verify
    task = {"options": OPTIONS, "expected_answer": "B"}
    # the last box counts, braces balanced, \text{} stripped, labelled letters read
    for text in ("\\boxed{A} then \\boxed{B}", "\\boxed{\\text{B}}", "\\boxed{B: Paris}"):
        assert verify(task, reply(text))["reward"] == 1.0, text
    md = {**task, "grading_mode": "lenient_answer_colon_md"}
    assert verify(md, reply("Answer: B because Paris")).get("extracted_answer") == "B"
    assert verify(md, reply("Answer: A or B"))["extracted_answer"] is None


def test_rows_without_options_allow_every_letter() -> None:
    # NeMo Gym's own example_rollouts.jsonl has no options; NeMo Gym would read no letter
    verify = load_verifier("mcqa").verify
    result = verify({"expected_answer": "H"}, reply("\\boxed{H}"))
    assert result["reward"] == 1.0 and result["extracted_by"] == "strict_single_letter_boxed"


def test_empty_answers_score_zero_in_every_mode() -> None:
    verify = load_verifier("mcqa").verify
    for mode in ("strict_single_letter_boxed", "lenient", "lenient_answer_colon_md"):
        for text in ("", "  \n"):
            task = {"options": OPTIONS, "expected_answer": "B", "grading_mode": mode}
            result = verify(task, reply(text))
            assert result["reward"] == 0.0 and result["extracted_answer"] is None
