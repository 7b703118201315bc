"""``instruction_following``: IFEval's instructions and NeMo Gym's extra ones, graded as NeMo Gym.

References:

- **What each instruction means**: Google's IFEval (``instructions.py`` as packaged in lm-eval,
  ``lm_eval/tasks/ifeval``) for its 25 ids; NeMo Gym's ``verifiable-instructions`` package
  (open-instruct's constraints) for the 29 ids NeMo Gym's environment adds, such as
  ``count:lowercase_counting`` or ``last_word:last_word_answer`` (see ``open_instruct.py``). Our
  own code, agreeing with both on the recorded cases in ``tests/fixtures/ifeval/``. Sentences
  and words are nltk's, as in IFEval (``ifeval_text.py``).
- **Verdicts**: IFEval's. *strict*: the answer is not empty (or whitespace only) and follows the
  instruction. *loose*: so does one of eight variants of the answer: itself, without its first
  line, without its last line, without both, and each of those four with every ``*`` removed.
- **Reward**: NeMo Gym's ``instruction_following`` server. ``grading_mode`` ``binary`` (the
  default): 1.0 when every instruction is followed, else 0.0; ``fraction``: the share followed.
  The reward uses the strict verdicts, as NeMo Gym's does; ``verdicts: loose`` uses the loose ones.

Task fields (NeMo Gym's rows, either at the top level, as in NeMo Gym 0.4.0, or inside
``verifier_metadata``, as in NeMo Gym's current main, which wins when both are there):

- ``instruction_id_list``: e.g. ``["punctuation:no_comma", "length_constraints:number_words"]``
- ``kwargs``: one entry per id: that instruction's arguments (``null`` or ``{}`` when it has none).
  Keys whose value is null, and keys the instruction does not take, are ignored (IFEval's data
  rows carry every key). Strings are stripped where IFEval strips them.
- ``grading_mode``: ``binary`` (default) or ``fraction``; ``verdicts``: ``strict`` (default) or
  ``loose`` (a rollsweep field).

What the row gets (``verification`` in rescored rows): ``grading_mode``, ``verdicts``,
``instruction_id_list``, ``follow_instruction_list`` and ``follow_all_instructions`` (the verdicts
that made the reward, NeMo Gym's names), ``strict_follow_instruction_list`` and
``loose_follow_instruction_list``.

Deliberate differences from the references, all on data they mishandle: an empty or
whitespace-only answer follows no instruction under every id (IFEval's rule; NeMo Gym's server
lets an empty answer pass e.g. ``punctuation:no_comma``); an unknown id, a missing or malformed
argument, or an empty ``instruction_id_list`` is a VerifierError (NeMo Gym counts an unknown id as
not followed, IFEval and open-instruct draw a random value for a missing argument); a keyword that
is not a valid regular expression is matched literally (the references raise). The answer is
rollsweep's ``final_text`` (the last assistant message's text parts); NeMo Gym's server reads the
first content part of the last output item.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langdetect
import yaml
from langdetect import DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

from rollsweep.verifiers import open_instruct as oi
from rollsweep.verifiers.base import Verifier, VerifierError, final_text
from rollsweep.verifiers.ifeval_text import count_sentences, count_words, word_tokenize
from rollsweep.verifiers.open_instruct import RELATIONS, ifeval_regex

GRADING_MODES = ("binary", "fraction")
VERDICT_SETS = ("strict", "loose")

#: Language codes IFEval's response_language instructions use, with their English names.
LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "ar": "Arabic", "hi": "Hindi",
    "bn": "Bengali", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "mr": "Marathi", "kn": "Kannada",
    "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "ne": "Nepali", "fa": "Persian",
    "fi": "Finnish", "sw": "Swahili", "th": "Thai", "vi": "Vietnamese", "ko": "Korean",
    "ja": "Japanese", "zh-cn": "Chinese", "bg": "Bulgarian", "pl": "Polish", "tr": "Turkish",
    "uk": "Ukrainian", "he": "Hebrew",
}  # fmt: skip


def _compare(value: int, relation: str, threshold: int) -> bool:
    return value < threshold if relation == RELATIONS[0] else value >= threshold


_lang_lock = threading.Lock()


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code langdetect gives the text, or None when it cannot tell."""
    with _lang_lock:  # the seeded factory is shared state
        DetectorFactory.seed = 0  # IFEval leaves it unseeded; seeded, a verdict is repeatable
        try:
            return langdetect.detect(text)
        except LangDetectException:
            return None


def _is_language(text: str, language: str) -> bool:
    """IFEval's test: langdetect says ``language``, or cannot tell (then it passes)."""
    detected = detect_language(text)
    return detected is None or detected == language


# --------------------------------------------------------------------------- IFEval's checks
# Each takes the response text and the instruction's arguments, and answers as IFEval's
# ``check_following`` does.


