"""``mcqa``: did the model pick the right option of a multiple-choice question?

Task fields (NeMo Gym's ``mcqa`` environment):

- ``options``: the choices, a list of one-key dicts ``[{"A": "Paris"}, {"B": "Rome"}, ...]``
  (a plain mapping ``{"A": "Paris", ...}`` is accepted too);
- ``expected_answer``: the right letter, e.g. ``"B"``;
- ``grading_mode`` (optional): how the answer is read from the final assistant text.

Grading modes, NeMo Gym's three plus ours:

- ``strict_single_letter_boxed`` (NeMo Gym's default, and ours when the row has no
  ``grading_mode``, so NeMo Gym data grades the same here): the first ``\\boxed{...}`` must hold a
  single capital option letter (non-letters around it, as in ``\\boxed{(B)}``, are allowed).
- ``lenient_boxed``: as strict; failing that, the first box's content that contains exactly one
  option's text.
- ``lenient_answer_colon``: ``Answer: X`` where X is a letter or exactly an option's text.
- ``lenient`` (rollsweep's, used by the bundled data for small models): the first of these
  that gives an option letter: the last ``\\boxed{...}`` (a letter or a unique option text),
  ``Answer: B`` / ``the answer is B``, a reply that starts with ``B``, ``B.``, ``B)`` or
  ``(B)``, a single distinct ``(B)`` in the text, and finally the text of exactly one option.

Details: ``extracted_answer`` (the letter read, or None) and ``expected_answer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rollsweep.verifiers.base import Verifier, VerifierError, final_text

GRADING_MODES = (
    "strict_single_letter_boxed",
    "lenient_boxed",
    "lenient_answer_colon",
    "lenient",
)
DEFAULT_GRADING_MODE = "strict_single_letter_boxed"

_BOXED = re.compile(r"\\boxed\{\s*(.*?)\s*\}", re.S)
_STRICT_BOXED = re.compile(r"\\boxed\{\s*[^A-Za-z}]*([A-Z])[^A-Za-z}]*\s*\}")
_TEXT_WRAP = re.compile(r"\\text(?:bf)?\{\s*(.*?)\s*\}", re.S)
_ANSWER_COLON = re.compile(r"(?i)answer\s*:\s*(.+)")
# "Answer: B", "the answer is (B)", "Final answer: option B": the letter must be a capital, so
# "the answer is a city" is not option A
_ANSWER_IS = re.compile(
    r"(?i:\banswer\s*(?:is|:)?\s*(?:option\s+)?)[\(\[]?\**([A-Z])\**[\)\]]?(?![A-Za-z])"
)
# a reply that starts with "B", "B.", "B)", "(B)" or "**B**" (not "A dog" or "I think")
_LEADING_LETTER = re.compile(r"^\s*[\(\[]?\**([A-Z])\**(?:[\)\]\.:,]|\s*$)")
_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")


def option_map(options: Any) -> dict[str, str]:
    """``{"A": text, ...}`` from NeMo Gym's list of one-key dicts (or from a mapping)."""
    result: dict[str, str] = {}
    if isinstance(options, Mapping):
        entries: list[Any] = [{key: value} for key, value in options.items()]
    elif isinstance(options, list):
        entries = options
    else:
        raise VerifierError(
            "the mcqa verifier needs 'options' as a list of one-key objects like "
            f'[{{"A": "..."}}, {{"B": "..."}}], got {type(options).__name__}'
        )
    for entry in entries:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise VerifierError(
                f'each mcqa option must be a one-key object like {{"A": "..."}}, got {entry!r}'
            )
        ((letter, text),) = entry.items()
        if not (isinstance(letter, str) and len(letter) == 1 and letter.isalpha()):
            raise VerifierError(f"an mcqa option key must be a single letter, got {letter!r}")
        result[letter.upper()] = str(text)
    return result


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _unwrap(text: str) -> str:
    while (match := _TEXT_WRAP.fullmatch(text)) is not None:
        text = match.group(1)
    return text


def _letter(candidate: str, options: dict[str, str]) -> str | None:
    letter = candidate.upper()
    return letter if letter in options else None


