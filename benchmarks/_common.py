"""Shared by the benchmark scripts: where figures are recorded and what machine made them."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the figures, the date and the machine; print it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    payload.update(figures)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"recorded {path}")
    return path


def answer_response(response_id: str, model: str, text: str, **extra: Any) -> dict[str, Any]:
    """The Responses object a stand-in agent returns: one assistant message with ``text``."""
    return {
        "id": response_id,
        "object": "response",
        "model": model,
        "status": "completed",
        **extra,
        "output": [
            {
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {"input_tokens": 41, "output_tokens": 12, "total_tokens": 53},
    }


def json_reply(payload: bytes) -> bytes:
    """An HTTP/1.1 200 answer carrying ``payload`` as JSON (the stand-in servers' answers)."""
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(payload) + payload


def take_requests(buffer: bytearray) -> Iterator[tuple[bytes, bytes]]:
    """The whole HTTP/1.1 requests at the front of ``buffer``, as (lower-cased head, body),
    each removed from the buffer as it is taken; a partial request stays for the next read.

    The stand-in servers of the collector benchmarks parse requests this way (raw asyncio, no
    framework), so that their own cost stays far below the collector's."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else None])
        total = end + 4 + length
        if len(buffer) < total:
            return
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        yield head, body


class RequestProtocol(asyncio.Protocol):
    """A connection to a stand-in server: each whole request goes to ``handle(head, body)``
    (head lower-cased, as ``take_requests`` gives it); answers go to ``self.transport``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for head, body in take_requests(self.buffer):
            self.handle(head, body)

    def handle(self, head: bytes, body: bytes) -> None:
        raise NotImplementedError
