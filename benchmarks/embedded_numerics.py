"""What the embedded backend's prompt reuse rests on: which schedules give bitwise-equal logits.

    python benchmarks/embedded_numerics.py [--threads 1]

One prompt (91 tokens, in the chat template) on one llama.cpp context as the embedded backend
builds it (4 sequences, one KV stream each, no flash attention). The reference computes all of
the prompt but its last token in one run, then decodes 8 greedy steps one token at a time; each
other schedule must give the very same logits at every step (``identical``). Prompt reuse
needs the cut of the prompt into runs, the sequence, the company in the decode step and a
state save and restore to change nothing; a prompt run mixed into a decode step of other
sequences is the case the backend avoids.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import llama_cpp as lc
import numpy as np
from llama_cpp import _internals as internals
from llama_cpp._logger import set_verbose

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from rollsweep.paths import default_model_path

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n"
    + "Explain why people like dogs and cats and also write about rivers in Europe, then count"
    " to twenty. " * 3 + "<|im_end|>\n<|im_start|>assistant\n"
)
STEPS = 8


class Context:
    """A context shaped like the backend's, with the few calls the schedules need."""

    def __init__(self, threads: int) -> None:
        set_verbose(False)
        self.model = internals.LlamaModel(
            path_model=str(default_model_path()),
            params=lc.llama_model_default_params(),
            verbose=False,
        )
        params = lc.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 8192, 256, 256, 4
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = internals.LlamaContext(model=self.model, params=params, verbose=False)
        self.memory = lc.llama_get_memory(self.ctx.ctx)
        self.batch = lc.llama_batch_init(256, 0, 1)
        self.vocab = lc.llama_vocab_n_tokens(self.model.vocab)
        self.prompt = self.model.tokenize(PROMPT.encode(), add_bos=False, special=True)

    def decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, logits) rows."""
        for i, (token, pos, seq, logits) in enumerate(rows):
            self.batch.token[i], self.batch.pos[i] = token, pos
            self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, seq
            self.batch.logits[i] = logits
        self.batch.n_tokens = len(rows)
        if lc.llama_decode(self.ctx.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def clear(self, *seqs: int) -> None:
        for seq in seqs:
            lc.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def run(self, seq: int, start: int, end: int) -> list[tuple[int, int, int, bool]]:
        return [(self.prompt[i], i, seq, False) for i in range(start, end)]

    def prefill(self, seq: int, cuts: list[int]) -> None:
        self.clear(seq)
        bounds = [0, *cuts, len(self.prompt) - 1]
        for start, end in itertools.pairwise(bounds):
            self.decode(self.run(seq, start, end))

    def generate(self, seq: int, company: tuple[int, ...] = ()) -> np.ndarray:
        """Greedy steps from the prompt's last token; ``company`` decodes beside it."""
        self.clear(*company)
        token, pos, steps = self.prompt[-1], len(self.prompt) - 1, []
        for step in range(STEPS):
            self.decode(
                [(token, pos, seq, True)] + [(5 + step, step, other, True) for other in company]
            )
            pointer = lc.llama_get_logits_ith(self.ctx.ctx, 0)
            steps.append(np.ctypeslib.as_array(pointer, shape=(self.vocab,)).copy())
            token, pos = int(steps[-1].argmax()), pos + 1
        return np.stack(steps)

    def save(self, seq: int) -> bytes:
        size = lc.llama_state_seq_get_size(self.ctx.ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self.ctx.ctx, buffer, size, seq)
        return bytes(buffer)[:written]

    def restore(self, seq: int, state: bytes) -> None:
        pointer = ctypes.cast(ctypes.c_char_p(state), ctypes.POINTER(ctypes.c_uint8))
        if lc.llama_state_seq_set_data(self.ctx.ctx, pointer, len(state), seq) == 0:
            raise RuntimeError("llama_state_seq_set_data failed")


def schedules(c: Context) -> dict[str, Callable[[], np.ndarray]]:
    last = len(c.prompt) - 1

    def restored() -> np.ndarray:
        c.prefill(0, [60])  # computes [0, 60) then the rest; keep [0, 60) only
        c.clear(0)
        c.decode(c.run(0, 0, 60))
        state = c.save(0)
        c.prefill(3, [])
        c.generate(3)  # leave other cells in sequence 3's stream first
        c.restore(3, state)
        lc.llama_memory_seq_rm(c.memory, 3, 45, -1)
        c.decode(c.run(3, 45, last))
        return c.generate(3)

    def mixed() -> np.ndarray:
        c.clear(0, 1, 2, 3)
        for other in (0, 2, 3):
            c.decode([(7, 0, other, False)])
        c.decode(c.run(1, 0, 30))
        c.decode([(5, 1, 0, True), (5, 1, 2, True), *c.run(1, 30, last), (5, 1, 3, True)])
        return c.generate(1)

    def prefill_then(seq: int, cuts: list[int], company: tuple[int, ...] = ()):
        def schedule() -> np.ndarray:
            c.prefill(seq, cuts)
            return c.generate(seq, company)

        return schedule

    return {
        "runs cut at 50": prefill_then(0, [50]),
        "runs cut at 2": prefill_then(0, [2]),
        "runs cut at 7, 9, 60": prefill_then(0, [7, 9, 60]),
        "a one-token first run": prefill_then(0, [1]),
        "a one-token last run": prefill_then(0, [last - 1]),
        "another sequence": prefill_then(2, []),
        "three others in the decode step": prefill_then(1, [30], (0, 2, 3)),
        "restored from a saved state, cut back to 45": restored,
        "a prompt run mixed into a decode step": mixed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    context = Context(args.threads)
    context.prefill(0, [])
    reference = context.generate(0)
    results = {}
    for name, schedule in schedules(context).items():
        logits = schedule()
        results[name] = {
            "identical": bool(np.array_equal(logits, reference)),
            "max_abs_difference": float(np.abs(logits - reference).max()),
        }
        print(f"{name:>45}: {results[name]}")
    record(
        "embedded_numerics",
        {
            "command": " ".join(sys.argv),
            "llama_cpp_python": lc.__version__,
            "prompt_tokens": len(context.prompt),
            "threads": args.threads,
            "schedules": results,
        },
    )


if __name__ == "__main__":
    main()