def _keywords_existence(text: str, keywords: Sequence[str]) -> bool:
    return all(ifeval_regex(k, re.IGNORECASE).search(text) for k in keywords)


def _keywords_frequency(text: str, keyword: str, frequency: int, relation: str) -> bool:
    found = ifeval_regex(keyword.strip(), re.IGNORECASE).findall(text)
    return _compare(len(found), relation, frequency)


def _forbidden_words(text: str, forbidden_words: Sequence[str]) -> bool:
    for word in forbidden_words:
        try:
            pattern = re.compile(rf"\b{word}\b", re.IGNORECASE)
        except re.error:
            pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        if pattern.search(text):
            return False
    return True


def _letter_frequency(text: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    letter = letter.strip().lower()
    if len(letter) != 1 or not "a" <= letter <= "z":
        raise VerifierError(f"letter must be one ASCII letter, got {letter!r}")
    return _compare(Counter(text.lower())[letter], let_relation, let_frequency)


def _response_language(text: str, language: str) -> bool:
    return _is_language(text, language)


def _number_sentences(text: str, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(text), relation, num_sentences)


def _number_paragraphs(text: str, num_paragraphs: int) -> bool:
    return oi._paragraphs_ok(re.split(r"\s?\*\*\*\s?", text), num_paragraphs)


def _number_words(text: str, num_words: int, relation: str) -> bool:
    return _compare(count_words(text), relation, num_words)


_FIRST_WORD_STOPS = frozenset(".,?!'\"")


def _nth_paragraph_first_word(
    text: str, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    if not 1 <= nth_paragraph <= num_paragraphs:
        raise VerifierError(
            f"nth_paragraph must be between 1 and num_paragraphs ({num_paragraphs}), "
            f"got {nth_paragraph}"
        )
    paragraphs = text.split("\n\n")
    # IFEval counts the non-empty paragraphs but picks the n-th of all of them, empty ones too
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].lstrip("'").lstrip('"')
    first = ""
    for char in word:
        if char in _FIRST_WORD_STOPS:
            break
        first += char.lower()
    return count == num_paragraphs and first == first_word.lower()


def _number_placeholders(text: str, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= num_placeholders


def _postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(ifeval_regex(pattern, re.MULTILINE).findall(text.lower()))


def _number_bullet_lists(text: str, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(text: str) -> bool:
    return any(option in text.strip() for option in CONSTRAINED_RESPONSES)


def _number_highlighted_sections(text: str, num_highlights: int) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [
        h
        for h in re.findall(r"\*\*[^\n\*]*\*\*", text)
        if h.removeprefix("**").removesuffix("**").strip()
    ]
    return len(single) + len(double) >= num_highlights


def _multiple_sections(text: str, section_spliter: str, num_sections: int) -> bool:
    pattern = ifeval_regex(r"\s?" + section_spliter.strip() + r"\s?\d+\s?")
    return len(pattern.split(text)) - 1 >= num_sections


def _json_format(text: str) -> bool:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):  # one after the other, as IFEval
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _title(text: str) -> bool:
    titles = re.findall(r"<<[^\n]+>>", text)
    return any(t.lstrip("<").rstrip(">").strip() for t in titles)


def _two_responses(text: str) -> bool:
    parts = text.split("******")
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part.strip())
        elif 0 < index < len(parts) - 1:
            return False
    return len(kept) == 2 and kept[0] != kept[1]


def _repeat_prompt(text: str, prompt_to_repeat: str) -> bool:
    return text.strip().lower().startswith(prompt_to_repeat.strip().lower())


def _end_checker(text: str, end_phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _capital_word_frequency(text: str, capital_frequency: int, capital_relation: str) -> bool:
    capitals = [w for w in word_tokenize(text) if w.isupper()]
    return _compare(len(capitals), capital_relation, capital_frequency)


def _english_capital(text: str) -> bool:
    return text.isupper() and _is_language(text, "en")


def _english_lowercase(text: str) -> bool:
    return text.islower() and _is_language(text, "en")


def _no_comma(text: str) -> bool:
    return "," not in text


def _quotation(text: str) -> bool:
    body = text.strip()
    return len(body) > 1 and body[0] == '"' and body[-1] == '"'


# --------------------------------------------------------------------------- the registry

#: An argument that is one word: a string, or (as open-instruct's data sometimes has) a list whose
#: first element is the word.
WORD = "word"


@dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: its check, its arguments, and how to say it to a model."""

    id: str
    check: Callable[..., bool]
    #: argument name -> type (int, str, list, or WORD)
    arguments: Mapping[str, Any]
    #: an English sentence with ``{argument}`` fields, for prompts
    template: str
    #: from Google's IFEval (else from open-instruct, as NeMo Gym's environment adds)
    ifeval: bool = True

    def describe(self, kwargs: Mapping[str, Any] | None = None) -> str:
        """The instruction as a sentence for a prompt, e.g. 'Do not use any commas.'"""
        values = dict(_clean_kwargs(self, kwargs))
        if "keywords" in values:
            values["keywords"] = ", ".join(repr(k) for k in values["keywords"])
        if "forbidden_words" in values:
            values["forbidden_words"] = ", ".join(repr(w) for w in values["forbidden_words"])
        if "language" in values:
            values["language"] = LANGUAGE_NAMES.get(values["language"], values["language"])
        return self.template.format(**values)


#: The registry's data: ids, checks, arguments and sentences (instructions.yaml).
REGISTRY_FILE = Path(__file__).with_name("instructions.yaml")
_ARGUMENT_TYPES = {"str": str, "int": int, "list": list, "word": WORD}


def _check_named(name: str) -> Callable[..., bool]:
    """A check by its name in the registry: ``oi.NAME`` in open_instruct, else in this module."""
    found = getattr(oi, name[3:], None) if name.startswith("oi.") else globals().get(name)
    if not callable(found):
        raise ValueError(f"{REGISTRY_FILE}: no check function named {name!r}")
    return found


def _load_registry(section: str) -> dict[str, Instruction]:
    entries = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))[section]
    return {
        entry["id"]: Instruction(
            entry["id"],
            _check_named(entry["check"]),
            {name: _ARGUMENT_TYPES[kind] for name, kind in entry["arguments"].items()},
            entry["template"],
            ifeval=section == "ifeval",
        )
        for entry in entries
    }


_IFEVAL = _load_registry("ifeval")
_OPEN_INSTRUCT = _load_registry("open_instruct")

#: Every instruction id the verifier knows: IFEval's 25, then the 29 NeMo Gym's environment adds.
INSTRUCTIONS: dict[str, Instruction] = {**_IFEVAL, **_OPEN_INSTRUCT}
#: Google IFEval's 25 ids.
IFEVAL_IDS: tuple[str, ...] = tuple(_IFEVAL)
#: The ids NeMo Gym's environment (open-instruct's constraints) adds to IFEval's.
OPEN_INSTRUCT_IDS: tuple[str, ...] = tuple(_OPEN_INSTRUCT)


def get_instruction(instruction_id: str) -> Instruction:
    """The instruction of an id; an unknown id is a VerifierError listing the known ones."""
    instruction = INSTRUCTIONS.get(instruction_id) if isinstance(instruction_id, str) else None
    if instruction is None:
        raise VerifierError(
            f"unknown instruction id {instruction_id!r} (known: {', '.join(INSTRUCTIONS)})"
        )
    return instruction


#: Arguments that count something from 1 (a 0 or less would make the references draw a random
#: value or index from the end).
_POSITIVE = frozenset({"n", "m", "small_n", "N", "nth_paragraph", "n_sent", "n_words"})


def _clean_kwargs(instruction: Instruction, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The instruction's arguments from a row: nulls and other instructions' keys dropped,
    required ones present, numbers as ints."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise VerifierError(
            f"kwargs for {instruction.id!r} must be an object or null, got {type(kwargs).__name__}"
        )
    values: dict[str, Any] = {}
    for name, kind in instruction.arguments.items():
        value = kwargs.get(name)
        if value is None:
            raise VerifierError(
                f"instruction {instruction.id!r} needs the argument {name!r} in its kwargs"
            )
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise VerifierError(
                    f"instruction {instruction.id!r}: {name} must be an integer, got {value!r}"
                )
            value = int(value)
            if name in _POSITIVE and value < 1:
                raise VerifierError(
                    f"instruction {instruction.id!r}: {name} must be at least 1, got {value}"
                )
        elif kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise VerifierError(
                    f"instruction {instruction.id!r}: {name} must be a list of strings, "
                    f"got {value!r}"
                )
        else:
            if kind == WORD and isinstance(value, list) and value:
                value = value[0]
            if not isinstance(value, str):
                raise VerifierError(
                    f"instruction {instruction.id!r}: {name} must be a string, got {value!r}"
                )
        if name.endswith("relation") and value not in RELATIONS:
            raise VerifierError(
                f"instruction {instruction.id!r}: {name} must be one of "
                f"{', '.join(map(repr, RELATIONS))}, got {value!r}"
            )
        values[name] = value
    return values


def loose_variants(text: str) -> list[str]:
    """IFEval's loose variants of an answer: itself, without its first line, its last line,
    both; then the same four with every ``*`` removed (in IFEval's order)."""
    lines = text.split("\n")
    cut = [
        text,
        "\n".join(lines[1:]).strip(),
        "\n".join(lines[:-1]).strip(),
        "\n".join(lines[1:-1]).strip(),
    ]
    return [cut[0], cut[0].replace("*", ""), *cut[1:], *(c.replace("*", "") for c in cut[1:])]


@dataclass(frozen=True)
class Verdict:
    """One instruction's verdicts on one answer."""

    strict: bool
    loose: bool


def _bound_check(instruction_id: str, kwargs: Mapping[str, Any] | None) -> Callable[[str], bool]:
    instruction = get_instruction(instruction_id)
    values = _clean_kwargs(instruction, kwargs)
    return functools.partial(instruction.check, **values)


def follows(instruction_id: str, kwargs: Mapping[str, Any] | None, text: str) -> bool:
    """The instruction's own test on ``text`` as it is (no empty-answer rule, no variants):
    what IFEval's and open-instruct's ``check_following`` answer."""
    return bool(_bound_check(instruction_id, kwargs)(text))


def judge_instruction(instruction_id: str, kwargs: Mapping[str, Any] | None, text: str) -> Verdict:
    """IFEval's strict and loose verdicts of one instruction on an answer."""
    check = _bound_check(instruction_id, kwargs)
    strict = bool(text.strip()) and bool(check(text))
    loose = strict or any(v.strip() and check(v) for v in loose_variants(text)[1:])
    return Verdict(strict=strict, loose=bool(loose))


def check_instruction(instruction_id: str, kwargs: Mapping[str, Any] | None, text: str) -> bool:
    """Does ``text`` follow one instruction (IFEval's strict verdict)? Unknown ids and bad
    kwargs are VerifierErrors."""
    return judge_instruction(instruction_id, kwargs, text).strict


def _aligned(
    instruction_ids: Sequence[str], kwargs_list: Sequence[Mapping[str, Any] | None] | None
) -> list[tuple[str, Mapping[str, Any] | None]]:
    if isinstance(instruction_ids, str) or not isinstance(instruction_ids, Sequence):
        raise VerifierError(
            f"instruction_id_list must be a list of ids, got {type(instruction_ids).__name__}"
        )
    if kwargs_list is None:
        kwargs_list = [None] * len(instruction_ids)
    if isinstance(kwargs_list, Mapping | str) or len(kwargs_list) != len(instruction_ids):
        raise VerifierError(
            f"kwargs must be a list with one entry per instruction id ({len(instruction_ids)} ids)"
        )
    return list(zip(instruction_ids, kwargs_list, strict=True))


def judge_instructions(
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None] | None,
    text: str,
) -> list[Verdict]:
    """Strict and loose verdicts, one per instruction (kwargs aligned with the ids)."""
    return [judge_instruction(iid, kw, text) for iid, kw in _aligned(instruction_ids, kwargs_list)]


def check_instructions(
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None] | None,
    text: str,
) -> list[bool]:
    """One bool per instruction: does ``text`` follow it (strict)? (kwargs aligned with the ids)"""
    return [v.strict for v in judge_instructions(instruction_ids, kwargs_list, text)]


def _task_field(task: Mapping[str, Any], name: str) -> Any:
    """A field of the row: in ``verifier_metadata`` (NeMo Gym's current rows) or at the top."""
    metadata = task.get("verifier_metadata")
    if isinstance(metadata, Mapping) and name in metadata:
        return metadata[name]
    return task.get(name)


def _choice(task: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = _task_field(task, name)
    if value is None:
        return allowed[0]
    if value not in allowed:
        raise VerifierError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def verify_instruction_following(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """NeMo Gym's reward over IFEval's verdicts: all followed (binary) or the share (fraction)."""
    ids = _task_field(task, "instruction_id_list")
    if ids is None:
        raise VerifierError("the instruction_following verifier needs 'instruction_id_list'")
    mode = _choice(task, "grading_mode", GRADING_MODES)
    verdict_set = _choice(task, "verdicts", VERDICT_SETS)
    verdicts = judge_instructions(ids, _task_field(task, "kwargs"), final_text(response))
    if not verdicts:
        raise VerifierError("instruction_id_list is empty: there is nothing to grade")
    strict = [v.strict for v in verdicts]
    loose = [v.loose for v in verdicts]
    chosen = strict if verdict_set == "strict" else loose
    reward = float(all(chosen)) if mode == "binary" else sum(chosen) / len(chosen)
    return {
        "reward": reward,
        "grading_mode": mode,
        "verdicts": verdict_set,
        "instruction_id_list": list(ids),
        "follow_instruction_list": chosen,
        "follow_all_instructions": all(chosen),
        "strict_follow_instruction_list": strict,
        "loose_follow_instruction_list": loose,
    }


VERIFIER = Verifier(name="instruction_following", verify=verify_instruction_following)
