"""Responses API ⇄ Chat Completions conversions, text tool calls and output_text."""

from __future__ import annotations

import copy
import json

import pytest

from rollsweep.rollouts.text import output_text
from rollsweep.servers.conversion.common import ConversionError
from rollsweep.servers.conversion.requests import (
    chat_request_to_responses,
    convert_chat_request,
    convert_responses_request,
    responses_request_to_chat,
)
from rollsweep.servers.conversion.responses import (
    chat_response_to_responses,
    responses_response_to_chat,
)
from rollsweep.servers.conversion.tools import parse_text_tool_calls

ADD_TOOL = {
    "type": "function",
    "name": "add",
    "description": "Add two integers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
    "strict": False,
}
WEATHER_TOOL = {
    "type": "function",
    "name": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}


def chat_completion(
    content=None, tool_calls=None, finish_reason="stop", *, chat_id="chatcmpl-abc123", usage=None
):
    message = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in tool_calls
        ]
    body = {
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "smollm2",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }
    if chat_id is not None:
        body["id"] = chat_id
    return body


# ------------------------------------------------------------------ Responses request → chat


def test_string_input_and_instructions_become_system_then_user():
    chat = responses_request_to_chat(
        {"input": "What is 2+2?", "instructions": "Answer with a number."}, model="m1"
    )
    assert chat == {
        "model": "m1",
        "messages": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "What is 2+2?"},
        ],
    }


def test_model_argument_overrides_body_and_absent_model_is_omitted():
    assert responses_request_to_chat({"input": "x", "model": "a"}, model="b")["model"] == "b"
    assert responses_request_to_chat({"input": "x", "model": "a"})["model"] == "a"
    assert "model" not in responses_request_to_chat({"input": "x"})


def test_message_list_roles_and_content_parts():
    body = {
        "input": [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Line one"},
                    {"type": "input_text", "text": "Line two"},
                ],
            },
        ]
    }
    assert responses_request_to_chat(body)["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Line one\nLine two"},
    ]


def test_images_stay_content_parts():
    body = {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AAA",
                        "detail": "low",
                    },
                ],
            }
        ]
    }
    assert responses_request_to_chat(body)["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}},
    ]


def test_sampling_parameters_and_json_schema_format():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    chat = responses_request_to_chat(
        {
            "input": "q",
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 42,
            "max_output_tokens": 64,
            "text": {"format": {"type": "json_schema", "name": "ans", "schema": schema}},
        }
    )
    assert chat["temperature"] == 0.7
    assert chat["top_p"] == 0.9
    assert chat["seed"] == 42
    assert chat["max_tokens"] == 64
    assert "max_output_tokens" not in chat
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "ans", "schema": schema},
    }
    plain = responses_request_to_chat({"input": "q", "text": {"format": {"type": "text"}}})
    assert "response_format" not in plain


