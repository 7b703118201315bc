"""The `openai` backend over real HTTP: Chat Completions and Responses upstreams, tool calls."""

from __future__ import annotations

import json
import os

import httpx
from conftest import ThreadedServer, free_port
from fastapi import FastAPI

from rollsweep.config import StackConfig
from rollsweep.servers.stack import Stack


def weather_task() -> dict:
    return {
        "task_id": "w1",
        "responses_create_params": {
            "input": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "description": "Get the current weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ],
        },
        "verifier": "tool_use",
        "expected_city": "Paris",
    }


def scripted_chat_upstream(seen: list[dict]) -> FastAPI:
    """A Chat Completions server that calls get_weather first, then answers with its result."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        seen.append(body)
        tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
        if not tool_messages:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            result = json.loads(tool_messages[-1]["content"])
            message = {"role": "assistant", "content": f"Paris: {json.dumps(result)}"}
            finish = "stop"
        return {
            "id": f"chatcmpl-{len(seen)}",
            "object": "chat.completion",
            "created": 1,
            "model": "scripted",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    return app


def stack_for(base_url: str, api: str, **extra: str) -> StackConfig:
    return StackConfig.model_validate(
        {
            "head_server": {"port": free_port()},
            "model_servers": {
                "remote": {
                    "backend": "openai",
                    "openai": {"base_url": base_url, "model": "scripted", "api": api, **extra},
                }
            },
            "resources_servers": {"bundled": {"verifier": "auto"}},
            "agents": {"my_agent": {"model_server": "remote", "resources_server": "bundled"}},
        }
    )


def test_chat_upstream_with_tool_calls_round_trip():
    seen: list[dict] = []
    with (
        ThreadedServer(scripted_chat_upstream(seen)) as upstream,
        Stack(stack_for(f"{upstream.url}/v1", "chat")) as stack,
    ):
        url = stack.agent_urls()["my_agent"]
        row = httpx.post(f"{url}/run", json=weather_task(), timeout=30).json()
    # The upstream saw Chat Completions requests: tools converted, then the tool result.
    assert seen[0]["model"] == "scripted"
    assert seen[0]["tools"][0]["function"]["name"] == "get_weather"
    second = seen[1]["messages"]
    assert second[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second[2]["role"] == "tool" and second[2]["tool_call_id"] == "call_1"
    # The rollout holds Responses items: call, its output, the final message.
    kinds = [item["type"] for item in row["response"]["output"]]
    assert kinds == ["function_call", "function_call_output", "message"]
    assert row["metrics"]["tool_calls"] == 1 and row["metrics"]["turns"] == 2
    assert row["output"].startswith("Paris:")
    assert row["reward"] == 1.0, row["verification"]


def test_responses_upstream_is_passed_through_and_key_comes_from_env(monkeypatch):
    """api=responses against our own model server (simulated), with a key from the env."""
    upstream_config = StackConfig.model_validate(
        {
            "model_servers": {"sim": {"backend": "simulated"}},
            "resources_servers": {"bundled": {"verifier": "auto"}},
            "agents": {},
        }
    )
    monkeypatch.setenv("ROLLSWEEP_TEST_KEY", "sk-test-secret")
    with Stack(upstream_config) as upstream:
        model_url = upstream.urls()["model"]["sim"]
        config = stack_for(f"{model_url}/v1", "responses", api_key_env="ROLLSWEEP_TEST_KEY")
        with Stack(config) as stack:
            url = stack.agent_urls()["my_agent"]
            task = {
                "responses_create_params": {"input": "What is 2 + 2?", "seed": 3},
                "expected_answer": "4",
                "verifier": "math",
            }
            row = httpx.post(f"{url}/run", json=task, timeout=30).json()
            stats = httpx.get(f"{model_url}/stats").json()
    assert row["response"]["model"] == "simulated"
    assert row["output"] == "I am not sure."
    assert stats["requests"] == 1
    assert "sk-test-secret" not in json.dumps(row)
    assert os.environ["ROLLSWEEP_TEST_KEY"] == "sk-test-secret"


def test_model_server_speaks_chat_completions_too():
    config = StackConfig.model_validate(
        {"model_servers": {"sim": {"backend": "simulated"}}, "resources_servers": {}, "agents": {}}
    )
    with Stack(config) as stack:
        url = stack.urls()["model"]["sim"]
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "hi"}], "seed": 1},
        )
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "I am not sure."
