"""Request bodies, both ways: a Responses request → a Chat Completions request (what the
backends send upstream), and a chat request → a Responses request (serving chat clients)."""

from __future__ import annotations

from typing import Any

from rollsweep.rollouts.text import CONTENT_TEXT_PARTS, content_text
from rollsweep.servers.conversion.common import (
    MESSAGE_ROLES,
    PASSTHROUGH_KEYS,
    ConversionError,
    Converted,
    arguments_text,
    finish_request,
    json_text,
)
from rollsweep.servers.conversion.tools import (
    chat_tool_choice_to_responses,
    chat_tools_to_responses,
    responses_tool_choice_to_chat,
    responses_tools_to_chat,
)

#: The Responses request keys the conversion reads; any other one with a value is reported dropped.
_RESPONSES_HANDLED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "top_logprobs",
        "text",
        "reasoning",
        *PASSTHROUGH_KEYS,
    }
)

#: The chat request keys the conversion reads; any other one with a value is reported dropped.
_CHAT_HANDLED = frozenset(
    {
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
        *PASSTHROUGH_KEYS,
    }
)

# ---------------------------------------------------------------------------------------------
# Responses request → Chat Completions request


def responses_request_to_chat(body: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """A Responses request body → a Chat Completions request body (dropped parts logged).

    See :func:`convert_responses_request` for the list of what was dropped.
    """
    return convert_responses_request(body, model=model).body


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
    chat["messages"] = _input_to_messages(body.get("input"), body.get("instructions"), dropped)

    tools = responses_tools_to_chat(body.get("tools"), dropped)
    if tools:
        chat["tools"] = tools
        if body.get("tool_choice") is not None:
            choice = responses_tool_choice_to_chat(body["tool_choice"], dropped)
            if choice is not None:
                chat["tool_choice"] = choice
    elif body.get("tool_choice") is not None:
        dropped.append("tool_choice (no function tools)")

    for key in PASSTHROUGH_KEYS:
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
    return finish_request(chat, body, _RESPONSES_HANDLED, dropped, "responses → chat")


def _input_to_messages(items: Any, instructions: Any, dropped: list[str]) -> list[dict[str, Any]]:
    """``instructions`` and ``input`` as chat messages."""
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
            message = _message(item, where, dropped)
            if message is not None:
                messages.append(message)
        elif kind == "function_call":
            _add_function_call(messages, item, i)
        elif kind == "function_call_output":
            messages.append(_tool_message(item, where, dropped))
        else:
            dropped.append(f"{where}: {kind or 'untyped'} item")
    return messages


def _message(item: dict[str, Any], where: str, dropped: list[str]) -> dict[str, Any] | None:
    """A Responses message item as a chat message (None for an unknown role)."""
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        dropped.append(f"{where}: message with role {role!r}")
        return None
    chat_role = "system" if role == "developer" else role
    content, refusal = _content_to_chat(item.get("content"), chat_role, where, dropped)
    message: dict[str, Any] = {"role": chat_role, "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return message


def _add_function_call(messages: list[dict[str, Any]], item: dict[str, Any], i: int) -> None:
    """A ``function_call`` item joins the assistant message before it, or starts one."""
    call = {
        "id": str(item.get("call_id") or item.get("id") or f"call_{i}"),
        "type": "function",
        "function": {
            "name": str(item.get("name") or ""),
            "arguments": arguments_text(item.get("arguments")),
        },
    }
    previous = messages[-1] if messages else None
    if previous is not None and previous["role"] == "assistant":
        previous.setdefault("tool_calls", []).append(call)
        if previous["content"] == "":
            previous["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_message(item: dict[str, Any], where: str, dropped: list[str]) -> dict[str, Any]:
    """A ``function_call_output`` item as a ``tool`` message (text parts only)."""
    output = item.get("output")
    if isinstance(output, list):
        for j, part in enumerate(output):
            if not (isinstance(part, dict) and part.get("type") in CONTENT_TEXT_PARTS):
                dropped.append(f"{where}.output[{j}]: non-text part")
        output = content_text(output)
    return {
        "role": "tool",
        "tool_call_id": str(item.get("call_id") or ""),
        "content": json_text(output),
    }


def _content_to_chat(
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


# ---------------------------------------------------------------------------------------------
# Chat Completions request → Responses request


def chat_request_to_responses(body: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions request body → a Responses request body (dropped parts logged)."""
    return convert_chat_request(body).body


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
    resp["input"] = _messages_to_input(body.get("messages", []), dropped)
    tools = chat_tools_to_responses(body.get("tools"), dropped)
    if tools:
        resp["tools"] = tools
    choice = chat_tool_choice_to_responses(body.get("tool_choice"), dropped)
    if choice is not None:
        resp["tool_choice"] = choice
    for key in PASSTHROUGH_KEYS:
        if body.get(key) is not None:
            resp[key] = body[key]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        resp["max_output_tokens"] = max_tokens
    if body.get("logprobs") and body.get("top_logprobs") is not None:
        resp["top_logprobs"] = body["top_logprobs"]
    text = _response_format_to_text(body.get("response_format"), dropped)
    if text is not None:
        resp["text"] = text
    if body.get("reasoning_effort"):
        resp["reasoning"] = {"effort": body["reasoning_effort"]}
    for key in ("metadata", "store", "service_tier"):
        if body.get(key) is not None:
            resp[key] = body[key]
    return finish_request(resp, body, _CHAT_HANDLED, dropped, "chat → responses")


def _response_format_to_text(fmt: Any, dropped: list[str]) -> dict[str, Any] | None:
    """A chat ``response_format`` as a Responses ``text`` setting (None when there is none)."""
    if isinstance(fmt, dict) and fmt.get("type") in ("text", "json_object"):
        return {"format": {"type": fmt["type"]}}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        keys = ("name", "description", "schema", "strict")
        return {"format": {"type": "json_schema", **{k: schema[k] for k in keys if k in schema}}}
    if fmt is not None:
        dropped.append(f"response_format: {fmt!r}")
    return None


def _messages_to_input(messages: Any, dropped: list[str]) -> list[dict[str, Any]]:
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
        elif role not in MESSAGE_ROLES:
            dropped.append(f"{where}: message with role {role!r}")
        else:
            items.extend(_message_items(message, role, where, dropped))
    return items


def _message_items(
    message: dict[str, Any], role: str, where: str, dropped: list[str]
) -> list[dict[str, Any]]:
    """A chat message as a Responses message item, followed by its tool calls' items."""
    content = _content_to_responses(message.get("content"), role, where, dropped)
    if role == "assistant" and message.get("refusal"):
        if isinstance(content, str):
            content = (
                [{"type": "output_text", "text": content, "annotations": []}] if content else []
            )
        content = [*content, {"type": "refusal", "refusal": str(message["refusal"])}]
    tool_calls = (message.get("tool_calls") or []) if role == "assistant" else []
    items: list[dict[str, Any]] = []
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
                "arguments": arguments_text(function.get("arguments")),
            }
        )
    return items


def _content_to_responses(
    content: Any, role: str, where: str, dropped: list[str]
) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return json_text(content)
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
