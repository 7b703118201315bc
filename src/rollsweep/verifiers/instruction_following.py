"""``instruction_following``: IFEval-style checks of verifiable instructions.

Task fields (NeMo Gym's ``instruction_following`` environment, Google's IFEval format):

- ``instruction_id_list``: e.g. ``["punctuation:no_comma", "length_constraints:number_words"]``
- ``kwargs``: one entry per id (a dict of that instruction's arguments; ``null`` or ``{}`` for
  instructions without any). Keys whose value is null are ignored, as in IFEval's data files where
  every row carries every key.
- ``prompt``: the user's prompt.

The reward is the fraction of instructions followed (two instructions give 0.0, 0.5 or 1.0 —
NeMo Gym's own server gives 1.0 only when all are followed; that is ``follow_all_instructions``
here). Details: ``follow_instruction_list`` (one bool per instruction) and
``follow_all_instructions``.

All 25 instructions of Google's IFEval are implemented here (our own code, following the
published semantics). Sentences and words are counted with regular expressions rather than
nltk, so counts can differ from IFEval's by one on unusual punctuation. Language checks use the
``langdetect`` package (seeded, so deterministic); when it cannot decide (e.g. an empty text),
the language check passes, as in IFEval.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rollsweep.verifiers.base import Verifier, VerifierError, final_text

RELATIONS = ("less than", "at least")

#: Language codes IFEval's response_language instructions use, with their English names.
LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "ar": "Arabic", "hi": "Hindi",
    "bn": "Bengali", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "mr": "Marathi", "kn": "Kannada",
    "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "ne": "Nepali", "fa": "Persian",
    "fi": "Finnish", "sw": "Swahili", "th": "Thai", "vi": "Vietnamese", "ko": "Korean",
    "ja": "Japanese", "zh-cn": "Chinese", "bg": "Bulgarian", "pl": "Polish", "tr": "Turkish",
}  # fmt: skip


# --------------------------------------------------------------------------- text helpers


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of letters, digits and underscores."""
    return len(re.findall(r"\w+", text))


_ABBREVIATIONS = re.compile(
    r"\b(Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|Inc|Ltd|Co|e\.g|i\.e|a\.m|p\.m|U\.S)\.", re.I
)


