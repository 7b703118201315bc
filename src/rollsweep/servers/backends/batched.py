"""Continuous batching over llama.cpp contexts, as llama.cpp's own server does it.

Several requests share one context: each has its own sequence (a KV cache stream of its own)
and its own seeded sampler chain, and every step decodes one token for each running request in
a single ``llama_decode``. A worker thread owns each context; callers wait on futures, and a
dispatcher spreads the requests evenly over the contexts.

Why a request's text depends only on the request and its seed: llama.cpp's CPU kernels compute
a token's rows the same way whatever else is in its batch, with two exceptions. A batch that
mixes a run of one sequence's tokens with other sequences' tokens is split into ubatches of
equally many tokens per sequence, which changes the run's numbers. And attention over a lone
query token of a sequence goes through ggml's dot products, over two or more through tinyBLAS
(llamafile's sgemm), which may add in another order (they agree bit for bit on the AVX2 CPU
of ``benchmarks/embedded_numerics.py``; the schedule does not rely on it). So:

- a prompt's last token and every sampled token go one per sequence into the decode step;
- the rest of the prompt (its "chunked part", ``prompt[:-1]``) goes in runs of two or more
  tokens of its sequence alone, at most ``n_batch`` a run. Where the runs start does not change
  the numbers, so a request may take any prefix of its chunked part that its sequence still
  holds or that the :class:`PromptStore` saved, from any context, and compute only the rest —
  never as a run of one token (it then recomputes one token of the prefix with it);
- earlier releases cut the chunked part into ``n_batch`` chunks from its start, which leaves a
  lone last token when its length is one more than a multiple of ``n_batch``: that token stays a
  run of its own, and is shared only with the very same chunked part, so texts match theirs;
- a stream holds one sequence, and is emptied, cut from its end or restored from position 0,
  so its cells stay in position order: attention adds over cells in cell order.
"""

from __future__ import annotations

import ctypes
import itertools
import random
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as lc
from llama_cpp import _internals as internals
from llama_cpp._logger import set_verbose
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from rollsweep.config import EmbeddedSettings
from rollsweep.servers.backends.base import PromptTooLong
from rollsweep.servers.backends.prompt_store import PromptStore, StoredPrompt, common_prefix

#: llama-cpp-python's chat completion defaults, kept so the text matches what its
#: ``create_chat_completion`` sampled before (temperature and top_p come from the request).
TOP_K = 40
MIN_P = 0.05
TYPICAL_P = 1.0
#: the seed llama-cpp-python derives when a request names none (a fixed value, so an unseeded
#: request is still a pure function of its body)
UNSEEDED = random.Random(lc.LLAMA_DEFAULT_SEED).randint(0, 2**32)
#: the smallest ``n_batch`` used: runs are cut so that none has one token, which needs room for
#: a run one shorter than ``n_batch`` that still has two
MIN_BATCH = 4


def shareable(chunked: int, n_batch: int) -> int:
    """How much of a chunked part of ``chunked`` tokens is computed in runs of two or more:
    all of it, but a last token that the schedule of earlier releases left alone."""
    return chunked - 1 if chunked % n_batch == 1 else chunked


