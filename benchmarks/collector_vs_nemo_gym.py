"""rollsweep's collector next to NeMo Gym 0.4.0's, against the same trivial ``/run`` agent.

    python benchmarks/collector_vs_nemo_gym.py                  # the full table (~10 min)
    python benchmarks/collector_vs_nemo_gym.py --rollouts 4000 --skip-slow --skip-memory

One run measures both collectors, cell by cell (each cell runs NeMo Gym's, then rollsweep's,
then rollsweep's with ``+num_workers=2``, so machine load hits all three alike):

- the agent: a minimal HTTP/1.1 ``/run`` server (this file, ``serve`` mode: raw asyncio +
  uvloop, one process) that holds each request a set latency and answers a rollout-shaped row
  (the request echoed plus reward, output, response, metrics); it counts the requests it holds
  (``GET /stats``: peak in flight). On a machine with 2+ cores it is pinned to the last core;
- a stand-in head in the same process, on its own port, answers ``GET /global_config_dict_yaml``
  (NeMo Gym's config dict: the agent at ``bench_agent.responses_api_agents.simple_agent``), so
  both collectors find the agent the same way: ``+agent_name=bench_agent
  +head_server.host=127.0.0.1 +head_server.port=P`` and ``+disable_aggregation=true``;
- each collector is a subprocess pinned to the first core (``taskset``); ``+num_workers=2`` runs
  unpinned (it is there to use both cores, the agent's included), and the agent is unpinned for
  it too, so the kernel can spread the three processes (held to its core, the agent slowed the
  worker that shared it: against the 2 s agent that worker opened ~3,100 connections/s where the
  other opened ~4,900, and the agent saw 14,300-14,600 in flight; unpinned, 15,684-16,372).
  Rollouts/s is end to end:
  rollouts / wall time from ``exec`` to exit, start-up and the final write included;
- slow agent: 2 s a rollout at 16,384 in flight (peak in flight at the agent, collector RSS);
  memory: 100,000 rollouts at 1,024 in flight (collector peak RSS, ``ru_maxrss``).

Results go to benchmarks/results/collector_vs_nemo_gym.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]
DEBUG_TASKS = ROOT / "data" / "debug_tasks.jsonl"
NG_VENV = Path(
    os.environ.get("NG_VENV", Path.home() / ".cache" / "rollsweep-ci" / "nemo-gym-0.4.0")
)
AGENT_NAME = "bench_agent"
N_TASKS = 1000
LATENCIES_MS = (0.0, 50.0)
WIDTHS = (64, 1024, 4096, 16384)
RUN_TIMEOUT_S = 1200.0


# --------------------------------------------------------------------------- agent + head


def serve(port: int, head_port: int, latency_ms: float) -> None:
    """The trivial ``/run`` agent on ``port`` and the stand-in head on ``head_port``."""
    import asyncio

    import orjson
    import yaml

    with contextlib.suppress(ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    latency_s = latency_ms / 1000.0
    stats = {"in_flight": 0, "peak_in_flight": 0, "served": 0}
    config = {
        "head_server": {"host": "127.0.0.1", "port": head_port},
        AGENT_NAME: {"responses_api_agents": {"simple_agent": {"host": "127.0.0.1", "port": port}}},
    }
    head_body = orjson.dumps(yaml.safe_dump(config, sort_keys=False))

    def rollout(body: bytes) -> bytes:
        task = orjson.loads(body)
        text = "The answer is \\boxed{63}."
        result = {
            **task,
            "reward": float(task.get("_ng_task_index", 0) % 5 < 3),
            "output": text,
            "response": answer_response(
                f"resp_{task.get('_ng_task_index')}_{task.get('_ng_rollout_index')}",
                "trivial",
                text,
            ),
        }
        return json_reply(orjson.dumps(result))

    class Protocol(RequestProtocol):
        def handle(self, head: bytes, body: bytes) -> None:
            if head.startswith(b"get /global_config_dict_yaml"):
                self.transport.write(json_reply(head_body))
            elif head.startswith(b"get /stats"):
                self.transport.write(json_reply(orjson.dumps(stats)))
                if b"reset" in head.split(b"\r\n", 1)[0]:
                    stats["peak_in_flight"] = stats["in_flight"]
            elif head.startswith(b"get "):
                self.transport.write(json_reply(b'{"status":"ok"}'))
            elif latency_s <= 0:
                stats["served"] += 1
                self.transport.write(rollout(body))
            else:
                stats["in_flight"] += 1
                stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
                loop.call_later(latency_s, self.answer, body)

        def answer(self, body: bytes) -> None:
            stats["in_flight"] -= 1
            stats["served"] += 1
            if not self.transport.is_closing():
                self.transport.write(rollout(body))

    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    servers = [
        loop.run_until_complete(
            loop.create_server(Protocol, "127.0.0.1", listen, backlog=65535, reuse_address=True)
        )
        for listen in (port, head_port)
    ]
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        for server in servers:
            server.close()
        loop.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(cores: list[int] | None) -> list[str]:
    """A ``taskset`` prefix for ``cores`` (nothing when unpinned or taskset is missing)."""
    if cores is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(map(str, cores))]


class Agent:
    """The agent + head process; ``stats()`` reads its in-flight counters."""

    def __init__(self, latency_ms: float, cores: list[int] | None) -> None:
        self.cores = cores
        self.port, self.head_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            __file__,
            "serve",
            f"--port={self.port}",
            f"--head-port={self.head_port}",
            f"--latency-ms={latency_ms}",
        ]
        self.proc = subprocess.Popen([*pin(cores), *command], stdin=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agent exited with status {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{self.head_port}/global_config_dict_yaml", timeout=1)
                httpx.get(f"{self.url}/health", timeout=1)
                return
            time.sleep(0.1)
        raise SystemExit("agent not ready")

    def pin_beside(self, collector_cores: list[int] | None) -> None:
        """Keep to its own cores beside a pinned collector; share every core with an unpinned
        one (``+num_workers``)."""
        if self.cores is None or not hasattr(os, "sched_setaffinity"):
            return
        everywhere = set(range(os.cpu_count() or 1))
        os.sched_setaffinity(self.proc.pid, everywhere if collector_cores is None else self.cores)

    def stats(self, reset: bool = False) -> dict[str, int]:
        import httpx

        return httpx.get(f"{self.url}/stats{'?reset' if reset else ''}", timeout=10).json()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- one run


def write_tasks(path: Path, n_tasks: int) -> None:
    """``n_tasks`` task rows: the seed's debug tasks cycled, with fresh ids."""
    seeds = [json.loads(line) for line in DEBUG_TASKS.read_text().splitlines() if line.strip()]
    with open(path, "w") as handle:
        for index in range(n_tasks):
            task = dict(seeds[index % len(seeds)])
            task["task_id"] = f"bench-{index:06d}"
            handle.write(json.dumps(task) + "\n")


