"""The seed's quick debug, verbatim, on the real embedded SmolLM2 model."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from conftest import read_rows, run_cli

pytestmark = pytest.mark.embedded


def test_seed_quick_debug_on_the_embedded_model(tmp_path):
    out = tmp_path / "debug_rollouts.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        "+agent_name=my_agent",
        "+input_jsonl_fpath=debug_tasks.jsonl",
        f"+output_jsonl_fpath={out}",
        "+limit=5",
        "+num_samples_in_parallel=1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 5
    assert [row["_ng_task_index"] for row in rows] == [0, 1, 2, 3, 4]
    for row in rows:
        assert row["response"]["model"].startswith("SmolLM2-135M-Instruct")
        assert row["metrics"]["output_tokens"] > 0
        assert isinstance(row["output"], str)
        assert 0.0 <= row["reward"] <= 1.0

    # The seed's inspection commands work on the file.
    first = subprocess.run(
        f"head -1 {out} | jq '.'", shell=True, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(first)["_ng_task_index"] == 0
    rewards = subprocess.run(
        ["jq", ".reward", str(out)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [float(r) for r in rewards] == [row["reward"] for row in rows]


def test_embedded_model_is_reproducible_with_a_seed(tmp_path):
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for out in outs:
        result = run_cli(
            "ng_collect_rollouts",
            "+agent_name=my_agent",
            "+input_jsonl_fpath=debug_tasks.jsonl",
            f"+output_jsonl_fpath={out}",
            "+limit=2",
            "+seed=7",
            "+responses_create_params.temperature=0.9",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
    first, second = (read_rows(out) for out in outs)
    assert [r["output"] for r in first] == [r["output"] for r in second]
    assert [r["response"]["id"] for r in first] == [r["response"]["id"] for r in second]


def test_embedded_text_does_not_depend_on_what_shares_the_batch():
    """Seeded requests give the same text alone, all at once, staggered and on a rerun.

    One context decodes up to four requests together; the schedule keeps each request's
    numbers independent of the others, which the kill -9 resume guarantee relies on.
    """
    from rollsweep.config import EmbeddedSettings
    from rollsweep.servers.backends.embedded import EmbeddedBackend

    prompts = [
        "Explain why people like dogs.",
        "What is 14 + 16 + 8? Put the final answer in \\boxed{}.",
        "Write a haiku about rain.",
        "Name three rivers in Europe and say where they flow.",
        "What is 23 × 3?",
    ]
    bodies = [
        {
            "input": [{"role": "user", "content": prompt}],
            "max_output_tokens": 40,
            "temperature": 1.0,
            "seed": 11 + index,
        }
        for index, prompt in enumerate(prompts)
    ]
    backend = EmbeddedBackend(EmbeddedSettings(n_instances=1, n_parallel=4))

    def key(response: dict) -> tuple:
        return response["id"], json.dumps(response["output"]), json.dumps(response["usage"])

    async def late(index: int, body: dict) -> dict:
        await asyncio.sleep(0.07 * index)  # arrive while the earlier ones are decoding
        return await backend.respond(body)

    async def scenarios() -> dict[str, list[tuple]]:
        try:
            alone = [key(await backend.respond(body)) for body in bodies]
            together = await asyncio.gather(*(backend.respond(body) for body in bodies))
            staggered = await asyncio.gather(*(late(i, body) for i, body in enumerate(bodies)))
            reseeded = await backend.respond({**bodies[0], "seed": 99})
            return {
                "alone": alone,
                "together": [key(r) for r in together],
                "staggered": [key(r) for r in staggered],
                "reseeded": [key(reseeded)],
            }
        finally:
            await backend.aclose()

    results = asyncio.run(scenarios())
    assert results["together"] == results["alone"]
    assert results["staggered"] == results["alone"]
    assert len({text for _, text, _ in results["alone"]}) == len(prompts)
    # the seed does reach the sampler: another seed, another text
    assert results["reseeded"][0][1] != results["alone"][0][1]


def test_the_prompt_cache_changes_no_text():
    """A sweep repeats prompts with other seeds: with the prompt cache a request takes the
    chunks another sequence (or its own, earlier) already computed, and its text is the same
    as when it computes everything itself — whole prompts and shared whole-chunk prefixes."""
    from rollsweep.config import EmbeddedSettings
    from rollsweep.servers.backends.embedded import EmbeddedBackend

    shared = "You are a careful assistant. Answer in one short sentence. " * 3
    prompts = [shared + "What is the capital of France?", shared + "Why is the sky blue?"]
    bodies = [
        {
            "input": [{"role": "user", "content": prompt}],
            "max_output_tokens": 24,
            "temperature": 1.0,
            "seed": 100 * repeat + index,
        }
        for index, prompt in enumerate(prompts)
        for repeat in range(3)
    ]

    def texts(prompt_cache: bool, n_batch: int) -> tuple[list[str], int]:
        backend = EmbeddedBackend(
            EmbeddedSettings(
                n_instances=1, n_parallel=4, n_batch=n_batch, prompt_cache=prompt_cache
            )
        )

        async def run() -> list[str]:
            try:
                together = await asyncio.gather(*(backend.respond(body) for body in bodies))
                one_by_one = [await backend.respond(body) for body in bodies]
                return [json.dumps(r["output"]) for r in [*together, *one_by_one]]
            finally:
                await backend.aclose()

        return asyncio.run(run()), backend.reused_prompt_tokens

    cold, cold_reused = texts(prompt_cache=False, n_batch=16)
    warm, warm_reused = texts(prompt_cache=True, n_batch=16)
    assert cold_reused == 0 and warm_reused > 0
    assert warm == cold
    assert warm[: len(bodies)] == warm[len(bodies) :]  # together or one by one
    assert len(set(warm[: len(bodies)])) == len(bodies)  # the seeds still differ


def test_the_saved_prompts_serve_every_context_with_the_same_text():
    """The prompt store is shared: a prompt (or a prefix of it) computed in one context is
    restored into a sequence of another, and the text is the same as computed from scratch in a
    single context — whichever context serves a request, and whatever prefix it restores."""
    from rollsweep.config import EmbeddedSettings
    from rollsweep.servers.backends.embedded import EmbeddedBackend

    shared = "You are a careful assistant. Answer in one short sentence. " * 3
    questions = ["What is the capital of France?", "Why is the sky blue?", "Name a fish."]
    bodies = [
        {
            "input": [{"role": "user", "content": shared + question}],
            "max_output_tokens": 16,
            "temperature": 0.0 if repeat == 0 else 1.0,
            "seed": 100 * repeat + index,
        }
        for repeat in range(2)
        for index, question in enumerate(questions)
    ]

    def serve(settings: EmbeddedSettings, orders: list[list[int]]) -> tuple[list[str], Any]:
        backend = EmbeddedBackend(settings)

        async def run() -> list[str]:
            try:
                texts = []
                for order in orders:
                    answers = await asyncio.gather(*(backend.respond(bodies[i]) for i in order))
                    by_body = dict(zip(order, answers, strict=True))
                    texts += [json.dumps(by_body[i]["output"]) for i in sorted(order)]
                return texts
            finally:
                await backend.aclose()

        return asyncio.run(run()), backend._runtime

    everything = list(range(len(bodies)))
    orders = [everything, everything[::-1], *([i] for i in everything)]
    reference, _ = serve(
        EmbeddedSettings(n_instances=1, n_parallel=1, n_batch=16, prompt_cache=False), orders
    )
    texts, runtime = serve(
        EmbeddedSettings(n_instances=2, n_parallel=2, n_batch=16, prompt_cache_mb=64), orders
    )
    assert texts == reference
    assert len(runtime.store) > 0
    # every context took prompts from the store, not only from its own sequences
    assert all(engine.restored_tokens > 0 for engine in runtime.engines)
