"""``tool_use``: NeMo Gym's ``example_single_tool_call`` (``get_weather``), and a checked variant.

The task offers the model a ``get_weather`` function (``city`` parameter) in
``responses_create_params.tools``; the resources server runs the tool and the agent feeds the
result back to the model, which then answers in words.

Tool: ``get_weather({"city": ...})`` returns ``{"city", "weather_description"}`` like NeMo Gym's
example server, but the weather is derived from the city's name (same city, same weather, any
run) instead of always "cold", so an answer can be checked against it.

Reference: NeMo Gym's ``example_single_tool_call`` server, whose ``verify()`` returns 1.0 for
every rollout, whatever the model did (it demonstrates the plumbing, not a task). rollsweep
gives that reward to rows of that environment, deliberately, so rewards and means match NeMo
Gym's; such a reward says nothing about the model. Grading modes (row field ``grading_mode``):

- ``nemo_gym`` (default without ``expected_city``): 1.0 for any rollout, as NeMo Gym, except
  an empty one (no text and no function call) scores 0.0 like under every bundled verifier;
- ``called_tool``: 1.0 when the model called ``get_weather`` at all;
- ``checked`` (default with ``expected_city``; the bundled data): 1.0 when the model called
  ``get_weather`` with that city (case, accents, spacing and a ", Country" suffix ignored)
  **and** the final answer names the weather condition the tool returned for it (e.g.
  "rainy") and no other one (so listing every kind of weather does not pass).

Details: ``grading_mode``, ``called_tool`` (bool), ``called_cities`` (the ``city`` arguments,
in order), ``expected_city``, ``mentions_result`` (bool, or None outside ``checked``) and
``extracted_answer`` (the city of the matching call, else of the last call, or None).
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

from rollsweep.verifiers.base import Verifier, VerifierError, final_text, function_calls

TOOL_NAME = "get_weather"

#: (condition, words that count as mentioning it in the answer)
CONDITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sunny", ("sunny", "sunshine")),
    ("cloudy", ("cloudy", "clouds", "overcast")),
    ("rainy", ("rainy", "rain", "raining")),
    ("snowy", ("snowy", "snow", "snowing")),
    ("windy", ("windy",)),
    ("foggy", ("foggy", "fog", "misty")),
)

GET_WEATHER_SPEC: dict[str, Any] = {
    "type": "function",
    "name": TOOL_NAME,
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The name of the city, e.g. Paris"},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def normalize_city(name: str) -> str:
    """A city name for comparison: accents, case, punctuation and a ', Country' part dropped."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = text.split(",")[0]
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def weather_for(city: str) -> tuple[str, int]:
    """The (condition, temperature in °C) of a city: fixed by its normalized name."""
    digest = hashlib.sha256(normalize_city(city).encode()).digest()
    condition = CONDITIONS[digest[0] % len(CONDITIONS)][0]
    temperature = -5 + digest[1] % 36
    return condition, temperature


def get_weather(arguments: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The tool: ``{"city": ...}`` -> ``{"city", "weather_description"}``."""
    city = arguments.get("city") if isinstance(arguments, dict) else None
    if not isinstance(city, str) or not city.strip():
        raise ValueError("get_weather needs a 'city' argument (a non-empty string)")
    city = city.strip()
    condition, temperature = weather_for(city)
    return {
        "city": city,
        "weather_description": f"The weather in {city} is {condition}, {temperature} °C.",
    }


def mentions_condition(text: str, condition: str) -> bool:
    """Does the text name this weather condition, and no other one?"""
    words = set("".join(c if c.isalnum() else " " for c in text.lower()).split())
    named = {name for name, synonyms in CONDITIONS if words & set(synonyms)}
    return named == {condition}


GRADING_MODES = ("nemo_gym", "called_tool", "checked")


def verify_tool_use(task: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The reward of the row's grading mode (see the module docstring)."""
    calls = [c for c in function_calls(response) if c["name"] == TOOL_NAME]
    cities = [
        c["arguments"].get("city")
        for c in calls
        if c["arguments"] is not None and isinstance(c["arguments"].get("city"), str)
    ]
    expected = task.get("expected_city")
    mode = task.get("grading_mode") or ("nemo_gym" if expected is None else "checked")
    if mode not in GRADING_MODES:
        raise VerifierError(
            f"unknown tool_use grading_mode {mode!r} (known: {', '.join(GRADING_MODES)})"
        )
    result: dict[str, Any] = {
        "grading_mode": mode,
        "called_tool": bool(calls),
        "called_cities": cities,
        "expected_city": expected,
        "mentions_result": None,
        "extracted_answer": cities[-1] if cities else None,
    }
    if mode == "nemo_gym":
        empty = not function_calls(response) and not final_text(response).strip()
        return {"reward": 0.0 if empty else 1.0, **result}
    if mode == "called_tool":
        return {"reward": 1.0 if calls else 0.0, **result}
    if not isinstance(expected, str) or not normalize_city(expected):
        raise VerifierError(f"the checked mode needs expected_city, a city name, got {expected!r}")
    wanted = normalize_city(expected)
    matching = [city for city in cities if normalize_city(city) == wanted]
    condition, _ = weather_for(expected)
    mentions = mentions_condition(final_text(response), condition)
    result.update(mentions_result=mentions, extracted_answer=matching[-1] if matching else None)
    return {"reward": 1.0 if matching and mentions else 0.0, **result}


VERIFIER = Verifier(
    name="tool_use",
    verify=verify_tool_use,
    tools={TOOL_NAME: get_weather},
    tool_specs=[GET_WEATHER_SPEC],
)
