"""Conversions between the OpenAI Responses API and Chat Completions (pure functions, no I/O).

Used by the ``openai`` model backend when the upstream speaks only Chat Completions (vLLM,
llama.cpp server) and by the ``embedded`` backend (llama-cpp-python's
``create_chat_completion`` takes and returns Chat Completions shapes).

Four directions:

* :func:`responses_request_to_chat` — a Responses request body → a Chat Completions request.
* :func:`chat_response_to_responses` — a Chat Completions response → a Responses object.
* :func:`chat_request_to_responses` — a Chat Completions request → a Responses request.
* :func:`responses_response_to_chat` — a Responses object → a Chat Completions response.

What one side cannot express is dropped, never crashed on: reasoning items, hosted tools
(web search, file search …), ``previous_response_id``, ``store`` and the like. The request
converters log what they drop at DEBUG level; :func:`convert_responses_request` and
:func:`convert_chat_request` return the same conversion together with the list of dropped
things (``"previous_response_id"``, ``"input[3]: reasoning item"``, …) for callers that want to
warn or refuse. Only a body that is not an object, or an ``input``/``messages`` of the wrong
type, raises :class:`ConversionError` (a ``ValueError``).

Conventions (chosen for the open-weight servers we target — vLLM, llama.cpp, llama-cpp-python):

* ``instructions`` become a leading ``system`` message; ``developer`` messages become
  ``system`` messages (most open-model chat templates know no ``developer`` role).
* Text-only content is sent as a plain string (parts joined with ``"\\n"``), because many chat
  templates render only string content; images and files are kept as content parts.
* Consecutive ``function_call`` items (and those right after an assistant message) form one
  assistant message with several ``tool_calls``; that message's ``content`` is ``None`` when it
  has no text.
* Sampling extras that open-weight servers accept on both endpoints (``seed``, ``stop``,
  ``top_k``, ``min_p``, ``presence_penalty`` …) pass through unchanged in both directions.
* Response ids are derived from the chat id (``chatcmpl-X`` ↔ ``resp_X``, ``msg_X``,
  ``fc_X_<i>``), or from a hash of the completion when it has no id, so the same completion
  always gives the same object. Pass ``response_id=`` to choose the id yourself (e.g. when the
  upstream's chat ids are random).

:func:`parse_text_tool_calls` recovers tool calls that small models write as text
(``<tool_call>{"name": …, "arguments": {…}}</tool_call>``); the text of a response is
rollsweep.rollouts.text's.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import time
import warnings
from typing import Any, NamedTuple

from rollsweep.rollouts.text import CONTENT_TEXT_PARTS, content_text

__all__ = [
    "ConversionError",
    "Converted",
    "chat_request_to_responses",
    "chat_response_to_responses",
    "complete_response",
    "convert_chat_request",
    "convert_responses_request",
    "parse_text_tool_calls",
    "responses_request_to_chat",
    "responses_response_to_chat",
]

log = logging.getLogger(__name__)

#: Keys copied unchanged between the two request shapes: standard on one or both endpoints, or
#: sampling extras that vLLM / llama.cpp accept on both.
_PASSTHROUGH_KEYS = (
    "temperature",
    "top_p",
    "seed",
    "parallel_tool_calls",
    "user",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "top_k",
    "min_p",
    "repetition_penalty",
)

#: Responses message roles (Chat Completions uses the same names plus ``tool``).
_MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})


class ConversionError(ValueError):
    """A body that cannot be converted at all (not an object, ``input`` of the wrong type)."""


class Converted(NamedTuple):
    """A converted request body and what was dropped on the way (human-readable, in order)."""

    body: dict[str, Any]
    dropped: list[str]


# ---------------------------------------------------------------------------------------------
# small helpers


def _json_text(value: Any) -> str:
    """Arguments and tool outputs as the JSON/text string both APIs expect."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _arguments_text(value: Any) -> str:
    """Function-call arguments as a JSON string (``"{}"`` when missing)."""
    if value is None or value == "":
        return "{}"
    return _json_text(value)


