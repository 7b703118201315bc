"""SmolLM2-135M-Instruct (or any GGUF) run in-process by llama-cpp-python."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rollsweep.config import EmbeddedSettings
from rollsweep.errors import UsageError
from rollsweep.paths import default_model_path
from rollsweep.servers.backends.base import PromptTooLong, UpstreamError
from rollsweep.servers.conversion.requests import responses_request_to_chat
from rollsweep.servers.conversion.responses import chat_response_to_responses

#: The instruction that teaches a small model our text tool-call syntax (its chat template has
#: no tool support of its own).
TOOL_PROMPT = (
    "You can call these tools:\n{tools}\n"
    "To call a tool, answer with exactly one line: "
    '<tool_call>{{"name": "TOOL_NAME", "arguments": {{...}}}}</tool_call>\n'
    "After a tool result arrives, answer the user in plain text."
)


def usable_cpus() -> int:
    """The CPUs this process may use: its CPU affinity (what SLURM's CPU binding or taskset
    leave it), at most OMP_NUM_THREADS when that is set, as Snakemake sets it to a job's
    ``threads`` for every shell command: so the pool of a collection job's own model honours
    the threads its rule declares."""
    cpus = len(os.sched_getaffinity(0))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(cpus, int(limit)) if limit.isdigit() and int(limit) > 0 else cpus


def _tools_as_text(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict]:
    """Describe tools in a system message and turn tool traffic into plain chat turns."""
    specs = "\n".join(json.dumps(tool.get("function", tool)) for tool in tools)
    system = TOOL_PROMPT.format(tools=specs)
    rewritten: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            rewritten.append(
                {
                    "role": "user",
                    "content": f"<tool_response>{message.get('content')}</tool_response>",
                }
            )
        elif role == "assistant" and message.get("tool_calls"):
            calls = "".join(
                "<tool_call>"
                + json.dumps(
                    {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
                )
                + "</tool_call>"
                for call in message["tool_calls"]
            )
            rewritten.append(
                {"role": "assistant", "content": (message.get("content") or "") + calls}
            )
        else:
            rewritten.append(message)
    if rewritten and rewritten[0].get("role") == "system":
        rewritten[0] = {**rewritten[0], "content": f"{rewritten[0]['content']}\n\n{system}"}
    else:
        rewritten.insert(0, {"role": "system", "content": system})
    return rewritten


def _or(value: Any, default: float) -> float:
    return default if value is None else value


class EmbeddedBackend:
    """Batched llama.cpp contexts over one GGUF file (see :mod:`.batched`).

    Every request gets a fresh KV cache stream of its own and its own seeded sampler, and the
    schedule gives its rows the same shapes whatever else is in the batch, so the text depends
    only on the request and its seed (and matches the one-request-per-context backend).
    """

    def __init__(self, settings: EmbeddedSettings) -> None:
        # llama_cpp is heavy: loaded only by a model server that runs the embedded backend
        from rollsweep.servers.backends.batched import BatchedRuntime

        path = Path(settings.model_path) if settings.model_path else default_model_path()
        if not path.exists():
            raise UsageError("model file not found", path=str(path))
        self.model_path = path
        self.model_id = path.stem
        self._runtime = BatchedRuntime(path, settings, n_contexts=settings.contexts(usable_cpus()))

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens the prompt cache spared computing so far."""
        return self._runtime.reused_prompt_tokens

    async def _run(self, chat: dict[str, Any]) -> dict[str, Any]:
        tools = chat.pop("tools", None)
        chat.pop("tool_choice", None)
        messages = chat.pop("messages")
        if tools:
            messages = _tools_as_text(messages, tools)
        try:
            future = self._runtime.submit(
                messages,
                max_tokens=chat.get("max_tokens") or 256,
                temperature=_or(chat.get("temperature"), 1.0),
                top_p=_or(chat.get("top_p"), 1.0),
                seed=chat.get("seed"),
                stop=chat.get("stop"),
            )
        except PromptTooLong as error:
            raise UpstreamError(400, str(error)) from None
        return await asyncio.wrap_future(future)

    async def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        chat = responses_request_to_chat(body, model=self.model_id)
        tools = bool(chat.get("tools"))
        # llama.cpp names each completion at random; derive the id from what determines the
        # text instead, so that seeded reruns give identical rows.
        identity = hashlib.blake2b(
            json.dumps(chat, sort_keys=True, default=str).encode(), digest_size=10
        ).hexdigest()
        result = await self._run(chat)
        result["model"] = self.model_id
        return chat_response_to_responses(
            result, request=body, response_id=f"resp_{identity}", text_tool_calls=tools
        )

    async def aclose(self) -> None:
        await asyncio.to_thread(self._runtime.close)
