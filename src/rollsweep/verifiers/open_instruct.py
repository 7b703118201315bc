"""The instructions NeMo Gym's ``instruction_following`` environment adds to IFEval's 25.

NeMo Gym checks instructions with the ``verifiable-instructions`` package (open-instruct's
IFEval-style training constraints; it is not on PyPI). These are our own checks, written from
each instruction's description and agreeing with that package on the cases in
``tests/fixtures/ifeval/`` (see the recorder there). Where the package does something its own
description does not say, the check below does the same and says so, so NeMo Gym's rewards come
out the same; where it crashes or draws a random argument, we decide deliberately (noted).

Each check takes the response text and the instruction's arguments and returns a bool.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from rollsweep.verifiers.ifeval_text import split_into_sentences, word_tokenize

#: The comparison relations of counting instructions.
RELATIONS = ("less than", "at least")


def ifeval_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A keyword as IFEval and open-instruct use it: as a regular expression.

    They pass keywords to ``re`` unescaped, so ``"e.g."`` also matches ``"eXgY"``. A keyword that
    is not a valid expression (``"C++"``) makes them raise; it is matched literally here.
    """
    try:
        return re.compile(pattern, flags)
    except re.error:
        return re.compile(re.escape(pattern), flags)


def _count(text: str, keyword: str) -> int:
    return len(ifeval_regex(keyword.strip(), re.IGNORECASE).findall(text))


def _equal_ignoring_case(text: str, expected: str) -> bool:
    return text.strip().lower() == expected.strip().lower()


def _paragraphs_ok(parts: Sequence[str], wanted: int) -> bool:
    """Empty parts are allowed only at the ends; the rest must number ``wanted``."""
    kept = 0
    for index, part in enumerate(parts):
        if part.strip():
            kept += 1
        elif 0 < index < len(parts) - 1:
            return False
    return kept == wanted


# --------------------------------------------------------------------------- copying


def repeat_phrase(text: str, phrase: str, small_n: int) -> bool:
    """The phrase appears ``small_n`` times, each time with at most one word changed.

    A repetition is a span on one line from the phrase's first word to its last, same number of
    words. As in the reference, only the last repetition must differ in exactly one word (the
    others may also be verbatim copies).
    """
    words = phrase.strip().split()
    if not words:
        return False
    first, last = (re.escape(w) for w in (words[0], words[-1]))
    found = re.findall(rf"{first} .*? {last}", text)
    if len(found) != small_n:
        return False
    differences = None
    for span in found:
        span_words = span.split()
        if len(span_words) != len(words):
            return False
        differences = sum(a != b for a, b in zip(span_words, words, strict=True))
        if differences > 1:
            return False
    return differences == 1


def copy_request(text: str, prompt_to_repeat: str) -> bool:
    """The response is the request itself, nothing else (case and outer spaces ignored)."""
    return _equal_ignoring_case(text, prompt_to_repeat)


def copy_span(text: str, prompt_to_repeat: str, n_start: int, n_end: int) -> bool:
    """The response is the request's characters ``n_start`` up to, not including, ``n_end``.

    The instruction's text says "including" the end; the reference slices without it, and so do
    we. (The reference draws a random start when ``n_start`` is 0; we take 0.)
    """
    return _equal_ignoring_case(text, prompt_to_repeat[n_start:n_end])


def copy_multiple(text: str, prompt_to_repeat: str, N: int) -> bool:
    """The request, ``N`` times, separated by ``******``, nothing else."""
    copies = text.split("******")
    return len(copies) == N and all(_equal_ignoring_case(c, prompt_to_repeat) for c in copies)


# --------------------------------------------------------------------------- format


def sentence_hyphens(text: str) -> bool:
    """Sentences joined by hyphens without spaces: "One.-Two.-Three."

    Each hyphen-separated piece must have no outer spaces and be the sentence the rule-based
    splitter finds at that position (pieces past the shorter list are not checked).
    """
    sentences = split_into_sentences(text.replace("-", " "))
    for piece, sentence in zip(text.split("-"), sentences, strict=False):
        if piece.strip() != piece or piece != sentence:
            return False
    return True


def square_brackets(text: str) -> bool:
    """Every whitespace-separated word starts with ``[`` and ends with ``]``."""
    return all(w.startswith("[") and w.endswith("]") for w in text.split())


def bigram_wrapping(text: str) -> bool:
    """Words in pairs, each pair wrapped as ``<<first second>>`` (a last odd word is free)."""
    words = text.split()
    return all(
        words[i].startswith("<<") and words[i + 1].endswith(">>")
        for i in range(0, len(words) - 1, 2)
    )


def two_paragraphs_by_divider(text: str) -> bool:
    """Two paragraphs separated by the markdown divider ``***``."""
    return _paragraphs_ok(re.split(r"\s?\*\*\*\s?", text), 2)


def two_paragraphs_by_blank_line(text: str) -> bool:
    """Two paragraphs separated by an empty line (``\\n\\n``)."""
    return _paragraphs_ok(text.split("\n\n"), 2)