def split(n_rollouts: int) -> tuple[int, int]:
    """(tasks, repeats) with tasks * repeats == n_rollouts."""
    if n_rollouts <= N_TASKS:
        return n_rollouts, 1
    if n_rollouts % N_TASKS:
        raise SystemExit(f"{n_rollouts} rollouts: use a multiple of {N_TASKS}")
    return N_TASKS, n_rollouts // N_TASKS


def collector_command(which: str) -> list[str]:
    if which == "nemo_gym":
        return [str(NG_VENV / "bin" / "ng_collect_rollouts"), "+upload_rollouts_to_wandb=false"]
    return [sys.executable, "-c", "from rollsweep.cli import ng_collect_rollouts as m; m()"]


def run_collector(
    which: str,
    agent: Agent,
    tasks: Path,
    workdir: Path,
    n_rollouts: int,
    width: int,
    cores: list[int] | None,
    workers: int = 1,
) -> dict[str, Any]:
    """One collection; wall time from exec to exit, peak RSS, peak in flight at the agent."""
    n_tasks, repeats = split(n_rollouts)
    output = workdir / f"{which}_{workers}_{width}_{n_rollouts}.jsonl"
    command = [
        *pin(cores),
        *collector_command(which),
        f"+agent_name={AGENT_NAME}",
        "+head_server.host=127.0.0.1",
        f"+head_server.port={agent.head_port}",
        f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={output}",
        f"+limit={n_tasks}",
        f"+num_repeats={repeats}",
        f"+num_samples_in_parallel={width}",
        "+disable_aggregation=true",
    ]
    if which == "rollsweep":
        command += ["+progress=false", "+resume=false"]
        if workers > 1:
            command.append(f"+num_workers={workers}")
    agent.pin_beside(cores)
    agent.stats(reset=True)
    served_before = agent.stats()["served"]
    log = workdir / f"{which}.log"
    started = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(
            f"{which} failed ({proc.returncode}):\n{' '.join(command)}\n{text[-3000:]}"
        )
    stats = agent.stats()
    with open(output, "rb") as handle:
        rows = sum(1 for _ in handle)
    if rows != n_rollouts:
        raise SystemExit(f"{which}: expected {n_rollouts} rows, got {rows}:\n{text[-2000:]}")
    for stale in workdir.glob(f"*{output.stem}*"):
        stale.unlink()
    # ru_maxrss of the collector: of its largest process (wait4 reaps the tree's usage).
    return {
        "rollouts": n_rollouts,
        "width": width,
        "workers": workers,
        "wall_s": round(wall, 3),
        "rollouts_per_s": round(n_rollouts / wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "cpu_ms_per_rollout": round(1000 * (usage.ru_utime + usage.ru_stime) / n_rollouts, 4),
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "peak_in_flight": stats["peak_in_flight"],
        "served": stats["served"] - served_before,
        "pinned": cores,
        "command": " ".join(command),
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- main


def print_ceiling(cell: dict[str, Any]) -> None:
    """How near each collector came to the cell's ceiling, and its ``ceiling_ratio``: the
    best ratio to NeMo Gym that any collector could have had in this run."""
    ceiling, base = cell["ceiling_per_s"], cell["nemo_gym"]["rollouts_per_s"]
    ours = cell["rollsweep"]["rollouts_per_s"]
    print(
        f"  ceiling {cell['width']} / {cell['latency_ms']:.0f} ms = {ceiling:,.0f}/s: "
        f"rollsweep at {ours / ceiling:.0%}, NeMo Gym at {base / ceiling:.0%}; "
        f"the best possible ratio against this NeMo Gym run: {cell['ceiling_ratio']:.2f}",
        flush=True,
    )


def markdown(cells: list[dict[str, Any]], workers: int) -> str:
    multi_columns = f" rollsweep, {workers} workers | ratio |" if workers > 1 else ""
    lines = [
        f"| agent latency | in flight | NeMo Gym 0.4.0 | rollsweep | ratio |{multi_columns}",
        "|---:|---:|---:|---:|---:|" + ("---:|---:|" if workers > 1 else ""),
    ]
    for cell in cells:
        ng, ours = cell["nemo_gym"], cell["rollsweep"]
        multi = cell.get("rollsweep_workers")
        lines.append(
            f"| {cell['latency_ms']:.0f} ms | {cell['width']:,} | {ng['rollouts_per_s']:,.0f} | "
            f"{ours['rollouts_per_s']:,.0f} | {cell['ratio']:.2f} |"
            + (f" {multi['rollouts_per_s']:,.0f} | {cell['ratio_workers']:.2f} |" if multi else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode")
    server = commands.add_parser("serve", help="(internal) the agent and the stand-in head")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--head-port", type=int, required=True)
    server.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rollouts", type=int, default=20000, help="rollouts per cell")
    parser.add_argument("--latencies", type=float, nargs="*", default=list(LATENCIES_MS))
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--workers", type=int, default=2, help="rollsweep's +num_workers (0: no)")
    parser.add_argument("--skip-nemo-gym", action="store_true")
    parser.add_argument("--skip-slow", action="store_true", help="no 2 s agent check")
    parser.add_argument("--skip-memory", action="store_true", help="no 100,000-rollout check")
    parser.add_argument("--no-record", action="store_true", help="do not write results/")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port, args.head_port, args.latency_ms)
        return
    if not args.skip_nemo_gym and not (NG_VENV / "bin" / "ng_collect_rollouts").exists():
        sys.exit(f"NeMo Gym's collector is not at {NG_VENV}/bin (set NG_VENV)")
    from _common import record

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cpus = os.cpu_count() or 1
    collector_cores = [0] if cpus >= 2 else None
    agent_cores = [cpus - 1] if cpus >= 2 else None
    figures: dict[str, Any] = {
        "rollouts_per_cell": args.rollouts,
        "collector_cores": collector_cores,
        "agent_cores": agent_cores,
        "load_before": load(),
    }
    print(f"load average before: {figures['load_before']}", flush=True)
    cells: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rollsweep-vs-ng-") as tmp:
        workdir = Path(tmp)
        tasks = workdir / "tasks.jsonl"
        write_tasks(tasks, N_TASKS)
        for latency in args.latencies:
            agent = Agent(latency, agent_cores)
            try:
                for width in args.widths:
                    cell: dict[str, Any] = {"latency_ms": latency, "width": width}
                    if latency > 0:  # no collector passes width / latency rollouts a second
                        cell["ceiling_per_s"] = round(width / (latency / 1000.0), 1)
                    runs = [("rollsweep", collector_cores, 1)]
                    if not args.skip_nemo_gym:
                        runs.insert(0, ("nemo_gym", collector_cores, 1))
                    if args.workers > 1:
                        runs.append(("rollsweep", None, args.workers))
                    for which, cores, workers in runs:
                        run = run_collector(
                            which, agent, tasks, workdir, args.rollouts, width, cores, workers
                        )
                        key = which if workers == 1 else "rollsweep_workers"
                        cell[key] = run
                        print(
                            f"  {latency:>4.0f} ms {width:>6} in flight  {key:<18} "
                            f"{run['rollouts_per_s']:>7.0f}/s  wall {run['wall_s']:6.2f} s  "
                            f"CPU {run['cpu_ms_per_rollout']:.3f} ms/rollout  "
                            f"RSS {run['peak_rss_mb']:.0f} MB  "
                            f"peak in flight {run['peak_in_flight']}  (load {load()})",
                            flush=True,
                        )
                    if "nemo_gym" in cell:
                        base = cell["nemo_gym"]["rollouts_per_s"]
                        cell["ratio"] = round(cell["rollsweep"]["rollouts_per_s"] / base, 2)
                        if "ceiling_per_s" in cell:
                            cell["ceiling_ratio"] = round(cell["ceiling_per_s"] / base, 2)
                            if cell["ceiling_ratio"] < 2:  # the ceiling caps the ratio here
                                print_ceiling(cell)
                        if "rollsweep_workers" in cell:
                            multi = cell["rollsweep_workers"]["rollouts_per_s"]
                            cell["ratio_workers"] = round(multi / base, 2)
                    cells.append(cell)
            finally:
                agent.stop()
        figures["cells"] = cells

        if not args.skip_slow:
            # Little's law: 15,000 in flight at 2 s a rollout takes 7,500 rollouts/s, so the
            # peak is reached while the window fills (no answer yet to process).
            # A fresh agent (a new port) for each run: the last run's 16,384 connections to the
            # same port sit in TIME_WAIT for a minute, and a connect to that port then costs the
            # kernel more to find a free local port (measured: two workers 14,836 right after
            # the one-process run, 15,684-16,372 against a new agent).
            figures["slow_agent"] = {}
            width = 16384
            variants = [("one_process", collector_cores, 1)]
            if args.workers > 1:
                variants.append((f"{args.workers}_workers", None, args.workers))
            for name, cores, workers in variants:
                agent = Agent(2000.0, agent_cores)
                try:
                    run = run_collector(
                        "rollsweep", agent, tasks, workdir, 33000, width, cores, workers
                    )
                finally:
                    agent.stop()
                figures["slow_agent"][name] = {"latency_ms": 2000.0, **run}
                print(
                    f"  slow agent (2 s), {width} in flight, {name}: peak in flight "
                    f"{run['peak_in_flight']} (target >= 15,000), peak RSS "
                    f"{run['peak_rss_mb']} MB, {run['rollouts_per_s']:.0f}/s",
                    flush=True,
                )
        if not args.skip_memory:
            agent = Agent(50.0, agent_cores)
            try:
                run = run_collector(
                    "rollsweep", agent, tasks, workdir, 100000, 1024, collector_cores
                )
            finally:
                agent.stop()
            figures["memory"] = run
            print(
                f"  100,000 rollouts at 1,024 in flight: peak RSS {run['peak_rss_mb']} MB "
                f"(target < 150), {run['rollouts_per_s']:.0f}/s",
                flush=True,
            )
    figures["load_after"] = load()
    if cells and "ratio" in cells[0]:
        table = markdown(cells, args.workers)
        figures["table"] = table
        print()
        print(table)
    figures["command"] = " ".join(["python", "benchmarks/collector_vs_nemo_gym.py", *sys.argv[1:]])
    if not args.no_record:
        record("collector_vs_nemo_gym", figures)


if __name__ == "__main__":
    main()
