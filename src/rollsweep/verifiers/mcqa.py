"""``mcqa``: did the model pick the right option of a multiple-choice question?

Reference: NeMo Gym's ``mcqa`` resources server as on its current main (reward and extracted
letter agree with it on every tested answer, see tests/test_mcqa_reference.py).

Row fields (NeMo Gym's):

- ``options``: the choices, a list of objects ``[{"A": "Paris"}, {"B": "Rome"}, ...]`` (a plain
  mapping ``{"A": "Paris", ...}`` is accepted too); a key counts as an option letter when it is
  one letter and its text is not null;
- ``expected_answer``: the right letter, e.g. ``"B"``;
- ``grading_mode`` (optional, default ``strict_single_letter_boxed``);
- ``template_metadata.output_regex`` (optional): a regex or a list of them, tried first.

The graded text is every ``output_text`` of the response joined, stripped; an empty one scores 0.

Grading modes, NeMo Gym's four plus ours:

- ``strict_single_letter_boxed``: the content of the **last** ``\\boxed{...}`` (braces
  balanced; an unclosed last box is no answer), with ``\\text{...}`` wrappers stripped, is a
  single capital letter with only non-letters around it (``B``, ``(B)``, ``[B]``), or starts
  with a labelled letter (``B: Paris``, ``B) Paris``, ``B. Paris``, ``B - Paris``);
- ``lenient_boxed``: as strict; failing that, the last box contains the text of exactly one
  option (case and spacing ignored);
- ``lenient_answer_colon``: the first ``Answer: X``, where X (``\\text{}`` stripped) is a single
  letter or exactly an option's text;
- ``lenient_answer_colon_md``: the last ``Answer: ...`` payload (markdown ``**Answer:** B``
  allowed) that gives one letter: a bare letter, a leading letter (``B because ...``) or the
  last standalone capital; a list of different choices (``A or B``, ``A, C``) gives none.
  NeMo Gym accepts this mode only in its server config; rollsweep also takes it from the row;
- ``lenient`` (rollsweep's, for the bundled small-model data): the first that gives a letter:
  the last box (a letter, a label or a unique option text), ``Answer: B`` / ``the answer is B``,
  a reply that starts with ``B``, ``B.``, ``B)`` or ``(B)``, a single distinct ``(B)``, and
  finally the text of exactly one option.

Changes in NeMo Gym since 0.4.0, which rollsweep follows: 0.4.0 read the *first* box with a
regex that stopped at the first ``}`` (so ``\\boxed{\\text{B}}`` and ``\\boxed{B: Paris}``
gave no letter) and its ``lenient_answer_colon_md`` took only a single letter right after the
colon. Deliberate differences from NeMo Gym: a row without ``options`` (as in NeMo Gym's own
``example_rollouts.jsonl``) allows every letter A-Z, where NeMo Gym allows none and scores 0;
a row whose ``expected_answer`` is missing or not an option letter is a VerifierError instead
of a silent 0.

Details: ``extracted_answer`` (the letter read, or None), ``expected_answer``, ``grading_mode``
and ``extracted_by`` (``template_regex`` or the grading mode, None when nothing was read).
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Mapping
from typing import Any

from rollsweep.verifiers.base import Verifier, VerifierError, joined_output_text

GRADING_MODES = (
    "strict_single_letter_boxed",
    "lenient_boxed",
    "lenient_answer_colon",
    "lenient_answer_colon_md",
    "lenient",
)
DEFAULT_GRADING_MODE = "strict_single_letter_boxed"

#: (key, text) pairs in the row's order; ``text`` may be None (NeMo Gym skips those).
Options = list[tuple[str, str | None]]

_BOX_MARKER = "\\boxed{"
_LETTER_ONLY = re.compile(r"^[^A-Za-z]*([A-Z])[^A-Za-z]*$")
_LETTER_LABEL = re.compile(r"^\s*([A-Z])\s*[:).\-]")
_TEXT_WRAP = re.compile(r"\\text\{\s*(.*?)\s*\}", re.S)
_ANSWER_COLON = re.compile(r"(?i)answer\s*:\s*(.+)")
_ANSWER_PAYLOAD = re.compile(r"(?im)[*_]{0,2}Answer[*_]{0,2}\s*:[*_\s]{0,2}(.+)")
_LONE_LETTER = re.compile(r"(?<![A-Za-z])([A-Za-z])(?![A-Za-z])")
_LEADING_LETTER = re.compile(r"^([a-zA-Z])(?![a-zA-Z0-9])")
_LAST_CAPITAL = re.compile(r"\b[A-Z]\b(?!.*\b[A-Z]\b)", re.S)
_LIST_SEPARATOR = re.compile(r"(?:\s*[/|&,;]\s*|\s+(?:or|and)\s+|\s+)", re.I)
#: Option letters written in other scripts, read as A-D (NeMo Gym's normalization).
_FOREIGN_LETTERS = str.maketrans(
    {
        "أ": " A",
        "ب": " B",
        "ج": " C",
        "د": " D",
        "অ": " A",
        "ব": " B",
        "ড": " C",
        "ঢ": " D",
        "Ａ": " A",
        "Ｂ": " B",
        "Ｃ": " C",
        "Ｄ": " D",
    }
)

# rollsweep's lenient mode: "Answer: B", "the answer is (B)", "Final answer: option B" (a
# capital letter, so "the answer is a city" is not option A)
_ANSWER_IS = re.compile(
    r"(?i:\banswer\s*(?:is|:)?\s*(?:option\s+)?)[\(\[]?\**([A-Z])\**[\)\]]?(?![A-Za-z])"
)
# a reply that starts with "B", "B.", "B)", "(B)" or "**B**" (not "A dog" or "I think")
_REPLY_LETTER = re.compile(r"^\s*[\(\[]?\**([A-Z])\**(?:[\)\]\.:,]|\s*$)")
_PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")


def option_pairs(options: Any) -> Options:
    """The row's options as (key, text) pairs, from a list of objects or a mapping."""
    if options is None:
        return []
    if isinstance(options, Mapping):
        entries: list[Any] = [options]
    elif isinstance(options, list):
        entries = options
    else:
        raise VerifierError(
            "the mcqa verifier needs 'options' as a list of objects like "
            f'[{{"A": "..."}}, {{"B": "..."}}], got {type(options).__name__}'
        )
    pairs: Options = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise VerifierError(
                f'each mcqa option must be an object like {{"A": "..."}}, got {entry!r}'
            )
        for key, text in entry.items():
            if not isinstance(key, str) or not (text is None or isinstance(text, str)):
                raise VerifierError(f"an mcqa option must map a letter to a text, got {entry!r}")
            pairs.append((key, text))
    return pairs