def _int(value: Any) -> int:
    """A token count as an int (0 for missing or junk values)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _strip_prefix(value: str, *prefixes: str) -> str:
    for prefix in prefixes:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _first_choice(chat: dict[str, Any]) -> dict[str, Any] | None:
    choices = chat.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


# ---------------------------------------------------------------------------------------------
# Responses request → Chat Completions request


def _responses_content_to_chat(
    content: Any, role: str, where: str, dropped: list[str]
) -> tuple[Any, str | None]:
    """A Responses message content → (chat content, refusal text or None)."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        dropped.append(f"{where}: content of type {type(content).__name__}")
        return "", None
    parts: list[dict[str, Any]] = []
    refusals: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif kind in CONTENT_TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "refusal" and role == "assistant":
            refusals.append(str(part.get("refusal") or ""))
        elif kind == "input_image" and role == "user" and part.get("image_url"):
            image = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and role == "user":
            file = {k: part[k] for k in ("file_id", "file_data", "filename") if part.get(k)}
            parts.append({"type": "file", "file": file})
        else:
            dropped.append(f"{where}.content[{j}]: {kind or type(part).__name__} part")
    refusal = "\n".join(refusals) if refusals else None
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts), refusal
    return parts, refusal


def _responses_tools_to_chat(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
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


def _responses_tool_choice_to_chat(choice: Any, dropped: list[str]) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if name:
            return {"type": "function", "function": {"name": name}}
    dropped.append(f"tool_choice: {choice!r}")
    return None


def _text_format_to_response_format(text: Any, dropped: list[str]) -> dict[str, Any] | None:
    if not isinstance(text, dict):
        return None
    for key in text:
        if key != "format":
            dropped.append(f"text.{key}")
    fmt = text.get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {
            key: fmt[key]
            for key in ("name", "description", "schema", "strict")
            if fmt.get(key) is not None
        }
        return {"type": "json_schema", "json_schema": schema}
    dropped.append(f"text.format: {fmt['type']}")
    return None


def _responses_input_to_messages(
    items: Any, instructions: Any, dropped: list[str]
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        dropped.append("instructions (not a string)")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if items is None:
        return messages
    if not isinstance(items, list):
        raise ConversionError(f"input must be a string or a list, not {type(items).__name__}")

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            dropped.append(f"{where}: {type(item).__name__} item")
            continue
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                dropped.append(f"{where}: message with role {role!r}")
                continue
            chat_role = "system" if role == "developer" else role
            content, refusal = _responses_content_to_chat(
                item.get("content"), chat_role, where, dropped
            )
            message: dict[str, Any] = {"role": chat_role, "content": content}
            if refusal is not None:
                message["refusal"] = refusal
            messages.append(message)
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or f"call_{i}"),
                "type": "function",
                "function": {
                    "name": str(item.get("name") or ""),
                    "arguments": _arguments_text(item.get("arguments")),
                },
            }
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant":
                previous.setdefault("tool_calls", []).append(call)
                if previous["content"] == "":
                    previous["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                for j, part in enumerate(output):
                    if not (isinstance(part, dict) and part.get("type") in CONTENT_TEXT_PARTS):
                        dropped.append(f"{where}.output[{j}]: non-text part")
                output = content_text(output)
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id") or ""),
                    "content": _json_text(output),
                }
            )
        else:
            dropped.append(f"{where}: {kind or 'untyped'} item")
    return messages


