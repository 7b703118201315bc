"""Differential tests of the instruction_following verifier against its references.

``fixtures/ifeval/reference_verdicts.jsonl`` holds, for every case of ``fixtures/ifeval/cases.py``,
the verdicts of the references (recorded by ``fixtures/ifeval/record_reference.py``, which says
how to run them): Google's IFEval as packaged in lm-eval (strict and loose) for IFEval's 25 ids,
and NeMo Gym's verifiable-instructions (its ``check_following``, as NeMo Gym's server calls it)
for every case. Agreement is measured per instruction id.

``python tests/test_ifeval_reference.py`` prints the per-id agreement table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from rollsweep.verifiers.instruction_following import (
    IFEVAL_IDS,
    OPEN_INSTRUCT_IDS,
    follows,
    judge_instruction,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ifeval"
REFERENCE = FIXTURES / "reference_verdicts.jsonl"
#: Required agreement with the reference, per instruction id.
MIN_AGREEMENT = 0.995

#: Cases where we depart from verifiable-instructions on purpose (see open_instruct.py):
#: (id, kwargs as JSON, response) -> why.
DELIBERATE = {
    (
        "new:copy_span_idx",
        '{"n_end": 4, "n_start": 0, "prompt_to_repeat": "Tell me a joke about cats."}',
        "Tell",
    ): "n_start 0: the reference draws a random start instead",
    ("first_word:first_word_sent", '{"first_word": ["yes"]}', "Yes I agree. Yes it is."): (
        "first_word given as a list: the reference crashes (counted as not followed), we take "
        "its first element"
    ),
}


#: "At least N" counts that dropping lines or asterisks can only lower: loose == strict there.
LOOSE_CANNOT_HELP = {
    "detectable_content:number_placeholders",
    "detectable_format:number_highlighted_sections",
}


def key(case: dict) -> tuple[str, str, str]:
    return case["id"], json.dumps(case["kwargs"], sort_keys=True), case["response"]


def load() -> list[dict]:
    return [json.loads(line) for line in REFERENCE.read_text(encoding="utf-8").splitlines()]


def agreement() -> dict[str, dict[str, list[int]]]:
    """Per id: {"strict"|"loose"|"nemo_gym": [agreeing, total]}."""
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for case in load():
        iid, kwargs, text = case["id"], case["kwargs"], case["response"]
        if case["source"] == "ifeval":
            verdict = judge_instruction(iid, kwargs, text)
            for name, ours in (("strict", verdict.strict), ("loose", verdict.loose)):
                cell = table[iid][name]
                cell[0] += ours == case[f"ifeval_{name}"]
                cell[1] += 1
        if key(case) in DELIBERATE:
            continue
        cell = table[iid]["nemo_gym"]
        cell[0] += follows(iid, kwargs, text) == case["nemo_gym"]
        cell[1] += 1
    return table


@pytest.fixture(scope="module")
def table() -> dict[str, dict[str, list[int]]]:
    return agreement()


def test_the_corpus_covers_every_id_on_both_sides_of_its_boundary() -> None:
    cases = load()
    ifeval = [c for c in cases if c["source"] == "ifeval"]
    assert len(ifeval) >= 800
    assert {c["id"] for c in ifeval} == set(IFEVAL_IDS)
    assert {c["id"] for c in cases if c["source"] == "open_instruct"} == set(OPEN_INSTRUCT_IDS)
    for iid in IFEVAL_IDS:
        mine = [c for c in ifeval if c["id"] == iid]
        assert len(mine) >= 30, iid
        # answers written to pass and to fail, and some only the loose variants rescue
        assert {c["ifeval_strict"] for c in mine} == {True, False}, iid
        if iid not in LOOSE_CANNOT_HELP:
            assert any(c["ifeval_loose"] and not c["ifeval_strict"] for c in mine), iid
    for iid in OPEN_INSTRUCT_IDS:
        mine = [c for c in cases if c["id"] == iid]
        assert len(mine) >= 3, iid
        assert {c["nemo_gym"] for c in mine} == {True, False}, iid


@pytest.mark.parametrize("iid", IFEVAL_IDS)
@pytest.mark.parametrize("verdicts", ["strict", "loose"])
def test_ifeval_verdicts_agree_with_googles_ifeval(table: dict, iid: str, verdicts: str) -> None:
    agreeing, total = table[iid][verdicts]
    assert total >= 30
    assert agreeing / total >= MIN_AGREEMENT, f"{iid} {verdicts}: {agreeing}/{total}"


@pytest.mark.parametrize("iid", IFEVAL_IDS + OPEN_INSTRUCT_IDS)
def test_checks_agree_with_nemo_gyms_library(table: dict, iid: str) -> None:
    agreeing, total = table[iid]["nemo_gym"]
    assert total >= 3
    assert agreeing / total >= MIN_AGREEMENT, f"{iid}: {agreeing}/{total}"


def test_the_deliberate_departures_are_still_departures() -> None:
    by_key = {key(c): c for c in load()}
    for deliberate in DELIBERATE:
        case = by_key[deliberate]
        assert follows(case["id"], case["kwargs"], case["response"]) != case["nemo_gym"]


def test_every_instruction_can_be_said_to_a_model() -> None:
    """describe() fills its template from a row's kwargs, for every id of the corpus."""
    from rollsweep.verifiers.instruction_following import get_instruction

    seen: set[str] = set()
    for case in load():
        if case["id"] in seen:
            continue
        seen.add(case["id"])
        sentence = get_instruction(case["id"]).describe(case["kwargs"])
        assert sentence and "{" not in sentence, case["id"]
    assert len(seen) == len(IFEVAL_IDS) + len(OPEN_INSTRUCT_IDS)


def format_table(table: dict[str, dict[str, list[int]]]) -> str:
    def cell(values: list[int] | None) -> str:
        if not values or not values[1]:
            return "—"
        return f"{values[0]}/{values[1]} ({100 * values[0] / values[1]:.1f} %)"

    lines = [f"| {'instruction id':<45} | IFEval strict | IFEval loose | NeMo Gym library |"]
    lines.append(f"|{'-' * 47}|---|---|---|")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for iid in IFEVAL_IDS + OPEN_INSTRUCT_IDS:
        row = table[iid]
        for name in ("strict", "loose", "nemo_gym"):
            if name in row:
                totals[name][0] += row[name][0]
                totals[name][1] += row[name][1]
        lines.append(
            f"| {iid:<45} | {cell(row.get('strict'))} | {cell(row.get('loose'))} "
            f"| {cell(row.get('nemo_gym'))} |"
        )
    lines.append(
        f"| {'all':<45} | {cell(totals['strict'])} | {cell(totals['loose'])} "
        f"| {cell(totals['nemo_gym'])} |"
    )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(format_table(agreement()))
    sys.exit(0)
