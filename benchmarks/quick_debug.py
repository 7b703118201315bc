"""The seed's quick debug, verbatim, on the embedded model: wall time including server start.

    python benchmarks/quick_debug.py [--runs 3]

Target (issue 3): under 30 s on 2 cores, aim under 10 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

SEED_COMMAND = [
    "ng_collect_rollouts",
    "+agent_name=my_agent",
    "+input_jsonl_fpath=debug_tasks.jsonl",
    "+output_jsonl_fpath=/tmp/debug_rollouts.jsonl",
    "+limit=5",
    "+num_samples_in_parallel=1",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ng_collect_rollouts") is None:
        sys.exit("ng_collect_rollouts is not on PATH: pip install -e . first")
    walls, model_seconds = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for run in range(args.runs):
            started = time.perf_counter()
            subprocess.run(SEED_COMMAND, cwd=workdir, check=True, capture_output=True)
            wall = time.perf_counter() - started
            rows = [
                json.loads(line)
                for line in Path("/tmp/debug_rollouts.jsonl").read_text().splitlines()
            ]
            model = sum(row["metrics"]["model_latency_s"] for row in rows)
            walls.append(wall)
            model_seconds.append(model)
            print(f"run {run + 1}: {wall:.2f} s wall, {model:.2f} s in the model, {len(rows)} rows")
    median = statistics.median(walls)
    print(f"median wall time {median:.2f} s (target < 30 s, aim < 10 s)")
    record(
        "quick_debug",
        {
            "command": " ".join(SEED_COMMAND),
            "wall_s": [round(w, 3) for w in walls],
            "median_wall_s": round(median, 3),
            "model_s": [round(m, 3) for m in model_seconds],
            "startup_and_overhead_s": round(median - statistics.median(model_seconds), 3),
        },
    )


if __name__ == "__main__":
    main()
