"""The bundled verifiers, the auto dispatcher, user verifier files and the bundled task sets."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from rollsweep.taskgen import BUNDLED_SETS, make_task_set, write_bundled_tasks
from rollsweep.verifiers import (
    BUNDLED_VERIFIERS,
    VerifierError,
    final_text,
    function_calls,
    load_verifier,
    normalize_result,
)
from rollsweep.verifiers.instruction_following import (
    IFEVAL_IDS,
    INSTRUCTIONS,
    OPEN_INSTRUCT_IDS,
    check_instruction,
)
from rollsweep.verifiers.tool_use import get_weather, weather_for

REPO = Path(__file__).resolve().parents[1]


def message(text: str) -> dict:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def reply(text: str) -> dict:
    """A Responses object whose only output is one assistant message."""
    return {"id": "resp_1", "object": "response", "output": [message(text)]}


def weather_trajectory(city: str, answer: str, *, call_city: str | None = None) -> dict:
    arguments = json.dumps({"city": call_city or city})
    result = get_weather({"city": call_city or city}, {})
    return {
        "output": [
            {
                "type": "function_call",
                "name": "get_weather",
                "arguments": arguments,
                "call_id": "c1",
            },
            {"type": "function_call_output", "call_id": "c1", "output": json.dumps(result)},
            message(answer),
        ]
    }


# --------------------------------------------------------------------------- base


def test_final_text_takes_the_last_assistant_message() -> None:
    response = {
        "output": [
            message("first"),
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "1"},
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "last "},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "answer"},
                ],
            },
        ]
    }
    assert final_text(response) == "last answer"
    assert final_text({"output": []}) == ""
    assert final_text({}) == ""


def test_function_calls_parse_arguments() -> None:
    response = {
        "output": [
            {"type": "function_call", "name": "a", "arguments": '{"x": 1}', "call_id": "1"},
            {"type": "function_call", "name": "b", "arguments": "not json", "call_id": "2"},
        ]
    }
    calls = function_calls(response)
    assert calls[0] == {"name": "a", "arguments": {"x": 1}, "call_id": "1"}
    assert calls[1]["arguments"] is None and calls[1]["raw_arguments"] == "not json"


def test_normalize_result() -> None:
    assert normalize_result(1) == {"reward": 1.0}
    assert normalize_result(0.5) == {"reward": 0.5}
    assert normalize_result({"reward": 1, "why": "ok"}) == {"reward": 1.0, "why": "ok"}
    for bad, words in [
        (None, "expected a number"),
        ("1.0", "expected a number"),
        (True, "return a number"),
        (float("nan"), "finite"),
        ({"score": 1}, "without 'reward'"),
        ({"reward": "1"}, "must be a number"),
        ({"reward": float("inf")}, "finite"),
    ]:
        with pytest.raises(VerifierError, match=words):
            normalize_result(bad)


def test_load_verifier_names_and_errors() -> None:
    assert set(BUNDLED_VERIFIERS) == {"auto", "math", "mcqa", "instruction_following", "tool_use"}
    for name in BUNDLED_VERIFIERS:
        assert load_verifier(name).name == name
    with pytest.raises(VerifierError, match=r"unknown verifier 'nope'.*auto, math"):
        load_verifier("nope")


# --------------------------------------------------------------------------- math


@pytest.mark.parametrize(
    ("expected", "text", "reward", "extracted"),
    [
        ("12", "7 + 5 = 12, so the answer is \\boxed{12}.", 1.0, "12"),
        # several boxes read as a set, as NeMo Gym's math-verify does: no credit for hedging
        ("12", "First \\boxed{11}, no wait: \\boxed{12}", 0.0, "{11, 12}"),
        ("0.5", "The answer is \\boxed{\\frac{1}{2}}", 1.0, "1/2"),
        ("1000", "That makes 1,000 in total.", 1.0, "1000"),
        ("12", "So the answer is 12 apples.", 1.0, "12"),
        ("12", "\\boxed{13}", 0.0, "13"),
        ("63", "7 × 9 = 8*4 = 24. The final answer is 24.", 0.0, "24"),
        ("12", "I do not know.", 0.0, None),
        ("2\\sqrt{3}", "\\boxed{2}", 0.0, "2"),
        ("x+1", "\\boxed{1+x}", 1.0, "x + 1"),
        ("\\sqrt{2}", "\\boxed{2^{1/2}}", 1.0, "sqrt(2)"),
        ("7", "The answer is \\boxed{7", 0.0, None),  # unclosed: no answer
        ("12", "", 0.0, None),
    ],
)
def test_math(expected: str, text: str, reward: float, extracted: str | None) -> None:
    result = load_verifier("math").verify({"expected_answer": expected}, reply(text))
    assert result["reward"] == reward
    assert result["extracted_answer"] == extracted
    assert result["library_reward"] == reward and result["grading_mode"] == "exact"


def test_math_needs_expected_answer() -> None:
    with pytest.raises(VerifierError, match="expected_answer"):
        load_verifier("math").verify({}, reply("\\boxed{1}"))
    with pytest.raises(VerifierError, match="grading_mode"):
        load_verifier("math").verify({"expected_answer": "1", "grading_mode": "x"}, reply("1"))


# --------------------------------------------------------------------------- mcqa

OPTIONS = [{"A": "Berlin"}, {"B": "Paris"}, {"C": "Rome"}, {"D": "Madrid"}]


@pytest.mark.parametrize(
    ("text", "extracted"),
    [
        ("\\boxed{B}", "B"),
        ("\\boxed{\\text{B}}", "B"),
        ("\\boxed{A} on second thought \\boxed{B: Paris}", "B"),
        ("The answer is B.", "B"),
        ("Answer: (B)", "B"),
        ("B) Paris", "B"),
        ("(B)", "B"),
        ("B", "B"),
        ("The capital of France is Paris.", "B"),
        ("C) Rome", "C"),
        ("A dog is not a city.", None),
        ("It is Paris or Rome.", None),
    ],
)
def test_mcqa_lenient(text: str, extracted: str | None) -> None:
    task = {"options": OPTIONS, "expected_answer": "B", "grading_mode": "lenient"}
    result = load_verifier("mcqa").verify(task, reply(text))
    assert result["extracted_answer"] == extracted
    assert result["reward"] == (1.0 if extracted == "B" else 0.0)


@pytest.mark.parametrize(
    ("mode", "text", "extracted"),
    [
        ("strict_single_letter_boxed", "\\boxed{B}", "B"),
        ("strict_single_letter_boxed", "The answer is B.", None),
        ("strict_single_letter_boxed", "\\boxed{Paris}", None),
        ("lenient_boxed", "\\boxed{Paris}", "B"),
        ("lenient_answer_colon", "Answer: Paris", "B"),
        ("lenient_answer_colon", "Answer: B", "B"),
        ("lenient_answer_colon", "\\boxed{B}", None),
    ],
)
def test_mcqa_nemo_gym_modes(mode: str, text: str, extracted: str | None) -> None:
    task = {"options": OPTIONS, "expected_answer": "B", "grading_mode": mode}
    assert load_verifier("mcqa").verify(task, reply(text))["extracted_answer"] == extracted


def test_mcqa_default_mode_is_nemo_gyms_strict_boxed() -> None:
    task = {"options": OPTIONS, "expected_answer": "B"}
    assert load_verifier("mcqa").verify(task, reply("The answer is B."))["reward"] == 0.0
    assert load_verifier("mcqa").verify(task, reply("\\boxed{B}"))["reward"] == 1.0


def test_mcqa_bad_rows() -> None:
    verify = load_verifier("mcqa").verify
    with pytest.raises(VerifierError, match="one of the option letters"):
        verify({"options": OPTIONS, "expected_answer": "E"}, reply("E"))
    with pytest.raises(VerifierError, match="grading_mode"):
        verify({"options": OPTIONS, "expected_answer": "B", "grading_mode": "x"}, reply("B"))
    with pytest.raises(VerifierError, match="options"):
        verify({"options": "A, B", "expected_answer": "B"}, reply("B"))


# --------------------------------------------------------------------------- instruction following


IF_CASES: list[tuple[str, dict | None, str, str]] = [
    # (id, kwargs, a text that follows it, a text that does not)
    ("keywords:existence", {"keywords": ["ocean", "blue"]}, "The blue ocean.", "The sea."),
    (
        "keywords:frequency",
        {"keyword": "cat", "frequency": 2, "relation": "at least"},
        "cat and cat",
        "one cat",
    ),
    ("keywords:forbidden_words", {"forbidden_words": ["the"]}, "A cat.", "The cat."),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
        "zoo",
        "zzz",
    ),
    (
        "language:response_language",
        {"language": "fr"},
        "Bonjour, je suis très content de vous voir aujourd'hui, mes amis.",
        "Hello, I am very happy to see you today, my friends.",
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two.",
        "One. Two. Three.",
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\nTwo.", "One."),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        "one two three four five",
        "one two",
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "today"},
        "Hello there.\n\nToday, it rains.",
        "Hello there.\n\nTomorrow it rains.",
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Dear [name], at [address].",
        "Dear [name].",
    ),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\nP.S. bye", "Hi."),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "* one\n* two",
        "* one\n* two\n* three",
    ),
    ("detectable_format:constrained_response", None, "My answer is yes.", "Yes."),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        "*one* and **two**",
        "*one*",
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nfoo\nSection 2\nbar",
        "Section 1\nfoo",
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "a: 1"),
    ("detectable_format:title", {}, "<<My Title>>\ntext", "My Title\ntext"),
    ("combination:two_responses", {}, "One.\n******\nTwo.", "One.\n******\nOne."),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem."},
        "Write a poem. Roses are red.",
        "Roses are red.",
    ),
    (
        "startend:end_checker",
        {"end_phrase": "That is all."},
        "Hi. That is all.",
        "That is all. Hi.",
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "VERY GOOD",
        "Very good",
    ),
    (
        "change_case:english_capital",
        {},
        "THE WEATHER IS VERY NICE TODAY AND WE ARE GOING TO THE PARK.",
        "The weather is nice today.",
    ),
    (
        "change_case:english_lowercase",
        {},
        "the weather is very nice today and we are going to the park.",
        "The weather is nice today.",
    ),
    ("punctuation:no_comma", {}, "No commas here.", "A comma, here."),
    ("startend:quotation", {}, '"quoted"', "not quoted"),
]


def test_all_25_ifeval_instructions_are_covered() -> None:
    assert len(IFEVAL_IDS) == 25
    assert {case[0] for case in IF_CASES} == set(IFEVAL_IDS)
    # and NeMo Gym's environment's (verifiable-instructions' registry) besides
    assert len(OPEN_INSTRUCT_IDS) == 29
    assert set(INSTRUCTIONS) == set(IFEVAL_IDS) | set(OPEN_INSTRUCT_IDS)


@pytest.mark.parametrize(("iid", "kwargs", "good", "bad"), IF_CASES, ids=[c[0] for c in IF_CASES])
def test_instruction_checks(iid: str, kwargs: dict | None, good: str, bad: str) -> None:
    assert check_instruction(iid, kwargs, good) is True
    assert check_instruction(iid, kwargs, bad) is False


TWO = {
    "prompt": "Say hi.",
    "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
    "kwargs": [None, {}],
}


def test_instruction_following_is_binary_by_default_as_nemo_gym() -> None:
    verify = load_verifier("instruction_following").verify
    assert verify(TWO, reply("hi there"))["reward"] == 1.0
    half = verify(TWO, reply("hi, there"))
    assert half["reward"] == 0.0
    assert half["grading_mode"] == "binary"
    assert half["verdicts"] == "strict"
    assert half["follow_instruction_list"] == [False, True]
    assert half["strict_follow_instruction_list"] == [False, True]
    assert half["follow_all_instructions"] is False
    assert half["instruction_id_list"] == TWO["instruction_id_list"]


def test_instruction_following_fraction_mode_gives_partial_credit() -> None:
    verify = load_verifier("instruction_following").verify
    task = {**TWO, "grading_mode": "fraction"}
    assert verify(task, reply("hi, there"))["reward"] == 0.5
    assert verify(task, reply("Hi, there"))["reward"] == 0.0
    assert verify(task, reply("hi there"))["reward"] == 1.0


def test_grading_mode_from_verifier_metadata_wins_as_in_nemo_gym_main() -> None:
    verify = load_verifier("instruction_following").verify
    nested = {
        "verifier_metadata": {
            "instruction_id_list": TWO["instruction_id_list"],
            "kwargs": TWO["kwargs"],
            "prompt": "Say hi.",
            "grading_mode": "fraction",
        },
        "grading_mode": "binary",  # a stale top-level field loses
    }
    result = verify(nested, reply("hi, there"))
    assert result["reward"] == 0.5
    assert result["grading_mode"] == "fraction"
    assert load_verifier("auto").verify(nested, reply("hi, there"))["reward"] == 0.5
    with pytest.raises(VerifierError, match="grading_mode must be one of"):
        verify({**TWO, "grading_mode": "partial"}, reply("hi"))


def test_loose_verdicts_forgive_a_preamble_line_and_markdown() -> None:
    verify = load_verifier("instruction_following").verify
    task = {"instruction_id_list": ["detectable_format:json_format"], "kwargs": [None]}
    answer = 'Sure, here it is:\n{"a": 1}'
    strict = verify(task, reply(answer))
    assert strict["reward"] == 0.0
    assert strict["strict_follow_instruction_list"] == [False]
    assert strict["loose_follow_instruction_list"] == [True]
    loose = verify({**task, "verdicts": "loose"}, reply(answer))
    assert loose["reward"] == 1.0
    assert loose["verdicts"] == "loose"
    assert loose["follow_instruction_list"] == [True]


@pytest.mark.parametrize("answer", ["", "   ", "\n\t \n"])
@pytest.mark.parametrize("mode", ["binary", "fraction"])
@pytest.mark.parametrize("verdicts", ["strict", "loose"])
def test_an_empty_answer_scores_zero(answer: str, mode: str, verdicts: str) -> None:
    # every instruction that an empty text trivially "follows"
    ids = [
        "punctuation:no_comma",
        "keywords:forbidden_words",
        "change_case:english_lowercase",
        "language:response_language",
        "length_constraints:number_words",
        "punctuation:punctuation_dot",
        "first_word:first_word_sent",
        "count:lowercase_counting",
    ]
    kwargs = [
        None,
        {"forbidden_words": ["x"]},
        None,
        {"language": "en"},
        {"num_words": 5, "relation": "less than"},
        None,
        {"first_word": "yes"},
        {"N": 3},
    ]
    task = {"instruction_id_list": ids, "kwargs": kwargs, "grading_mode": mode}
    result = load_verifier("instruction_following").verify(
        {**task, "verdicts": verdicts}, reply(answer)
    )
    assert result["reward"] == 0.0
    assert result["strict_follow_instruction_list"] == [False] * len(ids)
    assert result["loose_follow_instruction_list"] == [False] * len(ids)


def test_ifeval_tokenization_traps() -> None:
    sentences = "length_constraints:number_sentences"
    two = {"num_sentences": 2, "relation": "at least"}
    three = {"num_sentences": 3, "relation": "at least"}
    # as IFEval counts (nltk's Punkt, English): "U.S." before a capital does not end a sentence,
    # "e.g." does (Punkt does not know it), and "Wait..." before "What?" does not
    assert check_instruction(sentences, two, "The U.S. is big. It has states.")
    assert not check_instruction(sentences, three, "The U.S. is big. It has states.")
    assert check_instruction(sentences, two, "Fruit, e.g. apples, is good.")
    assert not check_instruction(sentences, three, "Wait... What? Yes.")
    assert check_instruction(sentences, two, "Wait... What? Yes.")
    # nltk words: "U.S." is one upper-case word, "NASA's" is "NASA" + "'s"
    caps = {"capital_frequency": 2, "capital_relation": "at least"}
    assert check_instruction("change_case:capital_word_frequency", caps, "The U.S. and NASA's.")
    assert not check_instruction("change_case:capital_word_frequency", caps, "The U.S. and Nasa.")


def test_keyword_arguments_are_stripped_where_ifeval_strips_them() -> None:
    freq = {"keyword": " cat ", "frequency": 2, "relation": "at least"}
    assert check_instruction("keywords:frequency", freq, "cat, category")
    sections = {"section_spliter": " Section ", "num_sections": 2}
    assert check_instruction(
        "detectable_format:multiple_sections", sections, "Section 1 a Section 2 b"
    )
    assert check_instruction("startend:end_checker", {"end_phrase": " Bye. "}, "Hi. Bye.")
    # IFEval does not strip these: a keyword with spaces must match with its spaces
    assert not check_instruction("keywords:existence", {"keywords": [" space "]}, "spacecraft")


def test_a_keyword_that_is_not_a_regular_expression_is_matched_literally() -> None:
    # IFEval passes keywords to re unescaped (and crashes on this one); we match it literally
    assert check_instruction("keywords:existence", {"keywords": ["a(b"]}, "see a(b here")
    assert not check_instruction("keywords:existence", {"keywords": ["a(b"]}, "see ab here")


def test_nemo_gyms_extra_instruction_ids_run() -> None:
    verify = load_verifier("instruction_following").verify
    task = {
        "instruction_id_list": [
            "count:lowercase_counting",
            "last_word:last_word_answer",
            "letters:letter_counting",
            "paragraphs:paragraphs",
        ],
        "kwargs": [{"N": 3}, {"last_word": "end"}, {"N": 10, "relation": "at least"}, {}],
    }
    result = verify(task, reply("ONE TWO three.\n***\nTHE end."))
    assert result["strict_follow_instruction_list"] == [True, True, True, True]
    assert result["reward"] == 1.0
    assert verify(task, reply("one two three four.\n***\nTHE end."))["reward"] == 0.0


def test_instruction_kwargs_with_nulls_of_other_instructions_are_ignored() -> None:
    kwargs = {"num_words": 3, "relation": "less than", "keywords": None, "language": None}
    assert check_instruction("length_constraints:number_words", kwargs, "two words")


def test_unknown_instruction_id_and_bad_kwargs() -> None:
    with pytest.raises(VerifierError, match=r"unknown instruction id 'x:y' \(known: keywords"):
        check_instruction("x:y", {}, "text")
    with pytest.raises(VerifierError, match="needs the argument 'num_words'"):
        check_instruction("length_constraints:number_words", {"relation": "at least"}, "a")
    with pytest.raises(VerifierError, match="relation must be one of"):
        check_instruction(
            "length_constraints:number_words", {"num_words": 2, "relation": "about"}, "a"
        )
    with pytest.raises(VerifierError, match="n must be at least 1"):
        check_instruction(
            "keywords:keyword_specific_position", {"keyword": "a", "n": 0, "m": 1}, "a"
        )
    task = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]}
    with pytest.raises(VerifierError, match="one entry per instruction"):
        load_verifier("instruction_following").verify(task, reply("x"))
    with pytest.raises(VerifierError, match="nothing to grade"):
        load_verifier("instruction_following").verify(
            {"instruction_id_list": [], "kwargs": []}, reply("x")
        )


# --------------------------------------------------------------------------- tool use


def test_get_weather_is_deterministic() -> None:
    first = get_weather({"city": "Paris"}, {})
    assert first == get_weather({"city": "Paris"}, {})
    assert first["city"] == "Paris"
    assert weather_for("paris") == weather_for("Paris, France")
    with pytest.raises(ValueError, match="city"):
        get_weather({}, {})


def test_tool_use() -> None:
    verify = load_verifier("tool_use").verify
    task = {"expected_city": "Paris"}
    condition, _ = weather_for("Paris")
    right = verify(task, weather_trajectory("Paris", f"It is {condition} in Paris today."))
    assert right["reward"] == 1.0 and right["extracted_answer"] == "Paris"
    # the right call, but the answer does not report the result
    assert verify(task, weather_trajectory("Paris", "I checked the weather."))["reward"] == 0.0
    # listing every condition is not reporting the result
    hedge = "It is sunny, cloudy, rainy, snowy, windy or foggy."
    assert verify(task, weather_trajectory("Paris", hedge))["reward"] == 0.0
    # the wrong city
    wrong = verify(task, weather_trajectory("Paris", f"It is {condition}.", call_city="Rome"))
    assert wrong["reward"] == 0.0 and wrong["called_cities"] == ["Rome"]
    # no call at all
    assert verify(task, reply(f"It is {condition} in Paris."))["reward"] == 0.0


def test_tool_use_without_expected_city_follows_nemo_gym() -> None:
    verify = load_verifier("tool_use").verify
    # NeMo Gym's example_single_tool_call scores every rollout 1.0 ...
    called = verify({}, weather_trajectory("Oslo", "whatever"))
    assert called["reward"] == 1.0 and called["grading_mode"] == "nemo_gym"
    assert called["called_cities"] == ["Oslo"] and called["extracted_answer"] == "Oslo"
    assert verify({}, reply("no call"))["reward"] == 1.0
    # ... except that an empty rollout scores 0 here, as under every bundled verifier
    assert verify({}, reply(""))["reward"] == 0.0
    assert verify({}, {"output": []})["reward"] == 0.0
    # the named stricter modes
    assert verify({"grading_mode": "called_tool"}, reply("no call"))["reward"] == 0.0
    assert verify({"grading_mode": "called_tool"}, weather_trajectory("Oslo", ""))["reward"] == 1.0
    with pytest.raises(VerifierError, match="expected_city"):
        verify({"grading_mode": "checked"}, reply("x"))
    with pytest.raises(VerifierError, match="grading_mode"):
        verify({"grading_mode": "bogus"}, reply("x"))


# --------------------------------------------------------------------------- auto


def test_auto_dispatch() -> None:
    auto = load_verifier("auto")
    weather_tools = {"tools": [{"type": "function", "name": "get_weather", "parameters": {}}]}
    cases = [
        ({"verifier": "math", "expected_answer": "3", "options": OPTIONS}, "\\boxed{3}", "math"),
        (
            {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
            "hi",
            "instruction_following",
        ),
        ({"options": OPTIONS, "expected_answer": "B"}, "\\boxed{B}", "mcqa"),
        ({"expected_answer": "B", "grading_mode": "lenient_boxed"}, "\\boxed{B}", "mcqa"),
        ({"responses_create_params": weather_tools, "expected_city": "Oslo"}, "x", "tool_use"),
        ({"expected_answer": "3"}, "\\boxed{3}", "math"),
    ]
    for task, text, name in cases:
        assert auto.verify(task, reply(text))["verifier"] == name
    assert "get_weather" in auto.tools
    assert [spec["name"] for spec in auto.tool_specs] == ["get_weather"]
    with pytest.raises(VerifierError, match=r"instruction_id_list.*options.*expected_answer"):
        auto.verify({"question": "?"}, reply("x"))
    with pytest.raises(VerifierError, match="'verifier' field is 'bogus'"):
        auto.verify({"verifier": "bogus"}, reply("x"))


# --------------------------------------------------------------------------- user files


def _write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))
    # make each edit visible even on file systems with a coarse modification time
    stamp = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def test_user_file_loads_and_reloads_after_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "my_verifier.py"
    _write(
        path,
        """
        def verify(task, response):
            return 0.25

        TOOLS = {"echo": lambda arguments, task: arguments}
        TOOL_SPECS = [{"type": "function", "name": "echo", "parameters": {}}]
        """,
    )
    verifier = load_verifier(str(path))
    assert verifier.verify({}, reply("x")) == {"reward": 0.25}
    assert verifier.call_tool("echo", {"a": 1}, {}) == {"a": 1}
    assert verifier.tool_specs[0]["name"] == "echo"

    _write(path, 'def verify(task, response):\n    return {"reward": 1, "note": "edited"}\n')
    # the same object picks the edit up, and so does a new load
    assert verifier.verify({}, reply("x")) == {"reward": 1.0, "note": "edited"}
    assert load_verifier(str(path)).verify({}, reply("x"))["note"] == "edited"
    assert "echo" not in load_verifier(str(path)).tools


def test_user_file_errors(tmp_path: Path) -> None:
    with pytest.raises(VerifierError, match="verifier file not found"):
        load_verifier(str(tmp_path / "missing.py"))

    no_verify = tmp_path / "no_verify.py"
    _write(no_verify, "def score(task, response):\n    return 1\n")
    with pytest.raises(VerifierError, match="defines no verify"):
        load_verifier(str(no_verify))

    broken = tmp_path / "broken.py"
    _write(broken, "def verify(task, response):\n    return 1\n\nx = (\n")
    with pytest.raises(VerifierError, match=r"broken\.py:4: syntax error"):
        load_verifier(str(broken))

    bad_result = tmp_path / "bad_result.py"
    _write(bad_result, "def verify(task, response):\n    return 'yes'\n")
    with pytest.raises(VerifierError, match=r"bad_result\.py: verify\(\) returned 'yes'"):
        load_verifier(str(bad_result)).verify({}, reply("x"))

    raises = tmp_path / "raises.py"
    _write(raises, "def verify(task, response):\n    return task['missing']\n")
    with pytest.raises(VerifierError, match=r"raises\.py:2: verify\(\) raised KeyError"):
        load_verifier(str(raises)).verify({}, reply("x"))


def test_user_file_broken_by_an_edit_reports_the_error(tmp_path: Path) -> None:
    path = tmp_path / "v.py"
    _write(path, "def verify(task, response):\n    return 1\n")
    verifier = load_verifier(str(path))
    assert verifier.verify({}, reply("x"))["reward"] == 1.0
    _write(path, "def verify(task, response)\n    return 1\n")
    with pytest.raises(VerifierError, match=r"v\.py:1: syntax error"):
        verifier.verify({}, reply("x"))
    _write(path, "def verify(task, response):\n    return 0\n")
    assert verifier.verify({}, reply("x"))["reward"] == 0.0


def test_example_test_verifier_gives_partial_credit() -> None:
    verifier = load_verifier(str(REPO / "config" / "verifiers" / "test_verifier.py"))
    task = {
        "instruction_id_list": ["punctuation:no_comma", "startend:quotation"],
        "kwargs": [{}, {}],
    }
    rewards = [verifier.verify(task, reply(t))["reward"] for t in ('"a b"', '"a, b"', "a, b")]
    assert rewards == [1.0, 0.5, 0.0]


# --------------------------------------------------------------------------- bundled tasks


def test_bundled_task_sets_are_deterministic_and_match_data(tmp_path: Path) -> None:
    counts = write_bundled_tasks(tmp_path)
    assert counts == {
        "debug_tasks.jsonl": 10,
        "sweep_tasks.jsonl": 120,
        "research_tasks.jsonl": 60,
        "verification_test.jsonl": 30,
    }
    for name in BUNDLED_SETS:
        shipped = REPO / "data" / name
        if shipped.exists():  # the committed files are what the generator makes
            assert shipped.read_bytes() == (tmp_path / name).read_bytes(), name


def test_bundled_tasks_are_well_formed_and_gradable() -> None:
    auto = load_verifier("auto")
    for name in BUNDLED_SETS:
        rows = make_task_set(name)
        assert len({row["task_id"] for row in rows}) == len(rows)
        kinds = {row["verifier"] for row in rows}
        if name == "verification_test.jsonl":
            assert kinds == {"instruction_following"}
            assert all(len(row["instruction_id_list"]) == 2 for row in rows)
        else:
            assert kinds == {"math", "mcqa", "instruction_following", "tool_use"}
        for row in rows:
            params = row["responses_create_params"]
            assert params["input"][0]["role"] == "user" and params["input"][0]["content"]
            assert 32 <= params["max_output_tokens"] <= 160
            # every row grades without error through auto, and to 0 for an empty answer
            result = auto.verify(row, reply(""))
            assert result["verifier"] == row["verifier"]
            assert 0.0 <= result["reward"] <= 1.0
            if row["verifier"] == "instruction_following":
                assert result["reward"] == 0.0, row["instruction_id_list"]
    debug = make_task_set("debug_tasks.jsonl")
    assert [row["verifier"] for row in debug[:4]] == [
        "math",
        "mcqa",
        "instruction_following",
        "tool_use",
    ]