def runs(start: int, end: int, n_batch: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into runs of at most ``n_batch`` tokens, none of one token
    (``end - start`` must not be 1): ``n_batch`` each from ``start``, the one before a one-token
    rest giving it a token."""
    bounds = [*range(start, end, n_batch), end]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds[-2] -= 1
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class _Job:
    prompt: list[int]
    max_tokens: int
    stop: list[bytes]
    temperature: float
    top_p: float
    seed: int
    future: Future = field(default_factory=Future)


@dataclass
class _Slot:
    seq: int
    job: _Job | None = None
    sampler: Any = None
    runs: list[tuple[int, int]] = field(default_factory=list)  # prompt runs still to compute
    pos: int = 0
    last: int | None = None  # sampled token not yet decoded
    prompt_done: bool = False  # the prompt's last token has been decoded
    out: list[int] = field(default_factory=list)
    batch_index: int = -1  # where this slot's logits are in the current batch
    #: the shareable part of a chunked prompt whose KV this sequence holds at positions
    #: 0 … len - 1, kept after the request ends so that the next one may take a prefix of it
    held: list[int] = field(default_factory=list)
    #: the whole chunked part, lone last token included, once this sequence holds it
    held_whole: list[int] | None = None

    def reusable(self, chunked: list[int], share: int) -> int:
        """How many leading tokens of ``chunked`` this sequence's KV holds as it would compute
        them (before cutting the rest into runs)."""
        if self.held_whole is not None and self.held_whole == chunked:
            return len(chunked)
        return common_prefix(self.held, chunked[:share])


def _sampler(temperature: float, top_p: float, seed: int) -> Any:
    """The chain llama-cpp-python builds for a chat completion, with its own seeded dist."""
    sampler = internals.LlamaSampler()
    if temperature <= 0.0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(TOP_K)
    sampler.add_typical(TYPICAL_P, 1)
    sampler.add_top_p(top_p, 1)
    sampler.add_min_p(MIN_P, 1)
    sampler.add_temp(temperature)
    sampler.add_dist(seed)
    return sampler


class _Dispatcher:
    """The requests waiting for a sequence, handed to the contexts so that each runs as many
    as the others (a context decodes its requests on one core; two requests on one context
    and none on another would leave a core idle)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: deque[_Job] = deque()
        self.engines: list[BatchedEngine] = []
        self.closing = False

    def put(self, job: _Job) -> None:
        with self.cond:
            self.pending.append(job)
            self.cond.notify_all()

    def take(self, engine: BatchedEngine, *, block: bool) -> _Job | None:
        """The next request for ``engine`` (which has a free sequence), or None: when closing,
        when nothing waits, or when another context with a free sequence runs fewer
        requests (it takes this one at its next step)."""
        with self.cond:
            while not self.closing:
                fewest = min(e.load for e in self.engines if e.load < len(e.slots))
                if self.pending and engine.load <= fewest:
                    engine.load += 1
                    return self.pending.popleft()
                if not block:
                    return None
                self.cond.wait()
            return None

    def done(self, engine: BatchedEngine) -> None:
        with self.cond:
            engine.load -= 1
            self.cond.notify_all()

    def close(self) -> list[_Job]:
        """Stop handing out requests; the ones still waiting are returned to be failed."""
        with self.cond:
            self.closing = True
            left, self.pending = list(self.pending), deque()
            self.cond.notify_all()
        return left


class BatchedEngine:
    """One llama.cpp context decoding up to ``n_parallel`` requests together."""

    def __init__(
        self,
        model: internals.LlamaModel,
        dispatcher: _Dispatcher,
        store: PromptStore,
        settings: EmbeddedSettings,
    ) -> None:
        self.model = model
        self.n_batch = max(settings.n_batch, settings.n_parallel, MIN_BATCH)
        self.prompt_cache = settings.prompt_cache
        self.store = store
        self.reused_tokens = 0  # prompt tokens taken from the cache, for benchmarks
        self.restored_tokens = 0  # of those, tokens restored from the prompt store
        self.load = 0  # requests running or admitted (the dispatcher's count)
        params = lc.llama_context_default_params()
        params.n_ctx = settings.n_ctx * settings.n_parallel
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = settings.n_parallel
        params.n_threads = settings.n_threads
        params.n_threads_batch = settings.n_threads
        # one KV stream per sequence: a request's attention never spans another's cells
        params.kv_unified = False
        params.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if settings.flash_attn
            else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.ctx = internals.LlamaContext(model=model, params=params, verbose=False)
        self.memory = lc.llama_get_memory(self.ctx.ctx)
        self.batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [_Slot(seq=i) for i in range(settings.n_parallel)]
        self.dispatcher = dispatcher
        self.thread = threading.Thread(target=self._loop, name="llama-batched", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        """Free the context (after the dispatcher has told the thread to stop)."""
        self.thread.join()
        lc.llama_batch_free(self.batch)
        self.ctx.close()

    # -- the worker thread -------------------------------------------------------------------

    def _save(self, slot: _Slot) -> None:
        """Put the sequence's KV into the prompt store (it holds exactly ``slot.held``)."""
        if not self.store.enabled or len(slot.held) < 2 or self.store.has(slot.held):
            return
        size = lc.llama_state_seq_get_size(self.ctx.ctx, slot.seq)
        buffer = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self.ctx.ctx, buffer, size, slot.seq)
        self.store.put(slot.held, bytes(buffer)[:written])

    def _restore(self, slot: _Slot, entry: StoredPrompt) -> None:
        state = entry.state
        pointer = ctypes.cast(ctypes.c_char_p(state), ctypes.POINTER(ctypes.c_uint8))
        if lc.llama_state_seq_set_data(self.ctx.ctx, pointer, len(state), slot.seq) == 0:
            raise RuntimeError("llama_state_seq_set_data failed")

    def _admit(self, job: _Job) -> None:
        """Put ``job`` on the free sequence that holds most of its prompt, and start it from
        the longest computed prefix: that sequence's own, or one from the prompt store."""
        chunked = job.prompt[:-1]
        share = shareable(len(chunked), self.n_batch)
        free = [slot for slot in self.slots if slot.job is None]
        slot, reuse = free[0], 0
        entry: StoredPrompt | None = None
        if self.prompt_cache:
            for candidate in free:
                length = candidate.reusable(chunked, share)
                if length > reuse:
                    slot, reuse = candidate, length
            if self.store.enabled and reuse < share:
                length, found = self.store.best(chunked[:share])
                if length > reuse:
                    reuse, entry = length, found
        if reuse < len(chunked) and share - reuse == 1:
            reuse -= 1  # one token left would be a run of its own: compute it again
        if entry is not None:
            slot.held, slot.held_whole = [], None  # the restore replaces what it held
            self._restore(slot, entry)
            self.restored_tokens += reuse
        lc.llama_memory_seq_rm(self.memory, slot.seq, reuse if reuse else -1, -1)
        if reuse < len(chunked):
            slot.held, slot.held_whole = chunked[:reuse], None
        slot.runs = runs(reuse, share, self.n_batch) if reuse < share else []
        if share < len(chunked) and reuse < len(chunked):
            slot.runs.append((share, len(chunked)))  # the lone last token of earlier releases
        slot.job, slot.pos, slot.last, slot.out, slot.prompt_done = job, reuse, None, [], False
        slot.sampler = _sampler(job.temperature, job.top_p, job.seed)
        self.reused_tokens += reuse
        if reuse == share and not slot.runs:  # the sequence holds exactly the shareable part
            self._save(slot)

    def _finish(self, slot: _Slot, result: dict[str, Any] | Exception) -> None:
        job = slot.job
        assert job is not None
        slot.job, slot.sampler, slot.runs = None, None, []
        self.dispatcher.done(self)
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    def _loop(self) -> None:
        while not self.dispatcher.closing:
            # take work only for free sequences; block when idle
            while any(slot.job is None for slot in self.slots):
                idle = all(slot.job is None for slot in self.slots)
                job = self.dispatcher.take(self, block=idle)
                if job is None:
                    break
                try:
                    self._admit(job)
                except Exception as error:  # a failed restore fails its request only
                    self.dispatcher.done(self)
                    job.future.set_exception(error)
            try:
                self._step()
            except Exception as error:  # a failed decode fails the requests in it, not the server
                self._fail_all(error)
        self._fail_all(RuntimeError("the model server is closing"))

    def _fail_all(self, error: Exception) -> None:
        for slot in self.slots:
            if slot.job is not None:
                self._finish(slot, error)
            slot.held, slot.held_whole = [], None  # what a failed decode left is unknown

    def _step(self) -> None:
        batch, n = self.batch, 0

        def add(slot: _Slot, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = slot.pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq
            batch.logits[n] = logits
            if logits:
                slot.batch_index = n
            slot.pos += 1
            n += 1

        # A prompt run goes alone in its decode call, and a decode step carries one token per
        # running request and nothing else: with several sequences llama.cpp splits a batch
        # into ubatches of equally many tokens per sequence, which would cut a run into a
        # one-token piece whose numbers differ (see the module docstring).
        for slot in self.slots:
            slot.batch_index = -1
        prefilling = next((s for s in self.slots if s.job is not None and s.runs), None)
        if prefilling is not None:
            slot = prefilling
            job = slot.job
            assert job is not None
            start, end = slot.runs.pop(0)
            for i in range(start, end):
                add(slot, job.prompt[i], False)
        else:
            for slot in self.slots:
                if slot.job is None:
                    continue
                if not slot.prompt_done:  # the prompt's last token
                    add(slot, slot.job.prompt[-1], True)
                    slot.prompt_done = True
                elif slot.last is not None:
                    add(slot, slot.last, True)
        if n == 0:
            return
        batch.n_tokens = n
        status = lc.llama_decode(self.ctx.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        if prefilling is not None:
            self._prefilled(prefilling)
            return
        for slot in self.slots:
            if slot.batch_index >= 0:
                self._sample(slot)

    def _prefilled(self, slot: _Slot) -> None:
        """Note what the sequence now holds after a prompt run; save a finished prompt."""
        job = slot.job
        assert job is not None
        chunked = job.prompt[:-1]
        share = shareable(len(chunked), self.n_batch)
        if slot.pos == share:
            slot.held = chunked[:share]
            self._save(slot)
        if slot.pos == len(chunked):
            slot.held_whole = chunked

    def _sample(self, slot: _Slot) -> None:
        job = slot.job
        assert job is not None
        token = lc.llama_sampler_sample(slot.sampler.sampler, self.ctx.ctx, slot.batch_index)
        if lc.llama_vocab_is_eog(self.model.vocab, token):
            self._finish(slot, self._result(slot, self.model.detokenize(slot.out), "stop"))
            return
        slot.out.append(token)
        text = self.model.detokenize(slot.out)
        hits = [stop for stop in job.stop if stop in text]
        if hits:
            self._finish(slot, self._result(slot, text[: text.index(hits[0])], "stop"))
        elif len(slot.out) >= job.max_tokens:
            self._finish(slot, self._result(slot, text, "length"))
        else:
            slot.last = token

    def _result(self, slot: _Slot, text: bytes, finish_reason: str) -> dict[str, Any]:
        job = slot.job
        assert job is not None
        prompt, completion = len(job.prompt), len(slot.out)
        return {
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text.decode("utf-8", "ignore")},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


class BatchedRuntime:
    """The model, its chat template, one or more batched contexts over it and the prompt
    store they share."""

    def __init__(
        self,
        path: Path,
        settings: EmbeddedSettings,
        *,
        n_contexts: int,
    ) -> None:
        set_verbose(False)  # llama.cpp's load and graph logs: errors only
        self.model = internals.LlamaModel(
            path_model=str(path), params=lc.llama_model_default_params(), verbose=False
        )
        eos, bos = self.model.token_eos(), self.model.token_bos()
        template = self.model.metadata().get("tokenizer.chat_template")
        if template is None:
            raise ValueError(f"{path} has no chat template")
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.n_ctx = settings.n_ctx
        self.store = PromptStore(settings.prompt_cache_mb * 2**20 if settings.prompt_cache else 0)
        self.dispatcher = _Dispatcher()
        self.engines = [
            BatchedEngine(self.model, self.dispatcher, self.store, settings)
            for _ in range(n_contexts)
        ]
        self.dispatcher.engines = self.engines
        for engine in self.engines:
            engine.start()

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens taken from the prompt cache so far (all contexts)."""
        return sum(engine.reused_tokens for engine in self.engines)

    def submit(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: list[str] | str | None,
    ) -> Future:
        """Queue one chat completion; the future holds a chat.completion dict."""
        formatted = self.formatter(messages=messages)
        prompt = self.model.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        if len(prompt) >= self.n_ctx:
            raise PromptTooLong(
                f"the prompt has {len(prompt)} tokens; the context holds {self.n_ctx}"
            )
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        extra = formatted.stop
        stops += [extra] if isinstance(extra, str) else list(extra or [])
        job = _Job(
            prompt=prompt,
            max_tokens=min(max_tokens, self.n_ctx - len(prompt)),
            stop=[s.encode() for s in stops if s],
            temperature=temperature,
            top_p=top_p,
            seed=UNSEEDED if seed is None else seed,
        )
        self.dispatcher.put(job)
        return job.future

    def close(self) -> None:
        """Stop at the next step: running and waiting requests fail, idle threads wake."""
        for job in self.dispatcher.close():
            job.future.set_exception(RuntimeError("the model server is closing"))
        for engine in self.engines:
            engine.close()
        self.model.close()