def test_tools_and_tool_choice():
    chat = responses_request_to_chat(
        {
            "input": "add 2 and 3",
            "tools": [ADD_TOOL, {"type": "web_search_preview"}],
            "tool_choice": {"type": "function", "name": "add"},
            "parallel_tool_calls": False,
        }
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two integers.",
                "parameters": ADD_TOOL["parameters"],
                "strict": False,
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert chat["parallel_tool_calls"] is False


def test_tool_choice_and_parallel_flag_dropped_without_function_tools():
    converted = convert_responses_request(
        {
            "input": "q",
            "tools": [{"type": "file_search", "vector_store_ids": ["vs"]}],
            "tool_choice": "required",
            "parallel_tool_calls": True,
        }
    )
    assert "tools" not in converted.body
    assert "tool_choice" not in converted.body
    assert "parallel_tool_calls" not in converted.body
    assert any("file_search" in entry for entry in converted.dropped)


def test_consecutive_function_calls_form_one_assistant_message_and_outputs_become_tool():
    body = {
        "input": [
            {"role": "user", "content": "Weather in Paris and 2+3?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_a",
                "name": "weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "call_b",
                "name": "add",
                "arguments": {"a": 2, "b": 3},
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": {"sum": 5}},
            {"role": "assistant", "content": "Sunny, and 5."},
            {"role": "user", "content": "Thanks"},
        ]
    }
    converted = convert_responses_request(body)
    messages = converted.body["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[1]["content"] is None
    calls = messages[1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_a", "call_b"]
    assert [c["function"]["name"] for c in calls] == ["weather", "add"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"a": 2, "b": 3}
    assert all(c["type"] == "function" for c in calls)
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}
    assert json.loads(messages[3]["content"]) == {"sum": 5}
    assert converted.dropped == ["input[1]: reasoning item"]


def test_function_call_after_assistant_text_joins_that_message():
    body = {
        "input": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me check."},
            {"type": "function_call", "call_id": "c1", "name": "add", "arguments": "{}"},
        ]
    }
    messages = responses_request_to_chat(body)["messages"]
    assert len(messages) == 2
    assert messages[1]["content"] == "Let me check."
    assert messages[1]["tool_calls"][0]["id"] == "c1"


def test_unknown_keys_and_items_are_dropped_and_reported():
    body = {
        "input": [
            {"type": "item_reference", "id": "msg_1"},
            "not an item",
            {"role": "wizard", "content": "x"},
            {"role": "user", "content": "q"},
        ],
        "store": True,
        "previous_response_id": "resp_1",
        "include": ["reasoning.encrypted_content"],
        "metadata": None,
    }
    converted = convert_responses_request(body)
    assert converted.body["messages"] == [{"role": "user", "content": "q"}]
    for key in ("store", "previous_response_id", "include"):
        assert key in converted.dropped
        assert key not in converted.body
    assert "metadata" not in converted.dropped  # None values are not worth reporting
    assert len([d for d in converted.dropped if d.startswith("input[")]) == 3
    # the plain function returns the same body
    assert responses_request_to_chat(body) == converted.body


@pytest.mark.parametrize("bad", [{"input": 5}, {"input": {"role": "user"}}, "not a body"])
def test_structurally_invalid_requests_raise_conversion_error(bad):
    with pytest.raises(ConversionError):
        responses_request_to_chat(bad)
    assert issubclass(ConversionError, ValueError)


def test_request_conversion_does_not_mutate_the_input():
    body = {
        "input": [
            {"role": "assistant", "content": ""},
            {"type": "function_call", "call_id": "c", "name": "add", "arguments": "{}"},
        ],
        "tools": [ADD_TOOL],
    }
    before = copy.deepcopy(body)
    responses_request_to_chat(body)
    assert body == before


# ------------------------------------------------------------------ chat response → Responses


def test_text_completion_becomes_a_completed_response():
    request = {"input": "q", "temperature": 0.3, "top_p": 0.8, "max_output_tokens": 50, "seed": 7}
    resp = chat_response_to_responses(chat_completion("The answer is 4."), request=request)
    assert resp["id"] == "resp_abc123"
    assert resp["object"] == "response"
    assert resp["created_at"] == 1_700_000_000
    assert resp["model"] == "smollm2"
    assert resp["status"] == "completed"
    assert resp["incomplete_details"] is None
    assert resp["output"] == [
        {
            "type": "message",
            "id": "msg_abc123",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "The answer is 4.", "annotations": []}],
        }
    ]
    assert resp["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17,
    }
    assert (resp["temperature"], resp["top_p"], resp["max_output_tokens"]) == (0.3, 0.8, 50)
    assert resp["seed"] == 7
    assert output_text(resp) == "The answer is 4."


def test_length_finish_is_incomplete_with_max_output_tokens():
    resp = chat_response_to_responses(chat_completion("The answer is", finish_reason="length"))
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][0]["status"] == "incomplete"
    assert output_text(resp) == "The answer is"


def test_junk_usage_values_do_not_crash():
    usage = {"prompt_tokens": "many", "completion_tokens": float("inf"), "total_tokens": None}
    resp = chat_response_to_responses(chat_completion("x", usage=usage))
    assert resp["usage"]["input_tokens"] == 0
    assert resp["usage"]["total_tokens"] == 0


def test_usage_details_and_missing_total():
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    resp = chat_response_to_responses(chat_completion("x", usage=usage))
    assert resp["usage"]["total_tokens"] == 130
    assert resp["usage"]["input_tokens_details"]["cached_tokens"] == 64
    assert resp["usage"]["output_tokens_details"] == {"reasoning_tokens": 10}
    no_usage = chat_completion("x")
    del no_usage["usage"]
    assert chat_response_to_responses(no_usage)["usage"] is None


def test_tool_calls_become_function_call_items():
    chat = chat_completion(
        None,
        tool_calls=[("call_1", "weather", '{"city": "Paris"}'), ("call_2", "add", '{"a":1,"b":2}')],
        finish_reason="tool_calls",
    )
    resp = chat_response_to_responses(chat, request={"input": "q", "tools": [ADD_TOOL]})
    assert resp["status"] == "completed"
    assert resp["output"] == [
        {
            "type": "function_call",
            "id": "fc_abc123_0",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_abc123_1",
            "call_id": "call_2",
            "name": "add",
            "arguments": '{"a":1,"b":2}',
            "status": "completed",
        },
    ]
    assert resp["tools"] == [ADD_TOOL]
    assert output_text(resp) == ""