def convert_responses_request(body: dict[str, Any], *, model: str | None = None) -> Converted:
    """A Responses request body → a Chat Completions request body, plus what was dropped.

    ``model`` overrides the body's ``model``; with neither, the result has no ``model`` key.
    """
    if not isinstance(body, dict):
        raise ConversionError(f"a request body must be an object, not {type(body).__name__}")
    dropped: list[str] = []
    chat: dict[str, Any] = {}
    if model is not None or body.get("model") is not None:
        chat["model"] = model if model is not None else body["model"]
    chat["messages"] = _responses_input_to_messages(
        body.get("input"), body.get("instructions"), dropped
    )

    tools = _responses_tools_to_chat(body.get("tools"), dropped)
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            choice = _responses_tool_choice_to_chat(body["tool_choice"], dropped)
            if choice is not None:
                chat["tool_choice"] = choice
    elif body.get("tool_choice") is not None:
        dropped.append("tool_choice (no function tools)")

    for key in _PASSTHROUGH_KEYS:
        if body.get(key) is not None:
            if key == "parallel_tool_calls" and not tools:
                continue  # the chat API refuses parallel_tool_calls without tools
            chat[key] = body[key]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs") is not None:
        chat["logprobs"] = True
        chat["top_logprobs"] = body["top_logprobs"]
    response_format = _text_format_to_response_format(body.get("text"), dropped)
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]

    handled = {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "top_logprobs",
        "text",
        "reasoning",
        *_PASSTHROUGH_KEYS,
    }
    dropped.extend(
        sorted(key for key, value in body.items() if key not in handled and value is not None)
    )
    if dropped:
        log.debug("responses → chat dropped: %s", "; ".join(dropped))
    return Converted(chat, dropped)


def responses_request_to_chat(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """A Responses request body → a Chat Completions request body (dropped parts logged).

    See :func:`convert_responses_request` for the list of what was dropped.
    """
    return convert_responses_request(body, model=model).body


# ---------------------------------------------------------------------------------------------
# Chat Completions response → Responses object


def _chat_usage_to_responses(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    input_tokens = _int(usage.get("prompt_tokens"))
    output_tokens = _int(usage.get("completion_tokens"))
    total = usage.get("total_tokens")
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _int(prompt_details.get("cached_tokens")),
            "cache_write_tokens": 0,  # chat completions do not report it (newer SDKs need it)
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {
            "reasoning_tokens": _int(completion_details.get("reasoning_tokens"))
        },
        "total_tokens": _int(total) if total is not None else input_tokens + output_tokens,
    }


def _chat_tool_calls(
    message: dict[str, Any], request: dict[str, Any] | None, text_tool_calls: bool
) -> tuple[list[dict[str, Any]], Any]:
    """The (name, arguments, id) calls of a chat message, and its content left after parsing."""
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
                "arguments": _arguments_text(function.get("arguments")),
            }
        )
    legacy = message.get("function_call")
    if not calls and isinstance(legacy, dict):
        calls.append(
            {
                "id": None,
                "name": str(legacy.get("name") or ""),
                "arguments": _arguments_text(legacy.get("arguments")),
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


def chat_response_to_responses(
    chat: dict[str, Any],
    *,
    request: dict[str, Any] | None = None,
    response_id: str | None = None,
    created_at: int | None = None,
    text_tool_calls: bool = False,
) -> dict[str, Any]:
    """A Chat Completions response → a Responses API object (first choice only).

    ``request`` is the original Responses request: its sampling parameters, tools, instructions
    and ``max_output_tokens`` are echoed as the Responses API does. ``finish_reason`` ``length``
    gives ``status: "incomplete"`` with ``incomplete_details.reason = "max_output_tokens"``.
    Ids are derived from the chat id (or from a hash of the completion when it has none) unless
    ``response_id`` is given. With ``text_tool_calls``, a message without structured tool calls
    whose text holds tool calls (see :func:`parse_text_tool_calls`) naming only tools of the
    request is turned into ``function_call`` items.
    """
    if not isinstance(chat, dict):
        raise ConversionError(f"a chat completion must be an object, not {type(chat).__name__}")
    request = request if isinstance(request, dict) else {}

    if response_id:
        base = _strip_prefix(str(response_id), "resp_")
    else:
        chat_id = str(chat.get("id") or "")
        base = _strip_prefix(chat_id, "chatcmpl-", "chatcmpl_") or _digest(chat)
    resp_id = response_id or f"resp_{base}"

    choice = _first_choice(chat)
    output: list[dict[str, Any]] = []
    status = "completed"
    incomplete_details = None
    error = None
    if choice is None:
        status = "failed"
        error = {"code": "server_error", "message": "the chat completion has no choices"}
    else:
        finish_reason = choice.get("finish_reason")
        if finish_reason == "length":
            status = "incomplete"
            incomplete_details = {"reason": "max_output_tokens"}
        elif finish_reason == "content_filter":
            status = "incomplete"
            incomplete_details = {"reason": "content_filter"}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}

        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            output.append(
                {
                    "type": "reasoning",
                    "id": f"rs_{base}",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": reasoning}],
                    "status": status,
                }
            )

        calls, content = _chat_tool_calls(message, request, text_tool_calls)
        text = content_text(content)
        refusal = message.get("refusal")
        if text or refusal or not calls:
            parts: list[dict[str, Any]] = []
            if text or not refusal:
                part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
                logprobs = (choice.get("logprobs") or {}).get("content")
                if isinstance(logprobs, list):
                    part["logprobs"] = logprobs
                parts.append(part)
            if refusal:
                parts.append({"type": "refusal", "refusal": str(refusal)})
            output.append(
                {
                    "type": "message",
                    "id": f"msg_{base}",
                    "status": status,
                    "role": "assistant",
                    "content": parts,
                }
            )
        for i, call in enumerate(calls):
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{base}_{i}",
                    "call_id": str(call["id"] or f"call_{base}_{i}"),
                    "name": call["name"],
                    "arguments": call["arguments"],
                    "status": status,
                }
            )

    if created_at is None:
        created = chat.get("created")
        created_at = int(created) if isinstance(created, int | float) else int(time.time())
    text_config = request.get("text") if isinstance(request.get("text"), dict) else None
    response = {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": chat.get("model") or request.get("model"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning"),
        "temperature": request.get("temperature"),
        "text": text_config or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": list(request.get("tools") or []),
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation", "disabled"),
        "usage": _chat_usage_to_responses(chat.get("usage")),
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }
    if request.get("seed") is not None:
        response["seed"] = request["seed"]  # not a Responses field, but our sampling parameter
    return response