def allowed_letters(options: Options) -> set[str]:
    """Upper-case option letters: one-letter keys whose text is not null."""
    return {
        key.upper() for key, text in options if len(key) == 1 and key.isalpha() and text is not None
    }


def _allowed_or_any(options: Options) -> set[str]:
    # without options every letter counts (see the module docstring)
    return allowed_letters(options) if options else set(string.ascii_uppercase)


def last_boxed(text: str) -> str | None:
    """Everything inside the last ``\\boxed{``, braces balanced; None when absent or unclosed."""
    start = text.rfind(_BOX_MARKER)
    if start < 0:
        return None
    depth = 1
    for index in range(start + len(_BOX_MARKER), len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len(_BOX_MARKER) : index]
    return None


def strip_text_wrappers(text: str) -> str:
    """``\\text{\\text{B}}`` -> ``B``: remove ``\\text{...}`` around the whole string."""
    while (match := _TEXT_WRAP.fullmatch(text)) is not None:
        text = match.group(1)
    return text


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _boxed_letter(text: str, allowed: set[str]) -> str | None:
    inner = last_boxed(text)
    if inner is None:
        return None
    inner = strip_text_wrappers(inner.strip())
    match = _LETTER_ONLY.match(inner) or _LETTER_LABEL.match(inner)
    letter = match.group(1).upper() if match else None
    return letter if letter in allowed else None


def _boxed_option_text(text: str, options: Options, allowed: set[str]) -> str | None:
    """The one option whose text is contained in the last box."""
    inner = last_boxed(text)
    if inner is None:
        return None
    inner = inner.strip()
    candidates = [_normalize(inner), _normalize(strip_text_wrappers(inner))]
    found = {
        key.upper()
        for key, option in options
        if option is not None and len(key) == 1 and key.upper() in allowed
        if _normalize(option) and any(_normalize(option) in c for c in candidates)
    }
    return found.pop() if len(found) == 1 else None


def _answer_colon(text: str, options: Options, allowed: set[str]) -> str | None:
    match = _ANSWER_COLON.search(text)
    if not match:
        return None
    candidate = strip_text_wrappers(match.group(1)).strip()
    if len(candidate) == 1 and candidate.isalpha() and candidate.upper() in allowed:
        return candidate.upper()
    wanted = _normalize(candidate)
    for key, option in options:
        if key.upper() in allowed and option is not None and _normalize(option) == wanted:
            return key.upper()
    return None


def _is_choice_list(text: str, allowed: set[str]) -> bool:
    """Are two different allowed letters written as a list ("A or B", "A, C", "A B")?"""
    found = [
        (m.group(1).upper(), m.span(1))
        for m in _LONE_LETTER.finditer(text)
        if m.group(1).upper() in allowed
    ]
    return any(
        left != right and _LIST_SEPARATOR.fullmatch(text[left_span[1] : right_span[0]])
        for (left, left_span), (right, right_span) in itertools.pairwise(found)
    )