def _option_in(text: str, options: dict[str, str]) -> str | None:
    """The one option whose text appears in ``text`` (as whole words), else None."""
    haystack = _normalize(text)
    found = set()
    for letter, option in options.items():
        needle = _normalize(option)
        if needle and re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack):
            found.add(letter)
    if len(found) == 1:
        return found.pop()
    # "Paris" and "Paris, Texas" both match: the longest option wins if it contains the others
    if len(found) > 1:
        longest = max(found, key=lambda k: len(options[k]))
        if all(_normalize(options[k]) in _normalize(options[longest]) for k in found):
            return longest
    return None


def _option_equal(text: str, options: dict[str, str]) -> str | None:
    wanted = _normalize(text)
    for letter, option in options.items():
        if _normalize(option) == wanted:
            return letter
    return None


def _strict_boxed(text: str, options: dict[str, str]) -> str | None:
    match = _STRICT_BOXED.search(text)
    return _letter(match.group(1), options) if match else None


def _boxed_option_text(text: str, options: dict[str, str]) -> str | None:
    match = _BOXED.search(text)
    if not match:
        return None
    inner = match.group(1)
    return _option_in(inner, options) or _option_in(_unwrap(inner), options)


def _answer_colon(text: str, options: dict[str, str]) -> str | None:
    match = _ANSWER_COLON.search(text)
    if not match:
        return None
    candidate = _unwrap(match.group(1).strip())
    if len(candidate) == 1 and candidate.isalpha():
        return _letter(candidate, options)
    return _option_equal(candidate, options)


def _lenient(text: str, options: dict[str, str]) -> str | None:
    boxes = list(_BOXED.finditer(text))
    if boxes:
        inner = _unwrap(boxes[-1].group(1))
        stripped = inner.strip(" ()[].:*")
        if len(stripped) == 1 and stripped.isalpha():
            letter = _letter(stripped, options)
            if letter:
                return letter
        by_text = _option_in(inner, options)
        if by_text:
            return by_text
    answers = [m.group(1) for m in _ANSWER_IS.finditer(text) if _letter(m.group(1), options)]
    if answers:
        return answers[-1]
    leading = _LEADING_LETTER.match(text)
    if leading and _letter(leading.group(1), options):
        return leading.group(1)
    if len(text.strip()) == 1 and _letter(text.strip(), options):
        return text.strip().upper()
    in_parens = {m.group(1).upper() for m in _PAREN_LETTER.finditer(text)} & set(options)
    if len(in_parens) == 1:
        return in_parens.pop()
    return _option_in(text, options)


def extract_letter(text: str, options: dict[str, str], mode: str = "lenient") -> str | None:
    """The option letter that ``text`` answers with under a grading mode, or None."""
    if mode == "strict_single_letter_boxed":
        return _strict_boxed(text, options)
    if mode == "lenient_boxed":
        return _strict_boxed(text, options) or _boxed_option_text(text, options)
    if mode == "lenient_answer_colon":
        return _answer_colon(text, options)
    if mode == "lenient":
        return _lenient(text, options)
    raise VerifierError(f"unknown mcqa grading_mode {mode!r} (known: {', '.join(GRADING_MODES)})")


def verify_mcqa(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Reward 1.0 when the letter read from the answer is ``expected_answer``, else 0.0."""
    options = option_map(task.get("options"))
    expected = task.get("expected_answer")
    if not isinstance(expected, str) or expected.strip().upper() not in options:
        raise VerifierError(
            f"the mcqa verifier needs 'expected_answer' to be one of the option letters "
            f"({', '.join(options)}), got {expected!r}"
        )
    gold = expected.strip().upper()
    mode = task.get("grading_mode") or DEFAULT_GRADING_MODE
    letter = extract_letter(final_text(response), options, mode)
    return {
        "reward": 1.0 if letter == gold else 0.0,
        "extracted_answer": letter,
        "expected_answer": gold,
    }


VERIFIER = Verifier(name="mcqa", verify=verify_mcqa)
