"""The bundled task sets in data/, made deterministically (fixed seeds, stdlib random).

``write_bundled_tasks(out_dir)`` writes the seed's four files:

- ``debug_tasks.jsonl``: 10 mixed tasks (the quick-debug pattern reads the first 5);
- ``sweep_tasks.jsonl``: 120 mixed tasks (the temperature sweep reads 100);
- ``research_tasks.jsonl``: 60 mixed tasks (behavioral exploration reads 50);
- ``verification_test.jsonl``: 30 instruction-following tasks with exactly two instructions
  each, so partial credit gives the seed's 0.0 / 0.5 / 1.0 distribution.

"Mixed" means easy arithmetic (``math``), four-option multiple choice (``mcqa``), IFEval-style
instructions (``instruction_following``) and a few ``get_weather`` tool tasks (``tool_use``).
They are easy on purpose: the default model, SmolLM2-135M-Instruct, gets some right and some
wrong at every temperature, and answers are short so a quick debug finishes in seconds on CPU.

Every row is a NeMo Gym task row: ``task_id``, ``responses_create_params`` (``input`` as a list
of user messages, ``max_output_tokens``, and ``tools`` for tool tasks), the verifier's fields,
and a ``verifier`` field naming the bundled verifier that grades it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollsweep.rollouts.jsonl import atomic_output, dumps
from rollsweep.verifiers.instruction_following import get_instruction
from rollsweep.verifiers.tool_use import GET_WEATHER_SPEC

Row = dict[str, Any]

MAX_TOKENS = {"math": 96, "mcqa": 64, "instruction_following": 160, "tool_use": 96}

# --------------------------------------------------------------------------- math


def _math_question(rng: random.Random) -> tuple[str, int]:
    kind = rng.choice(["add", "add", "sub", "mul", "add3", "word_add", "word_sub", "mul2"])
    if kind == "add":
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        return f"What is {a} + {b}?", a + b
    if kind == "sub":
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        return f"What is {a} - {b}?", a - b
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return f"What is {a} × {b}?", a * b
    if kind == "add3":
        a, b, c = rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 20)
        return f"What is {a} + {b} + {c}?", a + b + c
    if kind == "word_add":
        name = rng.choice(["Tom", "Ana", "Li", "Sara", "Omar", "Maya"])
        thing = rng.choice(["apples", "books", "pencils", "stamps", "marbles"])
        a, b = rng.randint(2, 15), rng.randint(2, 15)
        question = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have?"
        return question, a + b
    if kind == "word_sub":
        name = rng.choice(["Tom", "Ana", "Li", "Sara", "Omar", "Maya"])
        thing = rng.choice(["cookies", "cards", "balloons", "coins"])
        a = rng.randint(8, 30)
        b = rng.randint(1, a - 2)
        return f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?", a - b
    a, b = rng.randint(11, 30), rng.randint(3, 9)
    return f"What is {a} × {b}?", a * b


def _task(verifier: str, message: str, *, tools: list | None = None, **fields: Any) -> Row:
    """A task row for a bundled verifier: one user message, the verifier's token budget."""
    params: dict[str, Any] = {"input": [{"role": "user", "content": message}]}
    if tools:
        params["tools"] = tools
    params["max_output_tokens"] = MAX_TOKENS[verifier]
    return {"verifier": verifier, "responses_create_params": params, **fields}


def math_task(rng: random.Random) -> Row:
    question, answer = _math_question(rng)
    prompt = f"{question} Put the final answer in \\boxed{{}}."
    return _task("math", prompt, question=question, expected_answer=str(answer))


# --------------------------------------------------------------------------- mcqa

#: (question, right answer, pool of wrong answers)
_CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid",
    "Germany": "Berlin", "the United Kingdom": "London", "Egypt": "Cairo", "Russia": "Moscow",
    "China": "Beijing", "Canada": "Ottawa", "Greece": "Athens", "Portugal": "Lisbon",
    "Norway": "Oslo", "Kenya": "Nairobi", "Peru": "Lima", "Ireland": "Dublin",
}  # fmt: skip

