"""Continuous batching over one llama.cpp context, as llama.cpp's own server does it.

Several requests share one context: each has its own sequence (a KV cache stream of its own)
and its own seeded sampler chain, and every step decodes one token for each running request in
a single ``llama_decode``. A worker thread owns the context; callers wait on futures.

A prompt is computed in two parts: all but its last token in chunks of ``n_batch`` from its
start, alone in their decode calls, then its last token as one row of a decode step (that row
gives the logits of the first sampled token). Since a chunk's numbers depend only on the tokens
up to it and on its length, a request may take the chunks it shares with a prompt already
computed in any sequence of its context (a sweep sends the same prompt many times, with other
seeds and temperatures): the same prompt, or whole chunks of a common prefix. The text is then
the same as if the request had computed everything itself.
"""

from __future__ import annotations

import queue
import random
import threading
import time
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

#: llama-cpp-python's chat completion defaults, kept so the text matches what its
#: ``create_chat_completion`` sampled before (temperature and top_p come from the request).
TOP_K = 40
MIN_P = 0.05
TYPICAL_P = 1.0
#: the seed llama-cpp-python derives when a request names none (a fixed value, so an unseeded
#: request is still a pure function of its body)
UNSEEDED = random.Random(lc.LLAMA_DEFAULT_SEED).randint(0, 2**32)


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
    fed: int = 0  # prompt tokens already in the KV cache
    pos: int = 0
    last: int | None = None  # sampled token not yet decoded
    out: list[int] = field(default_factory=list)
    batch_index: int = -1  # where this slot's logits are in the current batch
    #: the chunked part of the prompt whose KV this sequence holds (valid up to ``fed``), kept
    #: after the request ends so that a later one may reuse it
    chunked: list[int] = field(default_factory=list)

    def reusable(self, chunked: list[int], n_batch: int) -> int:
        """How many leading tokens of ``chunked`` this sequence's KV holds, computed in the
        very chunks that ``chunked`` would be computed in."""
        held = min(self.fed, len(self.chunked))
        if held == len(self.chunked) == len(chunked) and self.chunked == chunked:
            return held  # the same prompt: every chunk, the last short one included
        common = 0
        limit = min(held, len(chunked))
        while common < limit and self.chunked[common] == chunked[common]:
            common += 1
        return common // n_batch * n_batch  # whole chunks only


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


class BatchedEngine:
    """One llama.cpp context decoding up to ``n_parallel`` requests together."""

    def __init__(
        self,
        model: internals.LlamaModel,
        jobs: queue.SimpleQueue[_Job | None],
        settings: EmbeddedSettings,
    ) -> None:
        self.model = model
        self.n_batch = max(settings.n_batch, settings.n_parallel)
        self.prompt_cache = settings.prompt_cache
        self.reused_tokens = 0  # prompt tokens taken from the cache, for benchmarks
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
        self.jobs = jobs
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="llama-batched", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Free the context (after the runtime has told the thread to stop)."""
        self.thread.join()
        lc.llama_batch_free(self.batch)
        self.ctx.close()

    # -- the worker thread -------------------------------------------------------------------

    def _admit(self, slot: _Slot, job: _Job) -> None:
        chunked = job.prompt[:-1]
        reuse, source = 0, slot
        if self.prompt_cache:
            # prefer this slot's own cache (no copy) when another holds no more
            for other in [slot, *self.slots]:
                length = other.reusable(chunked, self.n_batch)
                if length > reuse:
                    reuse, source = length, other
        if source is not slot:
            # streams are separate buffers: llama.cpp copies the whole stream before the next
            # decode, and the cells past the shared prompt are dropped just below
            lc.llama_memory_seq_cp(self.memory, source.seq, slot.seq, -1, -1)
        lc.llama_memory_seq_rm(self.memory, slot.seq, reuse if reuse else -1, -1)
        slot.job, slot.fed, slot.pos, slot.last, slot.out = job, reuse, reuse, None, []
        slot.chunked = chunked
        slot.sampler = _sampler(job.temperature, job.top_p, job.seed)
        self.reused_tokens += reuse

    def _finish(self, slot: _Slot, result: dict[str, Any] | Exception) -> None:
        job = slot.job
        assert job is not None
        slot.job, slot.sampler = None, None
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)

    def _loop(self) -> None:
        while not self.closing.is_set():
            # take work only for free slots (another context may take the rest); block when idle
            for slot in self.slots:
                if slot.job is not None:
                    continue
                idle = not any(s.job for s in self.slots)
                try:
                    job = self.jobs.get(block=idle)
                except queue.Empty:
                    break
                if job is None:  # the runtime is closing
                    break
                self._admit(slot, job)
            try:
                self._step()
            except Exception as error:  # a failed decode fails the requests in it, not the server
                self._fail_all(error)
        self._fail_all(RuntimeError("the model server is closing"))

    def _fail_all(self, error: Exception) -> None:
        for slot in self.slots:
            if slot.job is not None:
                self._finish(slot, error)

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

        # A prompt's chunks are fed alone, in chunks of n_batch from its start, and a decode
        # step carries one token per running request (a prompt's last token among them) and
        # nothing else. llama.cpp's CPU kernels pick their path by the shape of what they are
        # given (tiled attention for long query runs, how a mixed batch splits into ubatches),
        # so mixing a prompt with other requests' tokens changes its numbers; this schedule
        # gives every request's rows the same shapes whatever else runs, hence the same text.
        for slot in self.slots:
            slot.batch_index = -1
        prefilling = [s for s in self.slots if s.job is not None and s.fed < len(s.chunked)]
        if prefilling:
            slot = prefilling[0]
            take = min(len(slot.chunked) - slot.fed, self.n_batch)
            for i in range(slot.fed, slot.fed + take):
                add(slot, slot.chunked[i], False)
            slot.fed += take
        else:
            for slot in self.slots:
                if slot.job is None:
                    continue
                if slot.fed < len(slot.job.prompt):  # the prompt's last token
                    add(slot, slot.job.prompt[-1], True)
                    slot.fed += 1
                elif slot.last is not None:
                    add(slot, slot.last, True)
        if n == 0:
            return
        batch.n_tokens = n
        status = lc.llama_decode(self.ctx.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        for slot in self.slots:
            if slot.batch_index >= 0:
                self._sample(slot)

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
    """The model, its chat template and one or more batched contexts over it."""

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
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.engines = [BatchedEngine(self.model, self.jobs, settings) for _ in range(n_contexts)]

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
        self.jobs.put(job)
        return job.future

    def close(self) -> None:
        """Stop at the next step: running requests fail, idle threads wake on a None job."""
        for engine in self.engines:
            engine.closing.set()
            self.jobs.put(None)
        for engine in self.engines:
            engine.close()
        self.model.close()
