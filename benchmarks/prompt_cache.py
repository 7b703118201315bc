"""The embedded model's prompt cache: the same sweep prompts with the cache on and off.

    python benchmarks/prompt_cache.py [--tasks 4] [--repeats 4] [--max-tokens 48] [--contexts 1]

The first ``--tasks`` prompts of data/sweep_tasks.jsonl, each ``--repeats`` times with its own
seed (as a sweep sends them), through ``--contexts`` batched contexts: all submitted together,
then one by one. On and off alternate in one run; the texts must be identical. With several
contexts, ``restored_prompt_tokens`` counts what came from the prompt store that they share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from rollsweep.config import EmbeddedSettings
from rollsweep.paths import DEFAULT_STACK_CONFIG, default_model_path
from rollsweep.servers.backends.batched import BatchedRuntime

TASKS = DEFAULT_STACK_CONFIG.parents[1] / "data" / "sweep_tasks.jsonl"


def run(
    jobs: list[tuple[list, int]], *, prompt_cache: bool, max_tokens: int, contexts: int
) -> dict:
    settings = EmbeddedSettings(n_parallel=4, n_threads=1, n_batch=256, prompt_cache=prompt_cache)
    runtime = BatchedRuntime(default_model_path(), settings, n_contexts=contexts)
    options = {"max_tokens": max_tokens, "temperature": 1.0, "top_p": 1.0, "stop": None}
    try:
        start = time.perf_counter()
        futures = [runtime.submit(messages, seed=seed, **options) for messages, seed in jobs]
        together = [future.result() for future in futures]
        middle = time.perf_counter()
        alone = [runtime.submit(messages, seed=seed, **options).result() for messages, seed in jobs]
        end = time.perf_counter()
    finally:
        runtime.close()
    texts = [r["choices"][0]["message"]["content"] for r in together + alone]
    return {
        "together_s": round(middle - start, 2),
        "one_by_one_s": round(end - middle, 2),
        "reused_prompt_tokens": runtime.reused_prompt_tokens,
        "restored_prompt_tokens": sum(engine.restored_tokens for engine in runtime.engines),
        "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in together + alone),
        "texts_sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--contexts", type=int, default=1)
    args = parser.parse_args()
    rows = [json.loads(line) for line in TASKS.read_text().splitlines()[: args.tasks]]
    jobs = [
        (row["responses_create_params"]["input"], 1000 * repeat + index)
        for index, row in enumerate(rows)
        for repeat in range(args.repeats)
    ]
    runs = {}
    for label, cache in (("off", False), ("on", True), ("off_again", False), ("on_again", True)):
        runs[label] = run(
            jobs, prompt_cache=cache, max_tokens=args.max_tokens, contexts=args.contexts
        )
        print(label, runs[label], flush=True)
    identical = len({r["texts_sha256"] for r in runs.values()}) == 1
    ratio = {
        key: round(
            (runs["off"][key] + runs["off_again"][key]) / (runs["on"][key] + runs["on_again"][key]),
            2,
        )
        for key in ("together_s", "one_by_one_s")
    }
    print(f"speed-up with the cache: {ratio}; texts identical: {identical}")
    record(
        "prompt_cache",
        {"command": " ".join(sys.argv), "runs": runs, "speedup": ratio, "identical": identical},
    )


if __name__ == "__main__":
    main()