def test_text_with_tool_calls_gives_message_then_calls():
    chat = chat_completion(
        "Checking.", tool_calls=[("c9", "add", "{}")], finish_reason="tool_calls"
    )
    output = chat_response_to_responses(chat)["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[0]["content"][0]["text"] == "Checking."


def test_ids_are_deterministic_with_or_without_a_chat_id():
    a = chat_response_to_responses(chat_completion("x"))
    assert a == chat_response_to_responses(chat_completion("x"))
    no_id_1 = chat_response_to_responses(chat_completion("x", chat_id=None))
    no_id_2 = chat_response_to_responses(chat_completion("x", chat_id=None))
    other = chat_response_to_responses(chat_completion("y", chat_id=None))
    assert no_id_1["id"] == no_id_2["id"]
    assert no_id_1["id"].startswith("resp_")
    assert no_id_1["id"] != other["id"]
    chosen = chat_response_to_responses(chat_completion("x"), response_id="resp_fixed")
    assert chosen["id"] == "resp_fixed"
    assert chosen["output"][0]["id"] == "msg_fixed"


def test_empty_or_missing_content_still_gives_a_message():
    for content in (None, ""):
        resp = chat_response_to_responses(chat_completion(content))
        assert resp["output"][0]["type"] == "message"
        assert output_text(resp) == ""


def test_no_choices_is_a_failed_response_not_a_crash():
    chat = chat_completion("x")
    chat["choices"] = []
    resp = chat_response_to_responses(chat)
    assert resp["status"] == "failed"
    assert resp["output"] == []
    assert resp["error"]["code"] == "server_error"


def test_reasoning_content_becomes_a_reasoning_item():
    chat = chat_completion("4")
    chat["choices"][0]["message"]["reasoning_content"] = "2+2 is 4"
    resp = chat_response_to_responses(chat)
    assert [item["type"] for item in resp["output"]] == ["reasoning", "message"]
    assert output_text(resp) == "4"


def test_text_tool_calls_option_only_for_declared_tools():
    text = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
    request = {"input": "q", "tools": [ADD_TOOL]}
    resp = chat_response_to_responses(chat_completion(text), request=request, text_tool_calls=True)
    assert [item["type"] for item in resp["output"]] == ["function_call"]
    assert json.loads(resp["output"][0]["arguments"]) == {"a": 2, "b": 3}
    assert resp["output"][0]["call_id"] == "call_abc123_0"
    # off by default, and an undeclared tool name stays text
    assert chat_response_to_responses(chat_completion(text), request=request)["output"][0][
        "type"
    ] == ("message")
    undeclared = {"input": "q", "tools": [WEATHER_TOOL]}
    resp = chat_response_to_responses(
        chat_completion(text), request=undeclared, text_tool_calls=True
    )
    assert output_text(resp) == text


def test_response_validates_against_the_openai_sdk_types():
    types = pytest.importorskip("openai.types.responses")
    request = {"input": "q", "tools": [ADD_TOOL], "temperature": 0.5}
    for chat in (
        chat_completion("hello"),
        chat_completion(None, tool_calls=[("c1", "add", "{}")], finish_reason="tool_calls"),
        chat_completion("cut", finish_reason="length"),
    ):
        parsed = types.Response.model_validate(chat_response_to_responses(chat, request=request))
        assert parsed.output_text == output_text(chat_response_to_responses(chat))


# ------------------------------------------------------------------ round trips


CHAT_REQUEST = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are a calculator."},
        {"role": "user", "content": "2+3 and 4+5?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{}"}},
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 4, "b": 5}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
        {"role": "tool", "tool_call_id": "c2", "content": "9"},
        {"role": "assistant", "content": "5 and 9."},
        {"role": "user", "content": "And 1+1?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two integers.",
                "parameters": ADD_TOOL["parameters"],
                "strict": False,
            },
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.2,
    "top_p": 0.95,
    "seed": 3,
    "max_tokens": 128,
    "response_format": {"type": "json_object"},
}


def test_chat_request_round_trip_through_responses():
    resp_body = chat_request_to_responses(CHAT_REQUEST)
    assert resp_body["max_output_tokens"] == 128
    assert resp_body["tools"] == [ADD_TOOL]
    assert resp_body["text"] == {"format": {"type": "json_object"}}
    assert [item.get("type", "message") for item in resp_body["input"]] == [
        "message",
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
        "message",
    ]
    assert responses_request_to_chat(resp_body) == CHAT_REQUEST