_FACTS: list[tuple[str, str, list[str]]] = [
    ("How many legs does a spider have?", "8", ["4", "6", "10"]),
    ("How many legs does a dog have?", "4", ["2", "6", "8"]),
    ("What color is the sky on a clear day?", "Blue", ["Green", "Red", "Yellow"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Saturn"]),
    ("What do bees make?", "Honey", ["Milk", "Silk", "Wax paper"]),
    ("How many days are in a week?", "7", ["5", "6", "10"]),
    ("What is the largest ocean on Earth?", "Pacific", ["Atlantic", "Indian", "Arctic"]),
    ("What is frozen water called?", "Ice", ["Steam", "Sand", "Glass"]),
    ("How many hours are in a day?", "24", ["12", "20", "48"]),
    ("Which animal is known as the king of the jungle?", "Lion", ["Mouse", "Cow", "Frog"]),
    ("What is the opposite of hot?", "Cold", ["Warm", "Big", "Fast"]),
    ("Which star is at the center of our solar system?", "The Sun", ["The Moon", "Mars", "Sirius"]),
    ("What do cows drink?", "Water", ["Milk", "Juice", "Oil"]),
    ("How many months are in a year?", "12", ["10", "11", "13"]),
    ("Which fruit is yellow and curved?", "Banana", ["Apple", "Cherry", "Grape"]),
    ("What is the boiling point of water at sea level in Celsius?", "100", ["50", "90", "200"]),
    ("Which sense do we use our ears for?", "Hearing", ["Sight", "Smell", "Taste"]),
    ("What is the chemical symbol for water?", "H2O", ["CO2", "O2", "NaCl"]),
    ("How many sides does a triangle have?", "3", ["4", "5", "6"]),
    ("Which season comes after winter?", "Spring", ["Autumn", "Summer", "Winter"]),
    ("What is the tallest animal in the world?", "Giraffe", ["Elephant", "Horse", "Camel"]),
    ("Which gas do people need to breathe?", "Oxygen", ["Helium", "Neon", "Hydrogen"]),
    ("How many continents are there?", "7", ["5", "6", "9"]),
    ("What is the largest planet in our solar system?", "Jupiter", ["Earth", "Mars", "Venus"]),
]


def _mcqa_item(rng: random.Random) -> tuple[str, str, list[str]]:
    kind = rng.random()
    if kind < 0.3:
        country = rng.choice(sorted(_CAPITALS))
        right = _CAPITALS[country]
        wrong = rng.sample([c for c in _CAPITALS.values() if c != right], 3)
        return f"What is the capital of {country}?", right, wrong
    if kind < 0.5:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        right = a + b
        wrong = rng.sample([right + d for d in (-3, -2, -1, 1, 2, 3, 10) if right + d > 0], 3)
        return f"What is {a} + {b}?", str(right), [str(w) for w in wrong]
    question, right, wrong = rng.choice(_FACTS)
    return question, right, list(wrong)


def mcqa_task(rng: random.Random) -> Row:
    question, right, wrong = _mcqa_item(rng)
    choices = [right, *wrong]
    rng.shuffle(choices)
    letters = "ABCD"
    listed = "\n".join(f"{letter}) {text}" for letter, text in zip(letters, choices, strict=True))
    prompt = (
        f"Question: {question}\n{listed}\n"
        "Answer with the letter of the correct option, for example \\boxed{A}."
    )
    return _task(
        "mcqa",
        prompt,
        question=question,
        options=[{letter: text} for letter, text in zip(letters, choices, strict=True)],
        expected_answer=letters[choices.index(right)],
        grading_mode="lenient",
    )


# --------------------------------------------------------------------------- instructions

_TOPICS: list[tuple[str, list[str]]] = [
    ("Write a short note about the ocean.", ["water", "waves", "blue"]),
    ("Describe your favorite fruit.", ["sweet", "fruit", "taste"]),
    ("Write a short poem about the moon.", ["moon", "night", "light"]),
    ("Explain why people like dogs.", ["dog", "friend", "loyal"]),
    ("Tell me about the city of Paris.", ["Paris", "France", "city"]),
    ("Describe a rainy day.", ["rain", "wet", "clouds"]),
    ("Write a short story about a cat.", ["cat", "home", "play"]),
    ("Give advice to a student starting school.", ["study", "friends", "learn"]),
    ("Describe how to make a cup of tea.", ["water", "tea", "cup"]),
    ("Write a short description of a forest.", ["trees", "green", "birds"]),
    ("Explain what the sun does for the Earth.", ["light", "warm", "energy"]),
    ("Write a thank-you note to a teacher.", ["thank", "teacher", "class"]),
    ("Describe your ideal weekend.", ["relax", "weekend", "friends"]),
    ("Explain why sleep is important.", ["sleep", "health", "rest"]),
    ("Write a short review of a pizza restaurant.", ["pizza", "cheese", "service"]),
    ("Describe a walk in the mountains.", ["mountain", "walk", "view"]),
]

_YES_NO = [
    "Is the sun a star?",
    "Can fish breathe under water?",
    "Is ice colder than boiling water?",
    "Do cats like to sleep?",
    "Is the Moon bigger than the Earth?",
    "Can penguins fly?",
]

_END_PHRASES = ["Is there anything else I can help with?", "That is all.", "Have a nice day."]
_FORBIDDEN = ["the", "and", "very", "is", "good", "really"]
_FIRST_WORDS = ["today", "first", "finally", "sometimes", "now"]

# Which instructions can share a prompt. Some only go with a few others (the whole reply is
# JSON, or in French, or one fixed sentence); the rest pair freely except for listed conflicts.
_ONLY_WITH = {
    "language:response_language": {
        "punctuation:no_comma", "length_constraints:number_words",
        "length_constraints:number_sentences", "detectable_format:title",
        "detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections",
    },
    "detectable_format:json_format": {
        "change_case:english_lowercase", "length_constraints:number_words",
        "keywords:existence", "keywords:forbidden_words", "keywords:letter_frequency",
        "keywords:frequency",
    },
    "detectable_format:constrained_response": {
        "punctuation:no_comma", "length_constraints:number_words", "keywords:letter_frequency",
    },
}  # fmt: skip
_CONFLICTS = {
    "change_case:english_lowercase": {
        "change_case:english_capital", "change_case:capital_word_frequency",
        "detectable_content:postscript", "detectable_format:multiple_sections",
        "startend:end_checker", "combination:repeat_prompt",
    },
    "change_case:english_capital": {
        "change_case:capital_word_frequency", "combination:repeat_prompt", "startend:end_checker",
    },
    "combination:repeat_prompt": {
        "combination:two_responses", "startend:quotation",
        "length_constraints:nth_paragraph_first_word", "detectable_format:multiple_sections",
    },
    "combination:two_responses": {
        "startend:quotation", "length_constraints:number_paragraphs",
        "length_constraints:nth_paragraph_first_word", "detectable_format:multiple_sections",
    },
    "startend:end_checker": {"detectable_content:postscript"},
    "length_constraints:number_paragraphs": {
        "length_constraints:nth_paragraph_first_word", "detectable_format:multiple_sections",
    },
    "length_constraints:nth_paragraph_first_word": {"detectable_format:multiple_sections"},
}  # fmt: skip


def _compatible(first: str, second: str) -> bool:
    if first == second:
        return False
    for a, b in ((first, second), (second, first)):
        if a in _ONLY_WITH and b not in _ONLY_WITH[a]:
            return False
        if b in _CONFLICTS.get(a, set()):
            return False
    return True


def _kwargs_for(iid: str, rng: random.Random, keywords: list[str], base: str) -> dict[str, Any]:
    """Arguments for an instruction, sized for short answers."""
    relation = rng.choice(["less than", "at least"])
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "keywords:existence": lambda: {"keywords": rng.sample(keywords, rng.randint(1, 2))},
        "keywords:frequency": lambda: {
            "keyword": rng.choice(keywords),
            "frequency": rng.randint(2, 3),
            "relation": "at least",
        },
        "keywords:forbidden_words": lambda: {"forbidden_words": rng.sample(_FORBIDDEN, 2)},
        "keywords:letter_frequency": lambda: {
            "letter": rng.choice("aeost"),
            "let_frequency": rng.choice([5, 10, 15]),
            "let_relation": relation,
        },
        "language:response_language": lambda: {"language": rng.choice(["fr", "es", "de"])},
        "length_constraints:number_sentences": lambda: {
            "num_sentences": rng.randint(2, 3) if relation == "at least" else rng.randint(3, 5),
            "relation": relation,
        },
        "length_constraints:number_paragraphs": lambda: {"num_paragraphs": 2},
        "length_constraints:number_words": lambda: {
            "num_words": rng.choice([15, 25, 40] if relation == "at least" else [30, 50, 80]),
            "relation": relation,
        },
        "length_constraints:nth_paragraph_first_word": lambda: {
            "num_paragraphs": 2,
            "nth_paragraph": rng.randint(1, 2),
            "first_word": rng.choice(_FIRST_WORDS),
        },
        "detectable_content:number_placeholders": lambda: {"num_placeholders": rng.randint(1, 2)},
        "detectable_content:postscript": lambda: {
            "postscript_marker": rng.choice(["P.S.", "P.P.S"])
        },
        "detectable_format:number_bullet_lists": lambda: {"num_bullets": rng.randint(2, 3)},
        "detectable_format:number_highlighted_sections": lambda: {
            "num_highlights": rng.randint(1, 2)
        },
        "detectable_format:multiple_sections": lambda: {
            "section_spliter": rng.choice(["Section", "SECTION"]),
            "num_sections": 2,
        },
        "combination:repeat_prompt": lambda: {"prompt_to_repeat": base},
        "startend:end_checker": lambda: {"end_phrase": rng.choice(_END_PHRASES)},
        "change_case:capital_word_frequency": lambda: {
            "capital_frequency": rng.randint(2, 3),
            "capital_relation": relation,
        },
    }
    maker = makers.get(iid)
    return maker() if maker else {}


def _pick_instructions(rng: random.Random, count: int) -> list[str]:
    ids = sorted(_ALL_IDS)
    while True:
        chosen = [rng.choice(ids)]
        while len(chosen) < count:
            candidates = [i for i in ids if all(_compatible(i, c) for c in chosen)]
            chosen.append(rng.choice(candidates))
        return chosen


def instruction_task(rng: random.Random, count: int) -> Row:
    ids = _pick_instructions(rng, count)
    if "detectable_format:constrained_response" in ids:
        base, keywords = rng.choice(_YES_NO), ["yes", "no"]
    else:
        base, keywords = rng.choice(_TOPICS)
    kwargs = [_kwargs_for(iid, rng, keywords, base) for iid in ids]
    sentences = [get_instruction(iid).describe(kw) for iid, kw in zip(ids, kwargs, strict=True)]
    prompt = " ".join([base, *sentences])
    return _task(
        "instruction_following", prompt, prompt=prompt, instruction_id_list=ids, kwargs=kwargs
    )


# --------------------------------------------------------------------------- tool use

_CITIES = [
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Cairo", "Sydney", "Toronto",
    "Mumbai", "Lima", "Oslo", "Nairobi", "Seoul", "Chicago", "Lisbon",
]  # fmt: skip


def tool_task(rng: random.Random) -> Row:
    city = rng.choice(_CITIES)
    prompt = rng.choice(
        [
            f"What is the weather like in {city} right now? Use the get_weather tool.",
            f"Use the get_weather tool to tell me the current weather in {city}.",
            f"I am going to {city} today. What is the weather there? Check with get_weather.",
        ]
    )
    return _task("tool_use", prompt, tools=[GET_WEATHER_SPEC], expected_city=city)


# --------------------------------------------------------------------------- the sets

_ALL_IDS = [
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words",
    "keywords:letter_frequency", "language:response_language",
    "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "length_constraints:number_words", "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders", "detectable_content:postscript",
    "detectable_format:number_bullet_lists", "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections", "detectable_format:multiple_sections",
    "detectable_format:json_format", "detectable_format:title", "combination:two_responses",
    "combination:repeat_prompt", "startend:end_checker", "change_case:capital_word_frequency",
    "change_case:english_capital", "change_case:english_lowercase", "punctuation:no_comma",
    "startend:quotation",
]  # fmt: skip

#: file name -> (seed, id prefix, counts per kind or an explicit order)
BUNDLED_SETS: dict[str, tuple[int, str, dict[str, int] | list[str]]] = {
    # the quick debug reads the first 5: one of each kind, then more
    "debug_tasks.jsonl": (
        101,
        "debug",
        ["math", "mcqa", "if", "tool", "math", "mcqa", "if", "math", "mcqa", "if"],
    ),
    "sweep_tasks.jsonl": (202, "sweep", {"math": 36, "mcqa": 36, "if": 36, "tool": 12}),
    "research_tasks.jsonl": (303, "research", {"math": 18, "mcqa": 18, "if": 18, "tool": 6}),
    "verification_test.jsonl": (404, "verify", {"if2": 30}),
}

_KIND_NAMES = {"if": "if", "if2": "if", "math": "math", "mcqa": "mcqa", "tool": "tool"}


def _make(kind: str, rng: random.Random) -> Row:
    if kind == "math":
        return math_task(rng)
    if kind == "mcqa":
        return mcqa_task(rng)
    if kind == "tool":
        return tool_task(rng)
    if kind == "if":
        return instruction_task(rng, rng.choice([1, 2, 2]))
    if kind == "if2":
        return instruction_task(rng, 2)
    raise ValueError(f"unknown task kind {kind!r}")


def make_task_set(name: str) -> list[Row]:
    """The rows of one bundled file (the same rows on every call and machine)."""
    seed, prefix, spec = BUNDLED_SETS[name]
    rng = random.Random(seed)
    if isinstance(spec, list):
        kinds = list(spec)
    else:
        kinds = [kind for kind, count in spec.items() for _ in range(count)]
        rng.shuffle(kinds)
    rows: list[Row] = []
    seen: set[str] = set()
    for index, kind in enumerate(kinds):
        for _ in range(50):  # avoid repeating a prompt within a file
            row = _make(kind, rng)
            key = str(row["responses_create_params"]["input"])
            if key not in seen:
                break
        seen.add(key)
        rows.append({"task_id": f"{prefix}-{index:03d}-{_KIND_NAMES[kind]}", **row})
    return rows


def write_bundled_tasks(out_dir: Path) -> dict[str, int]:
    """Write the four bundled task files into ``out_dir``; returns rows written per file."""
    out_dir = Path(out_dir)
    counts: dict[str, int] = {}
    for name in BUNDLED_SETS:
        rows = make_task_set(name)
        with atomic_output(out_dir / name) as handle:
            for row in rows:
                handle.write(dumps(row))
        counts[name] = len(rows)
    return counts
