"""Collector throughput: rollouts/s and collector CPU per rollout from 1 to 16,384 in flight.

    python benchmarks/collector_throughput.py            # full run, a few minutes on 2 cores
    python benchmarks/collector_throughput.py --quick    # smaller counts, for a smoke test

What it measures is the *collector* (``ng_collect_rollouts`` as a subprocess), not our servers:

- scaling: the collector drives a minimal ``/run`` server (this file, ``serve`` mode: raw
  asyncio + uvloop, several processes on one port with SO_REUSEPORT) that holds each request a
  set latency (200 ms +- 20 % by default, ``call_later``, no thread) and answers with a
  rollout-shaped JSON (the task echoed plus reward, output, response, metrics, verification),
  through ``+agent_url=``. Collector overhead per rollout = the collector process's CPU time
  (user + sys, from ``os.wait4``) divided by the number of rollouts, minus its fixed cost (start
  up, import, pool creation, measured by a 1-rollout run at the same width); so it does not
  depend on how slow the server is. Rollouts/s is wall clock, from the collector's own summary
  line (start-up excluded);
- memory: the collector's peak RSS (``ru_maxrss``) at 10,000 and 100,000 rollouts, which must
  be flat;
- end to end: our agent + model (simulated backend, same latency) + resources servers, a
  realistic figure at low concurrency;
- the embedded model: collector CPU as a share of the model's own time
  (``metrics.model_latency_s``) on the seed's debug tasks.

Acceptance (issue 3): overhead per rollout grows at most 1.5x from 64 to 16,384 in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RequestProtocol, answer_response, json_reply

from rollsweep.servers.backends.simulated import with_answer

ROOT = Path(__file__).resolve().parents[1]
DEBUG_TASKS = ROOT / "data" / "debug_tasks.jsonl"
LEVELS = (1, 64, 1024, 4096, 16384)
#: Distinct tasks in the generated input; bigger runs use +num_repeats.
N_TASKS = 1000
RUN_TIMEOUT_S = 900.0


# --------------------------------------------------------------------------- the /run server


def serve(port: int, latency_ms: float, jitter: float, seed: int) -> None:
    """A minimal HTTP/1.1 ``/run`` server: wait the latency, answer a rollout-shaped row."""
    import asyncio
    import random

    import orjson

    with contextlib.suppress(ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rng = random.Random(seed)
    latency_s = latency_ms / 1000.0
    health = b'{"status":"ok"}'
    health_reply = json_reply(health)

    def rollout(body: bytes, delay: float) -> bytes:
        task = orjson.loads(body)
        text = "The answer is \\boxed{63}."
        params = task.get("responses_create_params") or {}
        reward = float(rng.random() < 0.6)
        result = {
            **task,
            "reward": reward,
            "output": text,
            "response": answer_response(
                f"resp_{rng.getrandbits(48):012x}",
                "simulated",
                text,
                temperature=params.get("temperature"),
            ),
            "metrics": {
                "model_latency_s": round(delay, 6),
                "input_tokens": 41,
                "output_tokens": 12,
                "turns": 1,
                "tool_calls": 0,
            },
            "verification": {"verifier": "math", "extracted": "63", "expected": "63"},
        }
        return json_reply(orjson.dumps(result))

    class RunProtocol(RequestProtocol):
        def handle(self, head: bytes, body: bytes) -> None:
            if head.startswith(b"get "):
                self.transport.write(health_reply)
            elif head.startswith(b"post /aggregate_metrics"):
                # a real agent's answer: a few metrics, not the rows echoed back
                rows = orjson.loads(body)["verify_responses"]
                metrics = orjson.dumps({"agent_metrics": {"rollouts": len(rows)}})
                self.transport.write(json_reply(metrics))
            else:
                delay = latency_s * (1.0 + jitter * (2.0 * rng.random() - 1.0))
                loop.call_later(delay, self.reply, body, delay)

        def reply(self, body: bytes, delay: float) -> None:
            if not self.transport.is_closing():
                self.transport.write(rollout(body, delay))

    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(65535)
    server = loop.run_until_complete(loop.create_server(RunProtocol, sock=sock, backlog=65535))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.close()


class RunServers:
    """``processes`` copies of the /run server on one port (SO_REUSEPORT), as child processes."""

    def __init__(self, processes: int, latency_ms: float, jitter: float) -> None:
        # A bound, never-listening socket holds the port for us; it gets no connections.
        self._holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._holder.bind(("127.0.0.1", 0))
        self.port = self._holder.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "serve",
                    "--port",
                    str(self.port),
                    "--latency-ms",
                    str(latency_ms),
                    "--jitter",
                    str(jitter),
                    "--seed",
                    str(index),
                ],
                stdin=subprocess.DEVNULL,
            )
            for index in range(processes)
        ]

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"/run server exited with status {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    time.sleep(0.5)  # let every process reach listen()
                    return
            time.sleep(0.1)
        raise SystemExit("/run server not ready")

    def cpu_s(self) -> float:
        """CPU seconds (user + sys) used so far by the server processes (psutil), or nan."""
        try:
            import psutil
        except ImportError:
            return float("nan")
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._holder.close()


# --------------------------------------------------------------------------- one collector run


def write_tasks(path: Path, n_tasks: int) -> None:
    """``n_tasks`` realistic task rows: the seed's debug tasks, cycled, with fresh task ids (and
    their answers in the request, for the simulated policy of the end-to-end stack)."""
    seeds = [json.loads(line) for line in DEBUG_TASKS.read_text().splitlines() if line.strip()]
    with open(path, "w") as handle:
        for index in range(n_tasks):
            task = dict(seeds[index % len(seeds)])
            task["task_id"] = f"bench-{index:06d}-{task.get('task_id', '')}"
            handle.write(json.dumps(with_answer(task)) + "\n")


def split(n_rollouts: int) -> tuple[int, int]:
    """(tasks, repeats) with tasks * repeats == n_rollouts, tasks <= N_TASKS."""
    if n_rollouts <= N_TASKS:
        return n_rollouts, 1
    if n_rollouts % N_TASKS:
        raise SystemExit(f"{n_rollouts} rollouts: use a multiple of {N_TASKS}")
    return N_TASKS, n_rollouts // N_TASKS


def _rss_bytes(pid: int) -> int:
    """A process's resident set size now (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