def test_responses_request_round_trip_through_chat():
    body = {
        "model": "m",
        "instructions": "Use tools.",
        "input": [
            {"role": "user", "content": "2+3?"},
            {"type": "function_call", "call_id": "c1", "name": "add", "arguments": '{"a":2}'},
            {"type": "function_call_output", "call_id": "c1", "output": "5"},
        ],
        "tools": [ADD_TOOL],
        "tool_choice": {"type": "function", "name": "add"},
        "max_output_tokens": 10,
        "temperature": 0.0,
    }
    back = chat_request_to_responses(responses_request_to_chat(body))
    # instructions come back as a leading system message, which means the same thing
    assert back["input"][0] == {"role": "system", "content": "Use tools."}
    assert back["input"][1:] == body["input"]
    for key in ("model", "tools", "tool_choice", "max_output_tokens", "temperature"):
        assert back[key] == body[key], key


def test_chat_response_round_trip_through_responses():
    for chat in (
        chat_completion("plain answer"),
        chat_completion("cut", finish_reason="length"),
        chat_completion(
            "Calling.",
            tool_calls=[("c1", "add", '{"a":1}'), ("c2", "weather", "{}")],
            finish_reason="tool_calls",
        ),
        chat_completion(None, tool_calls=[("c1", "add", "{}")], finish_reason="tool_calls"),
    ):
        back = responses_response_to_chat(chat_response_to_responses(chat))
        assert back["id"] == chat["id"]
        assert back["created"] == chat["created"]
        assert back["model"] == chat["model"]
        assert back["choices"][0]["message"] == chat["choices"][0]["message"]
        assert back["choices"][0]["finish_reason"] == chat["choices"][0]["finish_reason"]
        for key, value in chat["usage"].items():
            assert back["usage"][key] == value


def test_convert_chat_request_reports_dropped_keys():
    converted = convert_chat_request(
        {
            "messages": [{"role": "function", "name": "f", "content": "x"}],
            "n": 2,
            "stream_options": {"include_usage": True},
        }
    )
    assert converted.body["input"] == []
    assert "n" in converted.dropped
    assert "stream_options" in converted.dropped
    assert any("function" in entry for entry in converted.dropped)


def test_multi_turn_tool_loop_keeps_call_ids_consistent():
    """call → output → final answer, as the agent server runs it."""
    request = {"input": [{"role": "user", "content": "What is 2+3?"}], "tools": [ADD_TOOL]}
    chat1 = responses_request_to_chat(request)
    assert chat1["messages"] == [{"role": "user", "content": "What is 2+3?"}]
    reply1 = chat_completion(
        None,
        tool_calls=[("call_x", "add", '{"a": 2, "b": 3}')],
        finish_reason="tool_calls",
        chat_id="chatcmpl-t1",
    )
    resp1 = chat_response_to_responses(reply1, request=request)
    call = resp1["output"][0]
    request2 = {
        **request,
        "input": [
            *request["input"],
            *resp1["output"],
            {"type": "function_call_output", "call_id": call["call_id"], "output": "5"},
        ],
    }
    chat2 = responses_request_to_chat(request2)
    assert chat2["messages"][1]["tool_calls"][0]["id"] == "call_x"
    assert chat2["messages"][2] == {"role": "tool", "tool_call_id": "call_x", "content": "5"}
    resp2 = chat_response_to_responses(
        chat_completion("2+3 = 5", chat_id="chatcmpl-t2"), request=request2
    )
    request3 = {**request2, "input": [*request2["input"], *resp2["output"]]}
    messages = responses_request_to_chat(request3)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[-1] == {"role": "assistant", "content": "2+3 = 5"}
    assert output_text(resp2) == "2+3 = 5"


# ------------------------------------------------------------------ text tool calls


def test_single_tagged_tool_call():
    text = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
    rest, calls = parse_text_tool_calls(text)
    assert rest == ""
    assert len(calls) == 1
    assert calls[0]["name"] == "add"
    assert isinstance(calls[0]["arguments"], str)
    assert json.loads(calls[0]["arguments"]) == {"a": 2, "b": 3}


def test_several_tagged_calls_with_surrounding_text():
    text = (
        "I will call two tools.\n"
        '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>\n'
        "Done."
    )
    rest, calls = parse_text_tool_calls(text)
    assert rest == "I will call two tools.\nDone."
    assert [c["name"] for c in calls] == ["weather", "add"]
    assert json.loads(calls[1]["arguments"]) == {"a": 1}