def _payload_letter(payload: str, allowed: set[str]) -> str | None:
    candidate = payload.translate(_FOREIGN_LETTERS).strip().strip("*_` \t\n\r.,;:")
    if _is_choice_list(candidate, allowed):
        return None
    letter: str | None = None
    if len(candidate) == 1:
        letter = candidate
    elif leading := _LEADING_LETTER.match(candidate):  # "B because ..."
        letter = leading.group(1)
    elif last := _LAST_CAPITAL.search(candidate):
        letter = last.group(0)
    if letter and letter.upper() in allowed:
        return letter.upper()
    return None


def _answer_colon_md(text: str, allowed: set[str]) -> str | None:
    for payload in reversed(_ANSWER_PAYLOAD.findall(text)):
        letter = _payload_letter(payload, allowed)
        if letter is not None:
            return letter
    return None


def _template_regex(
    text: str, patterns: str | list[str], options: Options, allowed: set[str]
) -> str | None:
    """NeMo Gym's ``template_metadata.output_regex``: the last match of the first pattern
    that gives a letter; a captured letter is trusted even when it is not an option."""
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        try:
            found = re.findall(pattern, text, re.IGNORECASE)
        except re.error:
            continue
        if not found:
            continue
        captured = found[-1]
        if not isinstance(captured, str):
            continue  # several groups: not a letter
        captured = captured.strip().translate(_FOREIGN_LETTERS).strip().upper()
        if len(captured) == 1 and captured.isalpha():
            return captured
        wanted = _normalize(captured)
        for key, option in options:
            if option is not None and key.upper() in allowed and _normalize(option) == wanted:
                return key.upper()
    return None


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


def _lenient(text: str, options: Options, allowed: set[str]) -> str | None:
    by_letter = {key.upper(): option for key, option in options if key.upper() in allowed}
    inner = last_boxed(text)
    if inner is not None:
        letter = _boxed_letter(text, allowed)
        if letter:
            return letter
        by_text = _option_in(strip_text_wrappers(inner.strip()), by_letter)
        if by_text:
            return by_text
    answers = [m.group(1) for m in _ANSWER_IS.finditer(text) if m.group(1) in allowed]
    if answers:
        return answers[-1]
    leading = _REPLY_LETTER.match(text)
    if leading and leading.group(1) in allowed:
        return leading.group(1)
    if len(text.strip()) == 1 and text.strip().upper() in allowed:
        return text.strip().upper()
    in_parens = {m.group(1).upper() for m in _PAREN_LETTER.finditer(text)} & allowed
    if len(in_parens) == 1:
        return in_parens.pop()
    return _option_in(text, by_letter)


def extract_letter(text: str, options: Any, mode: str = DEFAULT_GRADING_MODE) -> str | None:
    """The option letter that ``text`` answers with under a grading mode, or None."""
    pairs = option_pairs(options)
    return _extract(text, pairs, _allowed_or_any(pairs), mode)


def _extract(text: str, pairs: Options, allowed: set[str], mode: str) -> str | None:
    if mode == "strict_single_letter_boxed":
        return _boxed_letter(text, allowed)
    if mode == "lenient_boxed":
        return _boxed_letter(text, allowed) or _boxed_option_text(text, pairs, allowed)
    if mode == "lenient_answer_colon":
        return _answer_colon(text, pairs, allowed)
    if mode == "lenient_answer_colon_md":
        return _answer_colon_md(text, allowed)
    if mode == "lenient":
        return _lenient(text, pairs, allowed)
    raise VerifierError(f"unknown mcqa grading_mode {mode!r} (known: {', '.join(GRADING_MODES)})")


def verify_mcqa(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Reward 1.0 when the letter read from the answer is ``expected_answer``, else 0.0."""
    pairs = option_pairs(task.get("options"))
    allowed = _allowed_or_any(pairs)
    expected = task.get("expected_answer")
    if not isinstance(expected, str) or expected.strip().upper() not in allowed:
        raise VerifierError(
            "the mcqa verifier needs 'expected_answer' to be one of the option letters "
            f"({', '.join(sorted(allowed))}), got {expected!r}"
        )
    gold = expected.strip().upper()
    mode = task.get("grading_mode") or DEFAULT_GRADING_MODE
    if mode not in GRADING_MODES:
        raise VerifierError(
            f"unknown mcqa grading_mode {mode!r} (known: {', '.join(GRADING_MODES)})"
        )
    text = joined_output_text(response).strip()
    letter: str | None = None
    extracted_by: str | None = None
    template = task.get("template_metadata")
    if text and isinstance(template, dict) and "output_regex" in template:
        letter = _template_regex(text, template["output_regex"], pairs, allowed)
        extracted_by = "template_regex" if letter else None
    if text and letter is None:
        letter = _extract(text, pairs, allowed, mode)
        extracted_by = mode if letter else None
    return {
        "reward": 1.0 if letter == gold else 0.0,
        "extracted_answer": letter,
        "expected_answer": gold,
        "grading_mode": mode,
        "extracted_by": extracted_by,
    }


VERIFIER = Verifier(name="mcqa", verify=verify_mcqa)
