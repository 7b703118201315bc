"""How long `snakemake -n` takes on a big sweep, and where the time goes.

    python benchmarks/dry_run_scale.py [--runs 3] [--baseline-rev REV] [--profile]

Two workflows, each dry-run ``--runs`` times (median wall and CPU seconds):

- ``grid``: the 1,000-point grid of benchmarks/aggregate_scale.py (10 x 10 x 10 values, one
  shard per configuration: 2,003 jobs);
- ``sharded``: a 125-point grid whose configurations are collected as 2 repeat shards x 4 task
  chunks of a 10,000-task file (planning them counts the file's tasks: 1,128 jobs).

With ``--baseline-rev`` the workflow of that git revision (its Snakefile, rules, scripts and
src, from ``git archive``) runs too, alternating with this tree's, so both see the same machine
load; the two plans (every job's rule, files, wildcards and shell command) must be identical.
``--profile`` runs each tree once more under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, record

REPO = Path(__file__).resolve().parents[1]
TASK = '{"responses_create_params": {"input": "1+1?"}, "expected_answer": "2"}\n'


def grid(size: int) -> dict[str, list]:
    """Three swept sampling parameters, ``size`` values each (aggregate_scale.py's grid)."""
    return {
        "responses_create_params.temperature": [round(0.1 + i / size, 4) for i in range(size)],
        "responses_create_params.top_p": [round(0.5 + i * 0.5 / size, 4) for i in range(size)],
        "responses_create_params.max_output_tokens": [32 + 8 * i for i in range(size)],
    }


def write_workflows(workdir: Path, size: int) -> dict[str, Path]:
    """Name -> config file of each benchmarked workflow."""
    few, many = workdir / "tasks.jsonl", workdir / "many_tasks.jsonl"
    few.write_text(TASK * 10)
    many.write_text(TASK * 10_000)
    experiments = {
        "grid": {"big": {"input": str(few), "grid": grid(size)}},
        "sharded": {
            "chunked": {
                "input": str(many),
                "num_repeats": 2,
                "tasks_per_chunk": 2_500,
                "grid": grid(max(size // 2, 1)),
            }
        },
    }
    configs = {}
    for name, experiment in experiments.items():
        config = {
            "stack_config": [str(REPO / "config" / "servers.yaml")],
            "experiments": experiment,
        }
        (workdir / name).mkdir()
        configs[name] = workdir / name / "config.yaml"
        configs[name].write_text(yaml.safe_dump(config))
    return configs


def extract(rev: str, into: Path) -> Path:
    """The workflow of a git revision (what a dry run reads), unpacked into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "Snakefile", "rules", "scripts", "src", "config"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def snakemake(tree: Path, config: Path, *args: str, prefix: tuple[str, ...] = ()) -> tuple:
    """Run a dry run of ``tree``'s workflow: (wall s, CPU s, stdout)."""
    command = [sys.executable, *prefix, "-m", "snakemake", "-n", "-s", str(tree / "Snakefile")]
    command += ["--directory", str(config.parent), "--configfile", str(config), *args]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"snakemake -n failed ({tree}):\n{done.stderr[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout


def job_count(stdout: str) -> int:
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            return int(parts[1])
    return 0


def sorted_reason(line: str) -> str:
    """A job's reason line with its file lists sorted (Snakemake prints them from sets)."""
    head, sep, reasons = line.partition("reason: ")
    if not sep:
        return line
    parts = []
    for reason in reasons.split("; "):
        kind, sep, files = reason.partition(": ")
        parts.append(kind + sep + ", ".join(sorted(files.split(", "))) if sep else reason)
    return head + sep + "; ".join(parts)


def plan(tree: Path, config: Path) -> list[str]:
    """Every planned job (rule, files, wildcards, resources, shell command), sorted; without
    what differs between two runs of the same plan (job ids, dates, the Snakefile's path)."""
    _, _, stdout = snakemake(tree, config, "--printshellcmds")
    text = stdout.replace(str(tree), "TREE").replace(str(REPO), "TREE")
    blocks = re.split(r"\n\s*\n", text.split("Building DAG of jobs...", 1)[-1])
    varying = re.compile(r"^\s*(jobid|\[.*\d\d:\d\d:\d\d \d{4}\]|Job stats|This was a dry-run)")
    jobs = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip() and not varying.match(line)]
        lines = [sorted_reason(line) for line in lines]
        if any(line.startswith(("rule ", "localrule ")) for line in lines):
            jobs.append("\n".join(lines))
    return sorted(jobs)


#: Frames that only wrap the real work (interpreter, asyncio, module bodies): not in the top list.
WRAPPERS = re.compile(
    r"runpy|asyncio|importlib|<frozen|<string>|<module>|builtins\.(exec|__import__)"
)


def profile(tree: Path, config: Path, out: Path, top: int) -> dict:
    """cProfile one dry run: total, the time inside our code (loading the Snakefile and rules,
    their input and params functions, rollsweep) and the top entries by cumulative time."""
    snakemake(tree, config, "--quiet", "rules", prefix=("-m", "cProfile", "-o", str(out)))
    stats = pstats.Stats(str(out))
    ours = (str(tree / "rules"), str(tree / "Snakefile"), str(tree / "src" / "rollsweep"))

    def is_ours(func: tuple) -> bool:
        return func[0].startswith(ours)

    def label(func: tuple) -> str:
        path, line, name = func
        if path == "~":
            return name
        path = path.replace(str(tree) + "/", "").split("site-packages/")[-1]
        return f"{path}:{line}({name})"

    entries = stats.stats  # func -> (primitive calls, calls, own s, cumulative s, callers)
    # loading the workflow: the Snakefile's body (our imports, the config's validation, rules)
    load_s = sum(entry[3] for func, entry in entries.items() if func[0] == ours[1])
    # planning: our functions that Snakemake calls (input, params and target functions)
    functions_s = sum(
        cumulative
        for func, (_, _, _, cumulative, callers) in entries.items()
        if is_ours(func)
        and func[2] != "<module>"
        and not any(is_ours(caller) for caller in callers)
    )
    ranked = sorted(entries.items(), key=lambda item: item[1][3], reverse=True)
    rows = [
        {"function": label(func), "calls": calls, "cumulative_s": round(cumulative, 2)}
        for func, (_, calls, _, cumulative, _) in ranked
        if not WRAPPERS.search(label(func))
    ][:top]
    by_own = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    own_rows = [
        {"function": label(func), "calls": calls, "own_s": round(own, 2)}
        for func, (_, calls, own, _, _) in by_own
    ]
    return {
        "total_s": round(stats.total_tt, 2),
        "snakefile_load_s": round(load_s, 2),
        "our_functions_s": round(functions_s, 2),
        "top": rows,
        "top_own": own_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=10, help="values per dimension (3 dims)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-rev", help="also time this git revision's workflow")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=15, help="profile entries to print")
    args = parser.parse_args()

    # wall time depends on what else runs (2 shared cores): CPU seconds and the load go with it
    figures: dict = {"grid_points": args.grid**3, "runs": args.runs, "load_before": os.getloadavg()}
    previous = RESULTS / "aggregate_scale.json"
    if previous.exists():
        earlier = yaml.safe_load(previous.read_text())
        figures["recorded_before"] = {
            "source": "benchmarks/results/aggregate_scale.json",
            "date": earlier.get("date"),
            "dry_run_s": earlier.get("dry_run_s"),
        }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        configs = write_workflows(workdir, args.grid)
        trees = {"this tree": REPO}
        if args.baseline_rev:
            trees[f"baseline {args.baseline_rev}"] = extract(args.baseline_rev, workdir / "base")
            figures["baseline_rev"] = args.baseline_rev
        for name, config in configs.items():
            times: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
            jobs = {}
            for _ in range(args.runs):
                for tree, path in trees.items():  # alternating: both see the same load
                    wall, cpu, stdout = snakemake(path, config, "--quiet", "rules")
                    times[tree].append((wall, cpu))
                    jobs[tree] = job_count(stdout)
            result: dict = {}
            for tree, runs in times.items():
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                key = "now" if tree == "this tree" else "baseline"
                result[key] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "jobs": jobs[tree]}
                print(
                    f"{name}: {tree}: {jobs[tree]} jobs, median {wall:.2f} s wall, {cpu:.2f} s CPU"
                )
            if args.baseline_rev:
                same = plan(REPO, config) == plan(trees[f"baseline {args.baseline_rev}"], config)
                result["same_plan_as_baseline"] = same
                print(f"{name}: same jobs, files and commands as the baseline: {same}")
            if args.profile:
                for tree, path in trees.items():
                    key = "now" if tree == "this tree" else "baseline"
                    found = profile(path, config, workdir / f"{name}-{key}.prof", args.top)
                    result[key]["profile"] = found
                    print(
                        f"\n{name}: {tree} under cProfile: {found['total_s']} s; loading the "
                        f"Snakefile {found['snakefile_load_s']} s, in our functions "
                        f"{found['our_functions_s']} s; top by cumulative time:"
                    )
                    for row in found["top"]:
                        print(f"  {row['cumulative_s']:7.2f} s {row['calls']:>8} {row['function']}")
                    print("  top by own time:")
                    for row in found["top_own"]:
                        print(f"  {row['own_s']:7.2f} s {row['calls']:>8} {row['function']}")
            figures[name] = result
    figures["load_after"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): {figures['load_before']} before, {os.getloadavg()} after")
    record("dry_run_scale", figures)


if __name__ == "__main__":
    main()
