"""What every verifier is: a name, a ``verify(task, response)`` function, and optional tools.

A verifier reads a task row (the input JSONL line, NeMo Gym compatible) and the Responses API
object the agent produced, and returns ``{"reward": float, **details}``. Tools are plain
functions ``fn(arguments, task) -> JSON-able`` that the resources server exposes to the model.

The Responses object's ``output`` is a list of items, accumulated over all agent steps::

    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "..."}]}
    {"type": "function_call", "name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}",
     "call_id": "call_1"}
    {"type": "function_call_output", "call_id": "call_1", "output": "..."}
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rollsweep.rollouts import text

#: A tool function: (arguments from the model's function call, the task row) -> JSON-able result.
ToolFn = Callable[[dict[str, Any], dict[str, Any]], Any]
#: A verify function: (task row, Responses API object) -> {"reward": float, **details}.
VerifyFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


class VerifierError(Exception):
    """A verifier cannot be loaded or cannot grade a row (bad data, bad result, bad file)."""


class VerifierFailure(VerifierError):
    """A verifier could not reach a verdict on this row: the rollout is a failure, not a 0.

    ``failure_class`` names the reason (``verifier_timeout``, ``judge_failed``, ...). The
    resources server answers ``/verify`` with :meth:`as_result` (HTTP 200), NeMo Gym's
    convention, so the row is routed to the failures sidecar instead of scoring 0.0.
    """

    def __init__(self, failure_class: str, message: str) -> None:
        super().__init__(f"{failure_class}: {message}")
        self.failure_class = failure_class
        self.failure_message = message

    def as_result(self) -> dict[str, Any]:
        """The ``/verify`` answer for this failure."""
        return {
            "reward": 0.0,
            "_ng_failure_class": self.failure_class,
            "failure_message": self.failure_message,
        }


@dataclass(frozen=True)
class Verifier:
    """A named verify function plus the tools (and their OpenAI specs) it offers the model."""

    name: str
    verify: VerifyFn
    tools: Mapping[str, ToolFn] = field(default_factory=dict)
    #: OpenAI Responses function-tool specs:
    #: ``{"type": "function", "name": ..., "description": ..., "parameters": {json schema}}``
    tool_specs: list[dict[str, Any]] = field(default_factory=list)

    def call_tool(self, name: str, arguments: dict[str, Any], task: dict[str, Any]) -> Any:
        """Run one of this verifier's tools; an unknown name is a VerifierError."""
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise VerifierError(f"verifier {self.name!r} has no tool {name!r} (known: {known})")
        return tool(arguments, task)


def _output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(response, dict):
        raise VerifierError(
            f"expected the response to be a JSON object, got {type(response).__name__}"
        )
    output = response.get("output") or []
    if not isinstance(output, list):
        raise VerifierError(f"expected response.output to be a list, got {type(output).__name__}")
    return [item for item in output if isinstance(item, dict)]


def final_text(response: dict[str, Any]) -> str:
    """The text of the last assistant message in a Responses API object ("" when there is none).

    Only text parts count (refusals and reasoning do not); an item without a role is taken as
    the assistant's, as the Responses API only puts assistant messages in ``output``.
    """
    _output_items(response)  # a malformed response is a VerifierError, not an empty answer
    return text.output_text(response)


def joined_output_text(response: dict[str, Any]) -> str:
    """Every ``output_text`` part of every message item, joined with no separator.

    This is the OpenAI SDK's ``Response.output_text``, which NeMo Gym's math_with_judge and
    mcqa servers grade (so text written before a tool call counts, unlike :func:`final_text`).
    """
    _output_items(response)  # a malformed response is a VerifierError, not an empty answer
    return text.joined_output_text(response)


def function_calls(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's function calls, in order: ``{"name", "arguments", "call_id"}``.

    ``arguments`` is the parsed JSON object; when the model wrote arguments that are not a JSON
    object, it is None and ``raw_arguments`` keeps the text.
    """
    calls: list[dict[str, Any]] = []
    for item in _output_items(response):
        if item.get("type") != "function_call":
            continue
        raw = item.get("arguments")
        arguments: Any
        if isinstance(raw, dict):
            arguments = raw
        else:
            try:
                arguments = json.loads(raw) if isinstance(raw, str | bytes) else None
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                arguments = None
        call = {"name": item.get("name"), "arguments": arguments, "call_id": item.get("call_id")}
        if arguments is None:
            call["raw_arguments"] = raw
        calls.append(call)
    return calls


def normalize_result(value: Any) -> dict[str, Any]:
    """A verify() result as ``{"reward": float, **details}``.

    A number becomes ``{"reward": float(number)}``; a dict must hold a finite numeric
    ``reward``. Anything else (None, a string, NaN, a bool) is a VerifierError.
    """
    if isinstance(value, bool):
        raise VerifierError(
            f"verify() returned {value!r}; return a number (e.g. {float(value)}) or "
            "a dict with a numeric 'reward'"
        )
    if isinstance(value, numbers.Real):  # int, float, and numpy's numbers
        reward = float(value)
        if not math.isfinite(reward):
            raise VerifierError(f"verify() returned {value!r}; the reward must be finite")
        return {"reward": reward}
    if isinstance(value, Mapping):
        if "reward" not in value:
            keys = ", ".join(map(repr, value)) or "none"
            raise VerifierError(f"verify() returned a dict without 'reward' (keys: {keys})")
        reward = value["reward"]
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise VerifierError(
                f"verify() returned reward={reward!r} ({type(reward).__name__}); "
                "it must be a number"
            )
        if not math.isfinite(reward):
            raise VerifierError(f"verify() returned reward={reward!r}; it must be finite")
        return {**value, "reward": float(reward)}
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise VerifierError(
        f"verify() returned {shown} ({type(value).__name__}); "
        "expected a number or a dict with a numeric 'reward'"
    )