def complete_response(response: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A Responses object with every field the OpenAI schema requires, taken from the request
    where the backend left them out (NeMo Gym's openai_model validates against that schema)."""
    done = dict(response)
    done.setdefault("object", "response")
    done.setdefault("created_at", int(time.time()))
    done.setdefault("output", [])
    done.setdefault("parallel_tool_calls", request.get("parallel_tool_calls", True))
    done.setdefault("tool_choice", request.get("tool_choice", "auto"))
    done.setdefault("tools", list(request.get("tools") or []))
    usage = done.get("usage")
    if isinstance(usage, dict):
        usage = dict(usage)
        usage.setdefault("input_tokens_details", {"cached_tokens": 0, "cache_write_tokens": 0})
        usage.setdefault("output_tokens_details", {"reasoning_tokens": 0})
        done["usage"] = usage
    return done


# ---------------------------------------------------------------------------------------------
# Chat Completions request → Responses request


def _chat_content_to_responses(
    content: Any, role: str, where: str, dropped: list[str]
) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return _json_text(content)
    text_type = "output_text" if role == "assistant" else "input_text"
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            parts.append({"type": text_type, "text": part})
        elif kind in CONTENT_TEXT_PARTS:
            parts.append({"type": text_type, "text": str(part.get("text") or "")})
        elif kind == "refusal" and role == "assistant":
            parts.append({"type": "refusal", "refusal": str(part.get("refusal") or "")})
        elif kind == "image_url" and role == "user":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append({"type": "input_image", "image_url": url, "detail": detail or "auto"})
        elif kind == "file" and role == "user":
            file = part.get("file") or {}
            parts.append({"type": "input_file", **{k: v for k, v in file.items() if v}})
        else:
            dropped.append(f"{where}.content[{j}]: {kind or type(part).__name__} part")
    if role == "assistant":
        for part in parts:
            if part["type"] == "output_text":
                part["annotations"] = []
    return parts


def _chat_messages_to_input(messages: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if not isinstance(messages, list):
        raise ConversionError(f"messages must be a list, not {type(messages).__name__}")
    items: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            dropped.append(f"{where}: {type(message).__name__} message")
            continue
        role = message.get("role")
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id") or ""),
                    "output": content_text(message.get("content")),
                }
            )
            continue
        if role not in _MESSAGE_ROLES:
            dropped.append(f"{where}: message with role {role!r}")
            continue
        content = _chat_content_to_responses(message.get("content"), role, where, dropped)
        if role == "assistant" and message.get("refusal"):
            if isinstance(content, str):
                content = (
                    [{"type": "output_text", "text": content, "annotations": []}] if content else []
                )
            content = [*content, {"type": "refusal", "refusal": str(message["refusal"])}]
        tool_calls = (message.get("tool_calls") or []) if role == "assistant" else []
        if content or not tool_calls:
            items.append({"role": role, "content": content})
        for call in tool_calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": str(call.get("id") or ""),
                    "name": str(function.get("name") or ""),
                    "arguments": _arguments_text(function.get("arguments")),
                }
            )
    return items


