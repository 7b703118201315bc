"""Conversions between the OpenAI Responses API and Chat Completions (pure functions, no I/O).

Used by the ``openai`` model backend when the upstream speaks only Chat Completions (vLLM,
llama.cpp server) and by the ``embedded`` backend (llama-cpp-python's
``create_chat_completion`` takes and returns Chat Completions shapes).

Four directions, in two modules:

* ``requests.responses_request_to_chat`` — a Responses request body → a Chat Completions request.
* ``responses.chat_response_to_responses`` — a Chat Completions response → a Responses object
  (and ``responses.complete_response`` fills the fields the OpenAI schema requires).
* ``requests.chat_request_to_responses`` — a Chat Completions request → a Responses request.
* ``responses.responses_response_to_chat`` — a Responses object → a Chat Completions response.

``tools`` converts tool definitions, tool choices and tool calls, and recovers tool calls that
small models write as text (``tools.parse_text_tool_calls``); ``common`` holds what all share.

What one side cannot express is dropped, never crashed on: reasoning items, hosted tools
(web search, file search …), ``previous_response_id``, ``store`` and the like. The request
converters log what they drop at DEBUG level; ``convert_responses_request`` and
``convert_chat_request`` return the same conversion together with the list of dropped
things (``"previous_response_id"``, ``"input[3]: reasoning item"``, …) for callers that want to
warn or refuse. Only a body that is not an object, or an ``input``/``messages`` of the wrong
type, raises ``ConversionError`` (a ``ValueError``).

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

The text of messages and responses (``content_text``, ``output_text``) belongs to
:mod:`rollsweep.rollouts.text`.
"""

from __future__ import annotations