def split_sentences(text: str) -> list[str]:
    """Sentences: text split after ., ! or ? followed by space (abbreviations and decimals kept)."""
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "<prd>"), text)
    protected = re.sub(r"(\d)\.(\d)", r"\1<prd>\2", protected)
    protected = re.sub(r"\b([A-Z])\.(?=\s+[A-Z])", r"\1<prd>", protected)  # initials: "J. Smith"
    parts = re.split(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n", protected)
    return [part.replace("<prd>", ".").strip() for part in parts if part and part.strip()]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def _compare(value: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return value < threshold
    if relation == "at least":
        return value >= threshold
    raise VerifierError(f"unknown relation {relation!r} (known: {', '.join(RELATIONS)})")


_lang_lock = threading.Lock()


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code langdetect gives the text, or None when it cannot tell."""
    try:
        import langdetect
        from langdetect import DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:  # pragma: no cover - langdetect is a dependency
        raise VerifierError(
            "language checks need the 'langdetect' package: pip install langdetect"
        ) from None
    with _lang_lock:  # the seeded factory is shared state
        DetectorFactory.seed = 0
        try:
            return langdetect.detect(text)
        except LangDetectException:
            return None


def _is_language(text: str, language: str) -> bool:
    detected = detect_language(text)
    return detected is None or detected == language


# --------------------------------------------------------------------------- the checks
# Each check takes the response text and the instruction's keyword arguments.


def _keywords_existence(text: str, keywords: Sequence[str]) -> bool:
    return all(re.search(re.escape(k), text, re.I) for k in keywords)


def _keywords_frequency(text: str, keyword: str, frequency: int, relation: str) -> bool:
    return _compare(len(re.findall(re.escape(keyword), text, re.I)), relation, frequency)


def _forbidden_words(text: str, forbidden_words: Sequence[str]) -> bool:
    return not any(re.search(rf"\b{re.escape(w)}\b", text, re.I) for w in forbidden_words)


def _letter_frequency(text: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    return _compare(Counter(text.lower())[letter.lower()], let_relation, let_frequency)


def _response_language(text: str, language: str) -> bool:
    return _is_language(text, language)


def _number_sentences(text: str, num_sentences: int, relation: str) -> bool:
    return _compare(count_sentences(text), relation, num_sentences)


def _paragraphs_by_divider(text: str) -> list[str] | None:
    """Paragraphs separated by the markdown divider ``***``; None if one inside is empty."""
    parts = re.split(r"\s?\*\*\*\s?", text)
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif 0 < index < len(parts) - 1:
            return None
    return kept


def _number_paragraphs(text: str, num_paragraphs: int) -> bool:
    paragraphs = _paragraphs_by_divider(text)
    return paragraphs is not None and len(paragraphs) == num_paragraphs


def _number_words(text: str, num_words: int, relation: str) -> bool:
    return _compare(count_words(text), relation, num_words)


def _nth_paragraph_first_word(
    text: str, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    paragraphs = [p.strip() for p in re.split(r"\n\n", text) if p.strip()]
    if len(paragraphs) != num_paragraphs or not 1 <= nth_paragraph <= len(paragraphs):
        return False
    word = paragraphs[nth_paragraph - 1].split()[0].lstrip("'\"")
    word = re.split(r"[.,?!'\"]", word)[0]
    return word.lower() == first_word.strip().lower()


def _number_placeholders(text: str, num_placeholders: int) -> bool:
    return len(re.findall(r"\[.*?\]", text)) >= num_placeholders


def _postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.M))


def _number_bullet_lists(text: str, num_bullets: int) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.M)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.M)
    return len(stars) + len(dashes) == num_bullets


CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(text: str) -> bool:
    return any(option in text.strip() for option in CONSTRAINED_RESPONSES)


def _number_highlighted_sections(text: str, num_highlights: int) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.strip("*").strip()]
    return len(single) + len(double) >= num_highlights


def _multiple_sections(text: str, section_spliter: str, num_sections: int) -> bool:
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, text)) - 1 >= num_sections


def _json_format(text: str) -> bool:
    body = text.strip()
    body = re.sub(r"^```(?:json|JSON|Json)?\s*", "", body)
    body = re.sub(r"\s*```$", "", body).strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _title(text: str) -> bool:
    return any(t.strip("<>").strip() for t in re.findall(r"<<[^\n]+>>", text))


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
    capitals = [w for w in re.findall(r"\w+", text) if w.isupper()]
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


@dataclass(frozen=True)
class Instruction:
    """One verifiable instruction: its check, its arguments, and how to say it to a model."""

    id: str
    check: Callable[..., bool]
    #: argument name -> type (int, str or list)
    arguments: Mapping[str, type]
    #: an English sentence with ``{argument}`` fields, for prompts
    template: str

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


INSTRUCTIONS: dict[str, Instruction] = {
    i.id: i
    for i in (
        Instruction(
            "keywords:existence", _keywords_existence, {"keywords": list},
            "Include the keywords {keywords} in the response.",
        ),
        Instruction(
            "keywords:frequency", _keywords_frequency,
            {"keyword": str, "frequency": int, "relation": str},
            "In your response, the word '{keyword}' should appear {relation} {frequency} times.",
        ),
        Instruction(
            "keywords:forbidden_words", _forbidden_words, {"forbidden_words": list},
            "Do not include the words {forbidden_words} in the response.",
        ),
        Instruction(
            "keywords:letter_frequency", _letter_frequency,
            {"letter": str, "let_frequency": int, "let_relation": str},
            "In your response, the letter '{letter}' should appear {let_relation} "
            "{let_frequency} times.",
        ),
        Instruction(
            "language:response_language", _response_language, {"language": str},
            "Your ENTIRE response should be in {language}, no other language is allowed.",
        ),
        Instruction(
            "length_constraints:number_sentences", _number_sentences,
            {"num_sentences": int, "relation": str},
            "Your response should contain {relation} {num_sentences} sentences.",
        ),
        Instruction(
            "length_constraints:number_paragraphs", _number_paragraphs, {"num_paragraphs": int},
            "There should be {num_paragraphs} paragraphs. Paragraphs are separated with the "
            "markdown divider: ***",
        ),
        Instruction(
            "length_constraints:number_words", _number_words, {"num_words": int, "relation": str},
            "Answer with {relation} {num_words} words.",
        ),
        Instruction(
            "length_constraints:nth_paragraph_first_word", _nth_paragraph_first_word,
            {"num_paragraphs": int, "nth_paragraph": int, "first_word": str},
            "There should be {num_paragraphs} paragraphs, separated from each other by two new "
            "lines. Paragraph {nth_paragraph} must start with the word '{first_word}'.",
        ),
        Instruction(
            "detectable_content:number_placeholders", _number_placeholders,
            {"num_placeholders": int},
            "The response must contain at least {num_placeholders} placeholders in square "
            "brackets, such as [address].",
        ),
        Instruction(
            "detectable_content:postscript", _postscript, {"postscript_marker": str},
            "At the end of your response, please add a postscript starting with "
            "{postscript_marker}",
        ),
        Instruction(
            "detectable_format:number_bullet_lists", _number_bullet_lists, {"num_bullets": int},
            "Your answer must contain exactly {num_bullets} bullet points. Use markdown bullet "
            "points such as:\n* This is point 1.",
        ),
        Instruction(
            "detectable_format:constrained_response", _constrained_response, {},
            "Answer with one of the following options: ('My answer is yes.', 'My answer is "
            "no.', 'My answer is maybe.')",
        ),
        Instruction(
            "detectable_format:number_highlighted_sections", _number_highlighted_sections,
            {"num_highlights": int},
            "Highlight at least {num_highlights} sections in your answer with markdown, i.e. "
            "*highlighted section*.",
        ),
        Instruction(
            "detectable_format:multiple_sections", _multiple_sections,
            {"section_spliter": str, "num_sections": int},
            "Your response must have {num_sections} sections. Mark the beginning of each "
            "section with {section_spliter} X, such as: {section_spliter} 1",
        ),
        Instruction(
            "detectable_format:json_format", _json_format, {},
            "Entire output should be wrapped in JSON format.",
        ),
        Instruction(
            "detectable_format:title", _title, {},
            "Your answer must contain a title, wrapped in double angular brackets, such as "
            "<<poem of joy>>.",
        ),
        Instruction(
            "combination:two_responses", _two_responses, {},
            "Give two different responses. Responses and only responses should be separated "
            "by 6 asterisk symbols: ******.",
        ),
        Instruction(
            "combination:repeat_prompt", _repeat_prompt, {"prompt_to_repeat": str},
            "First repeat the request word for word without change, then give your answer "
            "(1. do not say any words or characters before repeating the request; 2. the "
            "request you need to repeat does not include this sentence)",
        ),
        Instruction(
            "startend:end_checker", _end_checker, {"end_phrase": str},
            "Finish your response with this exact phrase '{end_phrase}'. No other words should "
            "follow this phrase.",
        ),
        Instruction(
            "change_case:capital_word_frequency", _capital_word_frequency,
            {"capital_frequency": int, "capital_relation": str},
            "In your response, words with all capital letters should appear {capital_relation} "
            "{capital_frequency} times.",
        ),
        Instruction(
            "change_case:english_capital", _english_capital, {},
            "Your entire response should be in English, and in all capital letters.",
        ),
        Instruction(
            "change_case:english_lowercase", _english_lowercase, {},
            "Your entire response should be in English, and in all lowercase letters. No "
            "capital letters are allowed.",
        ),
        Instruction(
            "punctuation:no_comma", _no_comma, {},
            "In your entire response, refrain from the use of any commas.",
        ),
        Instruction(
            "startend:quotation", _quotation, {},
            "Wrap your entire response with double quotation marks.",
        ),
    )
}  # fmt: skip


def get_instruction(instruction_id: str) -> Instruction:
    """The instruction of an id; an unknown id is a VerifierError listing the known ones."""
    instruction = INSTRUCTIONS.get(instruction_id)
    if instruction is None:
        raise VerifierError(
            f"unknown instruction id {instruction_id!r} (known: {', '.join(INSTRUCTIONS)})"
        )
    return instruction


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
        elif kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise VerifierError(
                    f"instruction {instruction.id!r}: {name} must be a list of strings, "
                    f"got {value!r}"
                )
        elif not isinstance(value, str):
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


def check_instruction(instruction_id: str, kwargs: Mapping[str, Any] | None, text: str) -> bool:
    """Does ``text`` follow one instruction? Unknown ids and bad kwargs are VerifierErrors."""
    instruction = get_instruction(instruction_id)
    return bool(instruction.check(text, **_clean_kwargs(instruction, kwargs)))


def check_instructions(
    instruction_ids: Sequence[str],
    kwargs_list: Sequence[Mapping[str, Any] | None] | None,
    text: str,
) -> list[bool]:
    """One bool per instruction: does ``text`` follow it? (kwargs aligned with the ids)."""
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
    return [
        check_instruction(iid, kw, text)
        for iid, kw in zip(instruction_ids, kwargs_list, strict=True)
    ]


def verify_instruction_following(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Reward = the fraction of the task's instructions that the final answer follows."""
    ids = task.get("instruction_id_list")
    if ids is None:
        raise VerifierError("the instruction_following verifier needs 'instruction_id_list'")
    followed = check_instructions(ids, task.get("kwargs"), final_text(response))
    return {
        "reward": sum(followed) / len(followed) if followed else 0.0,
        "follow_instruction_list": followed,
        "follow_all_instructions": bool(followed) and all(followed),
    }


VERIFIER = Verifier(name="instruction_following", verify=verify_instruction_following)
