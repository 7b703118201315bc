"""Are the pipeline's verdicts and sample-size advice calibrated? Seeded synthetic sweeps through
the real aggregation code (``summarize`` and ``best_params``).

    python benchmarks/decision_calibration.py [--sweeps 200] [--tasks 100]

Each sweep has 5 configurations over the same tasks; a task's difficulty varies (success chance
uniform in 0.1-0.9), a configuration shifts it by its effect, and rewards are Bernoulli. Under
the null all effects are 0; with a gap one configuration is better by ``--gap``. Reported per
scenario: how often the verdict is ``best``, and how often ``best`` names a wrong configuration.
Then the advice: a pilot sweep with 2 repeats names the repeats that would detect the gap, and
sweeps run with that many repeats show how often the verdict is then decided.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from rollsweep.analysis.configs import ConfigRollouts
from rollsweep.analysis.picks import best_params
from rollsweep.analysis.read import ROLLOUT_COLUMNS
from rollsweep.analysis.tables import summarize

TEMPERATURES = (0.1, 0.3, 0.5, 0.7, 0.9)
ALPHA, POWER = 0.05, 0.8


def sweep(rng: np.random.Generator, tasks: int, repeats: int, effects: list[float]) -> list:
    """One synthetic sweep: a ConfigRollouts per configuration."""
    difficulty = rng.uniform(0.1, 0.9, size=tasks)
    configs = []
    for temperature, effect in zip(TEMPERATURES, effects, strict=True):
        chance = np.clip(difficulty + effect, 0.0, 1.0)
        rewards = (rng.random((tasks, repeats)) < chance[:, None]).astype(float)
        frame = pl.DataFrame(
            {
                "task_index": np.repeat(np.arange(tasks), repeats),
                "rollout_index": np.tile(np.arange(repeats), tasks),
                "task_id": [f"t{t}" for t in np.repeat(np.arange(tasks), repeats)],
                "reward": rewards.ravel(),
                **{name: np.zeros(tasks * repeats) for name in ROLLOUT_COLUMNS[4:]},
            }
        )
        configs.append(ConfigRollouts({"temperature": temperature}, frame))
    return configs


def picks(configs: list, min_effect: float) -> dict:
    summary = summarize(configs, n_bootstrap=100)
    return best_params(summary, configs, n_bootstrap=300, alpha=ALPHA, min_effect=min_effect)


def scenario(seed: int, sweeps: int, tasks: int, repeats: int, effects: list[float]) -> dict:
    rng = np.random.default_rng(seed)
    right = f"temperature~{TEMPERATURES[int(np.argmax(effects))]}" if max(effects) > 0 else None
    said_best = wrong_best = 0
    for _ in range(sweeps):
        result = picks(sweep(rng, tasks, repeats, effects), min_effect=max(max(effects), 0.05))
        if result["verdict"] == "best":
            said_best += 1
            wrong_best += result["best"]["config"] != right
    return {
        "tasks": tasks,
        "repeats": repeats,
        "effects": effects,
        "rollouts_per_sweep": tasks * repeats * len(effects),
        "best_rate": round(said_best / sweeps, 3),
        "wrong_best_rate": round(wrong_best / sweeps, 3),
    }


def advice_check(seed: int, sweeps: int, tasks: int, gap: float) -> dict:
    """Pilot sweeps with 2 repeats advise a number of repeats; run that many and count."""
    rng = np.random.default_rng(seed)
    effects = [0.0, 0.0, gap, 0.0, 0.0]
    advised = []
    for _ in range(20):
        power = picks(sweep(rng, tasks, 2, effects), min_effect=gap)["power"]
        if power["repeats_needed"] is not None:
            advised.append(power["repeats_needed"])
    repeats = int(statistics.median(advised)) if advised else 2
    checked = scenario(seed + 1, sweeps, tasks, repeats, effects)
    return {"pilot_advice_repeats": advised, "repeats_run": repeats, "promised": POWER, **checked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.10)
    args = parser.parse_args()
    start = time.perf_counter()
    gap = [0.0, 0.0, args.gap, 0.0, 0.0]
    results = {
        "null, 1 repeat": scenario(1, args.sweeps, args.tasks, 1, [0.0] * 5),
        "null, 5 repeats": scenario(2, args.sweeps, args.tasks, 5, [0.0] * 5),
        f"gap {args.gap}, 1 repeat": scenario(3, args.sweeps, args.tasks, 1, gap),
        f"gap {args.gap}, 5 repeats": scenario(4, args.sweeps, args.tasks, 5, gap),
        "advice": advice_check(5, args.sweeps, args.tasks, args.gap),
    }
    for name, figures in results.items():
        print(f"{name}: {figures}", flush=True)
    record(
        "decision_calibration",
        {
            "command": " ".join(sys.argv),
            "alpha": ALPHA,
            "power": POWER,
            "sweeps": args.sweeps,
            "seconds": round(time.perf_counter() - start, 1),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
