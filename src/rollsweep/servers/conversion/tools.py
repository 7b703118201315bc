"""Tools in both APIs: definitions, tool choice, the calls of a message, calls written as text."""

from __future__ import annotations

import ast
import json
import re
import warnings
from typing import Any

from rollsweep.servers.conversion.common import arguments_text

# ---------------------------------------------------------------------------------------------
# tool definitions and tool choice


def responses_tools_to_chat(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
    """Responses function tools as chat tools (hosted tools are dropped)."""
    converted = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            dropped.append(f"tools[{i}]: {kind} tool")
            continue
        function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        if not function.get("name"):
            dropped.append(f"tools[{i}]: function tool without a name")
            continue
        spec = {
            key: function[key]
            for key in ("name", "description", "parameters", "strict")
            if function.get(key) is not None
        }
        converted.append({"type": "function", "function": spec})
    return converted


def responses_tool_choice_to_chat(choice: Any, dropped: list[str]) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if name:
            return {"type": "function", "function": {"name": name}}
    dropped.append(f"tool_choice: {choice!r}")
    return None


def chat_tools_to_responses(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
    """Chat function tools as Responses function tools."""
    converted = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            dropped.append(f"tools[{i}]: not a function tool")
            continue
        spec: dict[str, Any] = {"type": "function", "name": function["name"]}
        for key in ("description", "parameters"):
            if function.get(key) is not None:
                spec[key] = function[key]
        # Chat tools are non-strict unless they say so; Responses tools are strict by default.
        spec["strict"] = bool(function.get("strict", False))
        converted.append(spec)
    return converted


def chat_tool_choice_to_responses(choice: Any, dropped: list[str]) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"type": "function", "name": choice["function"]["name"]}
    if choice is not None:
        dropped.append(f"tool_choice: {choice!r}")
    return None


# ---------------------------------------------------------------------------------------------
# the calls of a chat message


def chat_message_calls(
    message: dict[str, Any], request: dict[str, Any] | None, text_tool_calls: bool
) -> tuple[list[dict[str, Any]], Any]:
    """The (id, name, arguments) calls of a chat message, and its content left after parsing.

    Structured ``tool_calls`` first, else a legacy ``function_call``, else (with
    ``text_tool_calls``) calls written in the text that name only tools of the request.
    """
    content = message.get("content")
    calls = []
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        calls.append(
            {
                "id": call.get("id"),
                "name": str(function.get("name") or ""),
                "arguments": arguments_text(function.get("arguments")),
            }
        )
    legacy = message.get("function_call")
    if not calls and isinstance(legacy, dict):
        calls.append(
            {
                "id": None,
                "name": str(legacy.get("name") or ""),
                "arguments": arguments_text(legacy.get("arguments")),
            }
        )
    if not calls and text_tool_calls and isinstance(content, str):
        names = {
            tool.get("name") or (tool.get("function") or {}).get("name")
            for tool in (request or {}).get("tools") or []
            if isinstance(tool, dict)
        }
        if names:
            rest, parsed = parse_text_tool_calls(content)
            if parsed and all(call["name"] in names for call in parsed):
                calls = [{"id": None, **call} for call in parsed]
                content = rest
    return calls, content


# ---------------------------------------------------------------------------------------------
# tool calls written as text

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"\A```(?:json|JSON)?\s*(.*?)\s*```\Z", re.DOTALL)
_LITERAL_LIMIT = 20_000  # ast.literal_eval only on short strings


_INVALID = object()


def _loads(text: str, *, partial: bool) -> Any:
    """JSON or a Python literal (single quotes, True/None); with ``partial``, also the first
    JSON value followed by junk. ``_INVALID`` when nothing parses."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if not text:
        return _INVALID
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if len(text) <= _LITERAL_LIMIT:
        try:
            with warnings.catch_warnings():  # e.g. "invalid escape sequence" SyntaxWarnings
                warnings.simplefilter("ignore")
                return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    if partial:
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        if start >= 0:
            try:
                return json.JSONDecoder().raw_decode(text, start)[0]
            except (ValueError, RecursionError):
                pass
    return _INVALID


def _as_call(value: Any, *, need_arguments: bool) -> dict[str, str] | None:
    """``{"name", "arguments"}`` (arguments a JSON string) from one parsed object, or None."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict) and "name" not in value:
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    key = next((k for k in ("arguments", "parameters", "args") if k in value), None)
    if key is None:
        if need_arguments:
            return None
        return {"name": name.strip(), "arguments": "{}"}
    arguments = value[key]
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    try:  # a Python literal may hold bytes, sets, tuple keys …
        text = json.dumps(arguments, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return {"name": name.strip(), "arguments": text}


def _as_calls(value: Any, *, need_arguments: bool) -> list[dict[str, str]] | None:
    """Every call in one parsed value (an object or a list of objects); None if any is bad."""
    values = value if isinstance(value, list) else [value]
    if not values:
        return None
    calls = [_as_call(v, need_arguments=need_arguments) for v in values]
    if any(call is None for call in calls):
        return None
    return calls  # type: ignore[return-value]


def parse_text_tool_calls(text: str) -> tuple[str, list[dict[str, str]]]:
    """Tool calls written as text → (the remaining text, ``[{"name", "arguments"}]``).

    Recognised: ``<tool_call>…</tool_call>`` blocks (one or several, each holding one object or
    a JSON list of objects; a block left open at the end counts too), or — with no such block —
    the whole message being one such object or list, possibly in a ```json fence. An object is
    ``{"name": str, "arguments": object | JSON string}`` (``parameters`` is accepted for
    ``arguments``, and ``{"function": {...}}`` wrappers are unwrapped). ``arguments`` in the
    result is always a JSON string. Blocks that do not parse stay in the text; this function
    never raises on any string.
    """
    if not isinstance(text, str) or not text:
        return (text if isinstance(text, str) else ""), []
    if "<tool_call>" in text:
        return _tagged_calls(text)
    stripped = text.strip()
    if stripped[:1] in ("{", "[") or stripped.startswith("```"):
        parsed = _loads(stripped, partial=False)
        found = None if parsed is _INVALID else _as_calls(parsed, need_arguments=True)
        if found:
            return "", found
    return text, []


def _tagged_calls(text: str) -> tuple[str, list[dict[str, str]]]:
    """The calls of a text's ``<tool_call>`` blocks, and the text around them."""
    calls: list[dict[str, str]] = []
    kept: list[str] = []
    position = 0
    for match in _TOOL_CALL_BLOCK.finditer(text):
        parsed = _loads(match.group(1), partial=True)
        found = None if parsed is _INVALID else _as_calls(parsed, need_arguments=False)
        kept.append(text[position : match.start()])
        if found:
            calls.extend(found)
            kept.append("\x00")  # where a call was: joined by one space or one newline
        else:
            kept.append(match.group(0))
        position = match.end()
    kept.append(text[position:])
    if not calls:
        return text, []
    rest = re.sub(r"(?:\s*\x00)+\s*", lambda m: "\n" if "\n" in m.group(0) else " ", "".join(kept))
    return rest.strip(), calls