def test_json_list_inside_one_tag_and_unclosed_tag():
    rest, calls = parse_text_tool_calls(
        '<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}]'
        "</tool_call>"
    )
    assert rest == ""
    assert [c["name"] for c in calls] == ["a", "b"]
    rest, calls = parse_text_tool_calls('Ok <tool_call>{"name": "a", "arguments": {"q": "z"}}')
    assert (rest, [c["name"] for c in calls]) == ("Ok", ["a"])


def test_tolerated_variants():
    # single quotes (a Python literal), "parameters", a {"function": {...}} wrapper, a fence
    _, calls = parse_text_tool_calls(
        "<tool_call>{'name': 'add', 'arguments': {'a': 1}}</tool_call>"
    )
    assert json.loads(calls[0]["arguments"]) == {"a": 1}
    _, calls = parse_text_tool_calls(
        '<tool_call>{"name": "add", "parameters": {"a": 1}}</tool_call>'
    )
    assert json.loads(calls[0]["arguments"]) == {"a": 1}
    _, calls = parse_text_tool_calls(
        '<tool_call>{"type": "function", "function": {"name": "f", "arguments": {}}}</tool_call>'
    )
    assert calls == [{"name": "f", "arguments": "{}"}]
    _, calls = parse_text_tool_calls('<tool_call>{"name": "noargs"}</tool_call>')
    assert calls == [{"name": "noargs", "arguments": "{}"}]
    rest, calls = parse_text_tool_calls('```json\n{"name": "f", "arguments": {"k": 2}}\n```')
    assert rest == ""
    assert calls == [{"name": "f", "arguments": '{"k": 2}'}]


def test_bare_json_object_or_list_as_whole_message():
    rest, calls = parse_text_tool_calls('  {"name": "add", "arguments": {"a": 1, "b": 2}}\n')
    assert rest == ""
    assert calls[0]["name"] == "add"
    rest, calls = parse_text_tool_calls(
        '[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]'
    )
    assert [c["name"] for c in calls] == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The answer is 4.",
        "<tool_call>{not json at all</tool_call>",
        "<tool_call></tool_call>",
        "<tool_call>",
        "</tool_call>",
        '<tool_call>{"arguments": {"a": 1}}</tool_call>',  # no name
        '<tool_call>{"name": "", "arguments": {}}</tool_call>',
        '<tool_call>{"name": 5, "arguments": {}}</tool_call>',
        '<tool_call>{"name": "f", "arguments": "not json"}</tool_call>',
        '<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>',
        "<tool_call>[]</tool_call>",
        '<tool_call>[{"name": "f", "arguments": {}}, 3]</tool_call>',
        '{"name": "Bob"}',  # bare JSON without arguments is an answer, not a call
        '{"name": "f", "arguments": {}} and then some prose',
        '{"answer": 4}',
        "[1, 2, 3]",
        "{" * 5000,
        "[" * 5000 + "]" * 5000,
        "<tool_call>" + "{" * 5000 + "</tool_call>",
        "<tool_call>'\\d'</tool_call>",
        "```json\n{broken\n```",
        "\x00\x01<tool_call>\udcff</tool_call>",
        "<tool_call>{'name': 'f', 'arguments': {'blob': b'bytes'}}</tool_call>",
        "<tool_call>{'name': 'f', 'arguments': {(1, 2): 'tuple key'}}</tool_call>",
    ],
    ids=lambda text: repr(text[:40]),
)
def test_malformed_text_is_plain_text(text):
    rest, calls = parse_text_tool_calls(text)
    assert calls == []
    assert rest == text


def test_bad_block_stays_while_good_block_is_taken():
    text = '<tool_call>{oops</tool_call> <tool_call>{"name": "f", "arguments": {}}</tool_call>'
    rest, calls = parse_text_tool_calls(text)
    assert calls == [{"name": "f", "arguments": "{}"}]
    assert rest == "<tool_call>{oops</tool_call>"


def test_non_string_input_does_not_raise():
    assert parse_text_tool_calls(None) == ("", [])  # type: ignore[arg-type]


# ------------------------------------------------------------------ output_text


def test_output_text_takes_the_last_assistant_message_parts():
    response = {
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "first"}],
            },
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hello, "},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "world"},
                ],
            },
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}]},
        ]
    }
    assert output_text(response) == "Hello, world"


@pytest.mark.parametrize(
    "response",
    [None, {}, {"output": None}, {"output": []}, {"output": [{"type": "function_call"}]}, "x"],
)
def test_output_text_without_a_message_is_empty(response):
    assert output_text(response) == ""
