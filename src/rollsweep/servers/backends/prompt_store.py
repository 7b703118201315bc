"""Computed prompt prefixes kept as llama.cpp sequence states, shared by the batched contexts.

A sweep sends each prompt many times (repeats, temperatures) and every prompt starts with the
same chat-template header, so most of a prompt was usually computed before, often in another
context. A context saves the KV state of a prompt's computed part here
(``llama_state_seq_get_data``) and any context restores it into one of its sequences
(``llama_state_seq_set_data``), then drops the positions past the prefix it shares.

The store is bounded in bytes and forgets the least recently used prompt first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of two token lists (of one type: a list's
    slice never equals a tuple's).

    Bisects on slice equality: each comparison runs in C, so a long shared prefix costs a few
    slice compares rather than one Python step per token.
    """
    low, high = 0, min(len(a), len(b))
    if a[:high] == b[:high]:
        return high
    while low < high:  # invariant: a[:low] == b[:low], a[:high + 1] != b[:high + 1]
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class StoredPrompt:
    """One saved sequence state: the KV of ``tokens`` at positions 0 … len(tokens) - 1."""

    tokens: tuple[int, ...]
    state: bytes


class PromptStore:
    """Saved prompt states, at most ``max_bytes`` of them, least recently used out first.

    Thread-safe: each batched context runs on its own thread and saves and looks up here.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], StoredPrompt] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def has(self, tokens: Sequence[int]) -> bool:
        return tuple(tokens) in self._entries

    def put(self, tokens: Sequence[int], state: bytes) -> None:
        """Keep ``state`` for ``tokens``; a state larger than the whole store is not kept."""
        if len(state) > self.max_bytes:
            return
        key = tuple(tokens)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.state)
            self._entries[key] = StoredPrompt(key, state)
            self._bytes += len(state)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.state)

    def best(self, tokens: Sequence[int]) -> tuple[int, StoredPrompt | None]:
        """The saved prompt sharing the longest prefix with ``tokens``, and that length.

        A scan: a run holds a few hundred distinct prompts, and ``common_prefix`` is cheap.
        """
        tokens = tuple(tokens)  # slices of a tuple compare equal only to tuples
        with self._lock:
            entries = list(self._entries.values())
        best_length, best_entry = 0, None
        for entry in entries:
            length = common_prefix(entry.tokens, tokens)
            if length > best_length:
                best_length, best_entry = length, entry
        if best_entry is not None:
            with self._lock:
                if best_entry.tokens in self._entries:
                    self._entries.move_to_end(best_entry.tokens)
        return best_length, best_entry