def _chat_tools_to_responses(tools: Any, dropped: list[str]) -> list[dict[str, Any]]:
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


def convert_chat_request(body: dict[str, Any]) -> Converted:
    """A Chat Completions request body → a Responses request body, plus what was dropped.

    System and developer messages stay in ``input`` (with their roles) rather than becoming
    ``instructions``; ``max_tokens``/``max_completion_tokens`` → ``max_output_tokens``.
    """
    if not isinstance(body, dict):
        raise ConversionError(f"a request body must be an object, not {type(body).__name__}")
    dropped: list[str] = []
    resp: dict[str, Any] = {}
    if body.get("model") is not None:
        resp["model"] = body["model"]
    resp["input"] = _chat_messages_to_input(body.get("messages", []), dropped)
    tools = _chat_tools_to_responses(body.get("tools"), dropped)
    if tools:
        resp["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        resp["tool_choice"] = choice
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        resp["tool_choice"] = {"type": "function", "name": choice["function"]["name"]}
    elif choice is not None:
        dropped.append(f"tool_choice: {choice!r}")
    for key in _PASSTHROUGH_KEYS:
        if body.get(key) is not None:
            resp[key] = body[key]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        resp["max_output_tokens"] = max_tokens
    if body.get("logprobs") and body.get("top_logprobs") is not None:
        resp["top_logprobs"] = body["top_logprobs"]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("text", "json_object"):
        resp["text"] = {"format": {"type": fmt["type"]}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        resp["text"] = {
            "format": {
                "type": "json_schema",
                **{
                    k: schema[k] for k in ("name", "description", "schema", "strict") if k in schema
                },
            }
        }
    elif fmt is not None:
        dropped.append(f"response_format: {fmt!r}")
    if body.get("reasoning_effort"):
        resp["reasoning"] = {"effort": body["reasoning_effort"]}
    for key in ("metadata", "store", "service_tier"):
        if body.get(key) is not None:
            resp[key] = body[key]

    handled = {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "metadata",
        "store",
        "service_tier",
        *_PASSTHROUGH_KEYS,
    }
    dropped.extend(
        sorted(key for key, value in body.items() if key not in handled and value is not None)
    )
    if dropped:
        log.debug("chat → responses dropped: %s", "; ".join(dropped))
    return Converted(resp, dropped)


def chat_request_to_responses(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request body → a Responses request body (dropped parts logged)."""
    return convert_chat_request(body).body


# ---------------------------------------------------------------------------------------------
# Responses object → Chat Completions response


def responses_response_to_chat(resp: dict[str, Any]) -> dict[str, Any]:
    """A Responses API object → a Chat Completions response with one choice.

    Text of all ``message`` items is joined into the assistant ``content`` (``None`` when there
    is none and there are tool calls); ``function_call`` items become ``tool_calls``; reasoning
    text goes to ``reasoning_content`` (the vLLM convention). ``finish_reason``: ``length`` for
    ``incomplete``/``max_output_tokens``, else ``tool_calls`` when there are calls, else
    ``stop``.
    """
    if not isinstance(resp, dict):
        raise ConversionError(f"a response must be an object, not {type(resp).__name__}")
    texts: list[str] = []
    refusals: list[str] = []
    reasoning: list[str] = []
    logprobs: list[Any] = []
    has_logprobs = False
    tool_calls: list[dict[str, Any]] = []
    for item in resp.get("output") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for part in content or []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") in CONTENT_TEXT_PARTS:
                    texts.append(str(part.get("text") or ""))
                    if isinstance(part.get("logprobs"), list):
                        has_logprobs = True
                        logprobs.extend(part["logprobs"])
                elif part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif kind == "function_call":
            tool_calls.append(
                {
                    "id": str(item.get("call_id") or item.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(item.get("name") or ""),
                        "arguments": _arguments_text(item.get("arguments")),
                    },
                }
            )
        elif kind == "reasoning":
            for part in [*(item.get("content") or []), *(item.get("summary") or [])]:
                if isinstance(part, dict) and part.get("type") in CONTENT_TEXT_PARTS:
                    reasoning.append(str(part.get("text") or ""))

    text = "".join(texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
    }
    if refusals:
        message["refusal"] = "\n".join(refusals)
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)

    details = resp.get("incomplete_details") or {}
    if resp.get("status") == "incomplete" and details.get("reason") == "content_filter":
        finish_reason = "content_filter"
    elif resp.get("status") == "incomplete":
        finish_reason = "length"
    elif tool_calls:
        finish_reason = "tool_calls"
    else:
        finish_reason = "stop"

    usage = resp.get("usage")
    chat_usage = None
    if isinstance(usage, dict):
        prompt = _int(usage.get("input_tokens"))
        completion = _int(usage.get("output_tokens"))
        total = usage.get("total_tokens")
        chat_usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": _int(total) if total is not None else prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": _int(
                    (usage.get("input_tokens_details") or {}).get("cached_tokens")
                )
            },
            "completion_tokens_details": {
                "reasoning_tokens": _int(
                    (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
                )
            },
        }

    resp_id = str(resp.get("id") or "")
    chat_id = "chatcmpl-" + (_strip_prefix(resp_id, "resp_") or _digest(resp))
    created = resp.get("created_at")
    return {
        "id": chat_id,
        "object": "chat.completion",
        "created": int(created) if isinstance(created, int | float) else int(time.time()),
        "model": resp.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": logprobs} if has_logprobs else None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": chat_usage,
    }


# ---------------------------------------------------------------------------------------------
# tool calls written as text, and the final text of a response

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
    calls: list[dict[str, str]] = []
    if "<tool_call>" in text:
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
        if calls:
            rest = re.sub(
                r"(?:\s*\x00)+\s*", lambda m: "\n" if "\n" in m.group(0) else " ", "".join(kept)
            )
            return rest.strip(), calls
        return text, []
    stripped = text.strip()
    if stripped[:1] in ("{", "[") or stripped.startswith("```"):
        parsed = _loads(stripped, partial=False)
        found = None if parsed is _INVALID else _as_calls(parsed, need_arguments=True)
        if found:
            return "", found
    return text, []