SUMMARY = re.compile(r"^(\d+) rollouts, .* ([0-9.]+) s -> ", re.MULTILINE)
RETRIES = re.compile(r", (\d+) retries")


def run_collector(
    url: str, tasks: Path, workdir: Path, n_rollouts: int, width: int, **extra: Any
) -> dict[str, Any]:
    """Run ``ng_collect_rollouts`` once; its CPU, peak RSS, wall and the rows' latencies."""
    n_tasks, repeats = split(n_rollouts)
    output = workdir / f"out_{width}_{n_rollouts}.jsonl"
    command = [
        "ng_collect_rollouts",
        f"+agent_url={url}",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={output}",
        f"+limit={n_tasks}",
        f"+num_repeats={repeats}",
        f"+num_samples_in_parallel={width}",
        "+progress=false",
        "+resume=false",
        *(f"+{key}={value}" for key, value in extra.items()),
    ]
    log = workdir / "collector.log"
    started = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = started + RUN_TIMEOUT_S
    rusage = None
    # RSS while rollouts stream: sampled while the checkpoint grows, so not during the final
    # ordered write; ru_maxrss below is the peak over the whole run, that write included.
    streaming_rss = 0
    checkpoint_size = 0
    next_sample = started
    while rusage is None:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            rusage = usage
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        now = time.perf_counter()
        if now > deadline:
            proc.kill()
            proc.wait()
            raise SystemExit(f"collector run over {RUN_TIMEOUT_S:.0f} s: {' '.join(command)}")
        if now >= next_sample:
            next_sample = now + 0.25
            rss = _rss_bytes(proc.pid)
            size = sum(p.stat().st_size for p in workdir.glob(f".{output.name}.*.ckpt.jsonl"))
            if size > checkpoint_size:
                streaming_rss = max(streaming_rss, rss)
                checkpoint_size = size
        time.sleep(0.05)
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"collector failed ({proc.returncode}):\n{text[-2000:]}")
    match = SUMMARY.search(text)
    collect_wall = float(match.group(2)) if match else wall
    retries = RETRIES.search(match.group(0)) if match else None
    latencies, model_s, rows = [], 0.0, 0
    with open(output, "rb") as handle:
        for line in handle:
            row = json.loads(line)
            rows += 1
            latencies.append(row["metrics"]["latency_s"])
            model_s += float(row["metrics"].get("model_latency_s") or 0.0)
    if rows != n_rollouts:
        raise SystemExit(f"expected {n_rollouts} rows, got {rows}:\n{text[-2000:]}")
    output.unlink()
    latencies.sort()
    return {
        "rollouts": n_rollouts,
        "width": width,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "user_s": rusage.ru_utime,
        "sys_s": rusage.ru_stime,
        "peak_rss_mb": rusage.ru_maxrss / 1024.0,
        "streaming_rss_mb": streaming_rss / 2**20,
        "wall_s": wall,
        "collect_wall_s": collect_wall,
        "latency_p50_s": latencies[len(latencies) // 2],
        "latency_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "model_s": model_s,
        "retries": int(retries.group(1)) if retries else None,
        "command": " ".join(command),
    }


def measure_level(
    servers: RunServers, tasks: Path, workdir: Path, width: int, n_rollouts: int
) -> dict[str, Any]:
    """One concurrency level: a 1-rollout run (fixed cost) then the measured run."""
    fixed = run_collector(servers.url, tasks, workdir, 1, width)
    server_before = servers.cpu_s()
    run = run_collector(servers.url, tasks, workdir, n_rollouts, width)
    server_cpu = servers.cpu_s() - server_before
    net_cpu = max(0.0, run["cpu_s"] - fixed["cpu_s"])
    figures = {
        "concurrency": width,
        "rollouts": n_rollouts,
        "rollouts_per_s": round(n_rollouts / run["collect_wall_s"], 1),
        "ideal_rollouts_per_s": None,
        "overhead_ms_per_rollout": round(1000 * net_cpu / (n_rollouts - 1), 4),
        "gross_cpu_ms_per_rollout": round(1000 * run["cpu_s"] / n_rollouts, 4),
        "fixed_cpu_s": round(fixed["cpu_s"], 3),
        "collector_cpu_s": round(run["cpu_s"], 3),
        "server_cpu_ms_per_rollout": round(1000 * server_cpu / n_rollouts, 4),
        "latency_p50_ms": round(1000 * run["latency_p50_s"], 1),
        "latency_p99_ms": round(1000 * run["latency_p99_s"], 1),
        "retries": run["retries"],
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "collect_wall_s": round(run["collect_wall_s"], 2),
    }
    print(
        f"  {width:>6} in flight: {figures['rollouts_per_s']:>8.1f} rollouts/s, "
        f"overhead {figures['overhead_ms_per_rollout']:.3f} ms/rollout "
        f"(fixed {figures['fixed_cpu_s']:.2f} s), server {figures['server_cpu_ms_per_rollout']:.3f}"
        f" ms/rollout, p50 latency {figures['latency_p50_ms']:.0f} ms, "
        f"RSS {figures['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return figures


# --------------------------------------------------------------------------- our own servers


def stack_run(
    tasks: Path, workdir: Path, overrides: dict[str, Any], n_rollouts: int, width: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Start our agent + model + resources servers (outside the collector), collect through them.

    Returns the measured run and, for more than 10 rollouts, a 1-rollout run at the same width
    (the collector's fixed cost).
    """
    from rollsweep.config import load_stack_config
    from rollsweep.servers.stack import Stack

    config = load_stack_config(None, overrides)
    with Stack(config, agents=["my_agent"], log_dir=workdir / "stack-logs") as stack:
        url = stack.agent_urls()["my_agent"]
        fixed = run_collector(url, tasks, workdir, 1, width) if n_rollouts > 10 else None
        run = run_collector(url, tasks, workdir, n_rollouts, width)
    return run, fixed


# --------------------------------------------------------------------------- main


def markdown(figures: dict[str, Any]) -> str:
    """The figures as markdown: the scaling table, then the other measurements."""
    lines = [
        "| in flight | rollouts | rollouts/s (ideal) | collector CPU ms/rollout | "
        "fixed CPU s | server CPU ms/rollout | p50 / p99 latency ms | retries | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in figures["levels"]:
        lines.append(
            f"| {f['concurrency']:,} | {f['rollouts']:,} | {f['rollouts_per_s']:,.0f} "
            f"({f['ideal_rollouts_per_s']:,.0f}) | {f['overhead_ms_per_rollout']:.3f} | "
            f"{f['fixed_cpu_s']:.2f} | {f['server_cpu_ms_per_rollout']:.3f} | "
            f"{f['latency_p50_ms']:.0f} / {f['latency_p99_ms']:.0f} | {f['retries']} | "
            f"{f['peak_rss_mb']:.0f} |"
        )
    lines.append("")
    if "overhead_ratio_16384_vs_64" in figures:
        ratio = figures["overhead_ratio_16384_vs_64"]
        lines.append(f"- overhead(16,384) / overhead(64) = {ratio:.3f} (target <= 1.5)")
    if "memory" in figures:
        memory = figures["memory"]
        shown = ", ".join(
            f"{int(n):,} rollouts {m['peak_rss_mb']:.0f} MB "
            f"({m['streaming_rss_mb']:.0f} MB before the ordered write)"
            for n, m in memory["by_rollouts"].items()
        )
        lines.append(f"- collector peak RSS at {memory['concurrency']:,} in flight: {shown}")
    if "agent_stack" in figures:
        a = figures["agent_stack"]
        lines.append(
            f"- through our agent + simulated model + resources servers, {a['concurrency']} in "
            f"flight: {a['rollouts_per_s']:.0f} rollouts/s (ideal {a['ideal_rollouts_per_s']:.0f}),"
            f" collector {a['overhead_ms_per_rollout']:.2f} ms CPU/rollout"
        )
    if "embedded" in figures:
        e = figures["embedded"]
        per = e["share_per_rollout_pct"]
        lines.append(
            f"- embedded model, {e['rollouts']} debug rollouts: model {e['model_s']:.1f} s, "
            f"collector process {e['collector_cpu_s']:.2f} s CPU = {e['share_gross_pct']:.2f} % "
            f"of the model's time with start-up"
            + (f", {per:.3f} % per rollout in steady state" if per is not None else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode")
    server = commands.add_parser("serve", help="(internal) one /run server process")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--latency-ms", type=float, default=200.0)
    server.add_argument("--jitter", type=float, default=0.2)
    server.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=200.0, help="server latency")
    parser.add_argument("--jitter", type=float, default=0.2, help="+- share of the latency")
    parser.add_argument("--server-processes", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-stack", action="store_true", help="no agent/embedded runs")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port, args.latency_ms, args.jitter, args.seed)
        return
    if shutil.which("ng_collect_rollouts") is None:
        sys.exit("ng_collect_rollouts is not on PATH: pip install -e . first")
    from _common import record

    # Thousands of sockets: the collector (a child) inherits the raised soft limit.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(args.levels) + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"warning: open-file limit {hard} < {need}; the widest level may fail")

    def rollouts_for(width: int) -> int:
        if width == 1:
            return 20 if args.quick else 50
        windows = 2 if args.quick else 4
        wanted = max(1000 if args.quick else 2000, windows * width)
        return -(-wanted // N_TASKS) * N_TASKS if wanted > N_TASKS else wanted

    figures: dict[str, Any] = {
        "latency_ms": args.latency_ms,
        "jitter": args.jitter,
        "server_processes": args.server_processes,
    }
    with tempfile.TemporaryDirectory(prefix="rollsweep-bench-") as tmp:
        workdir = Path(tmp)
        tasks = workdir / "tasks.jsonl"
        write_tasks(tasks, N_TASKS)
        servers = RunServers(args.server_processes, args.latency_ms, args.jitter)
        try:
            servers.wait_ready()
            print(f"/run server: {servers.url}, {args.latency_ms:.0f} ms +- {args.jitter:.0%}")
            levels = []
            for width in args.levels:
                level = measure_level(servers, tasks, workdir, width, rollouts_for(width))
                level["ideal_rollouts_per_s"] = round(width / (args.latency_ms / 1000.0), 1)
                levels.append(level)
            figures["levels"] = levels
            by_width = {level["concurrency"]: level for level in levels}
            if 64 in by_width and 16384 in by_width:
                ratio = round(
                    by_width[16384]["overhead_ms_per_rollout"]
                    / by_width[64]["overhead_ms_per_rollout"],
                    3,
                )
                figures["overhead_ratio_16384_vs_64"] = ratio
                verdict = "PASS" if ratio <= 1.5 else "FAIL"
                print(f"overhead(16,384) / overhead(64) = {ratio:.3f}  (<= 1.5: {verdict})")
            if not args.skip_memory:
                width = 1024
                memory = {}
                for n in (1000, 10000) if args.quick else (10000, 100000):
                    run = run_collector(servers.url, tasks, workdir, n, width)
                    memory[str(n)] = {
                        "peak_rss_mb": round(run["peak_rss_mb"], 1),
                        "streaming_rss_mb": round(run["streaming_rss_mb"], 1),
                        "rollouts_per_s": round(n / run["collect_wall_s"], 1),
                        "cpu_ms_per_rollout": round(1000 * run["cpu_s"] / n, 4),
                    }
                    print(
                        f"  {n:>7,} rollouts at {width} in flight: peak RSS "
                        f"{run['peak_rss_mb']:.1f} MB (while streaming "
                        f"{run['streaming_rss_mb']:.1f} MB), "
                        f"{memory[str(n)]['rollouts_per_s']:.0f}/s",
                        flush=True,
                    )
                figures["memory"] = {"concurrency": width, "by_rollouts": memory}
        finally:
            servers.stop()

        if not args.skip_stack:
            # End to end through our agent + simulated model + resources (3 Python hops).
            n, width = (200, 16) if args.quick else (1000, 64)
            simulated = {
                "model_servers": {
                    "policy_model": {
                        "backend": "simulated",
                        "simulated": {"latency_ms": args.latency_ms},
                    }
                }
            }
            run, fixed = stack_run(tasks, workdir, simulated, n, width)
            assert fixed is not None
            figures["agent_stack"] = {
                "concurrency": width,
                "rollouts": n,
                "rollouts_per_s": round(n / run["collect_wall_s"], 1),
                "ideal_rollouts_per_s": round(width / (args.latency_ms / 1000.0), 1),
                "overhead_ms_per_rollout": round(
                    1000 * max(0.0, run["cpu_s"] - fixed["cpu_s"]) / (n - 1), 4
                ),
                "latency_p50_ms": round(1000 * run["latency_p50_s"], 1),
            }
            print(f"  agent stack (simulated model): {figures['agent_stack']}", flush=True)

            # The embedded model: collector CPU next to the model's own time, seed debug tasks.
            # Gross: the whole collector process (Python start-up, imports, validation, ordered
            # write) over the model's time. Per rollout: the steady-state overhead measured at
            # one in flight against the /run server (the same code path; 10 embedded rollouts
            # are too few to tell a few ms from the start-up's noise) over the mean model time.
            run, _ = stack_run(DEBUG_TASKS, workdir, {}, 10, 1)
            per_rollout_ms = next(
                (f["overhead_ms_per_rollout"] for f in figures["levels"] if f["concurrency"] == 1),
                None,
            )
            model_ms = 1000 * run["model_s"] / run["rollouts"]
            figures["embedded"] = {
                "rollouts": run["rollouts"],
                "concurrency": 1,
                "model_s": round(run["model_s"], 3),
                "model_ms_per_rollout": round(model_ms, 1),
                "collector_cpu_s": round(run["cpu_s"], 3),
                "share_gross_pct": round(100 * run["cpu_s"] / run["model_s"], 2),
                "share_per_rollout_pct": (
                    round(100 * per_rollout_ms / model_ms, 4) if per_rollout_ms else None
                ),
            }
            print(f"  embedded: {figures['embedded']}", flush=True)

    table = markdown(figures)
    figures["command"] = " ".join(["python", "benchmarks/collector_throughput.py", *sys.argv[1:]])
    print()
    print(table)
    record("collector_throughput", figures)


if __name__ == "__main__":
    main()