# --------------------------------------------------------------------------- keywords


def no_adjacent_consecutive(text: str) -> bool:
    """No two neighbouring words start with consecutive letters ("a b", "Cat dog")."""
    words = text.split()
    for left, right in itertools.pairwise(words):
        a, b = left[0].lower(), right[0].lower()
        if len(a) != 1 or len(b) != 1:  # a letter whose lower case is two characters
            return False
        if ord(b) - ord(a) == 1:
            return False
    return True


def word_once(text: str, keyword: str) -> bool:
    """The keyword occurs exactly once (case-insensitive, also inside longer words)."""
    return _count(text, keyword) == 1


def word_count_different_numbers(text: str, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword occurs ``relation`` ``frequency`` times (as ``keywords:frequency``)."""
    n = _count(text, keyword)
    return n < frequency if relation == RELATIONS[0] else n >= frequency


def exclude_word_harder(text: str, keyword: str) -> bool:
    """The keyword never appears between two spaces (case-sensitive, as the reference)."""
    return f" {keyword.strip()} " not in text


def palindrome(text: str) -> bool:
    """Some whitespace-separated word reads the same backwards (one letter, like "a", counts)."""
    return any(w == w[::-1] for w in text.split())


def keyword_specific_position(text: str, keyword: str, n: int, m: int) -> bool:
    """Word ``m`` of sentence ``n`` (nltk words of rule-based sentences) is the keyword."""
    sentences = split_into_sentences(text)
    if len(sentences) < n:
        return False
    words = word_tokenize(sentences[n - 1])
    return len(words) >= m and words[m - 1] == keyword.strip()


def start_end(text: str) -> bool:
    """The first and the last nltk word are the same word (case-insensitive)."""
    words = word_tokenize(text)
    return len(words) >= 2 and words[0].lower() == words[-1].lower()


def count_increment_word(text: str, keyword1: str, keyword2: str) -> bool:
    """``keyword1`` occurs exactly once and ``keyword2`` exactly twice."""
    return _count(text, keyword1) == 1 and _count(text, keyword2) == 2


# --------------------------------------------------------------------------- first / last words


def first_word_sent(text: str, first_word: str) -> bool:
    """Every (rule-based) sentence starts with the word, punctuation included ("Yes," != "yes").

    (Given as a list, the word is its first element; the reference crashes on a list here.)
    """
    wanted = first_word.strip().lower()
    for sentence in split_into_sentences(text):
        if not sentence.strip() or sentence.split()[0].lower() != wanted:
            return False
    return True


def first_word_answer(text: str, first_word: str) -> bool:
    """The response's first whitespace-separated word is the word (case-insensitive)."""
    words = text.split()
    return bool(words) and words[0].lower() == first_word.strip().lower()


def _bare(word: str) -> str:
    return re.sub(r"[^\w\s]", "", word).lower()


def last_word_sent(text: str, last_word: str) -> bool:
    """Every (rule-based) sentence ends with the word, its punctuation removed."""
    wanted = last_word.strip().lower()
    for sentence in split_into_sentences(text):
        if not sentence.strip() or _bare(sentence.split()[-1]) != wanted:
            return False
    return True


def last_word_answer(text: str, last_word: str) -> bool:
    """The response's last word, its punctuation removed, is the word (case-insensitive)."""
    words = text.split()
    return bool(words) and _bare(words[-1]) == last_word.strip().lower()


# --------------------------------------------------------------------------- punctuation, counts


def no_dot(text: str) -> bool:
    return "." not in text


def no_exclamation(text: str) -> bool:
    return "!" not in text


def lowercase_counting(text: str, N: int) -> bool:
    """At most ``N`` all-lowercase words (``\\b[a-z]+\\b``)."""
    return len(re.findall(r"\b[a-z]+\b", text)) <= N


def letter_counting(text: str, N: int, relation: str) -> bool:
    """The response has ``relation`` ``N`` ASCII letters."""
    n = len(re.findall(r"[a-zA-Z]", text))
    return n < N if relation == RELATIONS[0] else n >= N


def counting_composition(text: str, n_sent: int, n_words: int) -> bool:
    """Three ``***``-separated paragraphs of ``n_sent`` sentences of ``n_words`` words each.

    Sentences are rule-based, words nltk's (punctuation marks are words). As in the reference,
    every part between dividers is checked, so a divider at the very start or end fails.
    """
    parts = re.split(r"\s?\*\*\*\s?", text)
    return _paragraphs_ok(parts, 3) and all(_composed(part, n_sent, n_words) for part in parts)


def _composed(part: str, n_sent: int, n_words: int) -> bool:
    """``n_sent`` sentences of ``n_words`` words each."""
    sentences = split_into_sentences(part)
    return len(sentences) == n_sent and all(len(word_tokenize(s)) == n_words for s in sentences)


def count_unique(text: str) -> bool:
    """No nltk word (punctuation marks included, case-sensitive) occurs twice."""
    words = word_tokenize(text)
    return len(words) == len(set(words))
