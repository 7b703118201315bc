"""Are the pipeline's verdicts and sample-size advice calibrated, and what does racing save?
Seeded synthetic sweeps through the real aggregation code (``summarize``, ``best_params``, and
for adaptive sweeps ``decide_round`` round by round, ``race_outcome`` and ``picks_after_race``).

    python benchmarks/decision_calibration.py [--sweeps 200] [--races 200] [--tasks 100]
        [--two-config-races 3000]

Each sweep has 5 configurations over the same tasks; a task's difficulty varies (success chance
uniform in 0.1-0.9), a configuration shifts it by its effect, and rewards are Bernoulli. Under
the null all effects are 0; with a gap one configuration is better by ``--gap``. Reported per
scenario: how often the verdict is ``best``, and how often ``best`` names a wrong configuration.
Then the advice: a pilot sweep with 2 repeats names the repeats that would detect the gap, and
sweeps run with that many repeats show how often the verdict is then decided.

Two null rows add task interactions: each configuration's chance on each task also moves by a
shift uniform in +-0.15 that averages to zero over its tasks (equal means, different strengths).

Adaptive sweeps (the default schedule, rounds of 1, 1, 1, 1, 1, 1, 2, 2, 2, 2 repeats) run under
the null (5 and 2 configurations), with the same single gap, and on a temperature curve (9
configurations, the best 0.10 above its two neighbours, the rest falling off by 0.10 a step);
the single gap also with a shorter schedule (1, 1, 1, 2, 2, 3), which stops at a lower power.
The 2-configuration null row runs ``--two-config-races`` races (3,000): there the race's bound is
tight (its one comparison, either way round, spends all of alpha), so its rate sits near alpha
and only many races tell it from one above. Every rate comes with its 95 % Wilson interval.
For each, uniform grids with more and more repeats find the rollouts a uniform grid needs to
decide as often as the race did: the saving is that over the race's mean rollouts.
"""

from __future__ import annotations

import argparse
import math
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
from rollsweep.analysis.race import picks_after_race, race_outcome, run_race
from rollsweep.analysis.read import ROLLOUT_COLUMNS
from rollsweep.analysis.settings import AdaptiveSettings
from rollsweep.analysis.tables import summarize

ALPHA, POWER = 0.05, 0.8
SCHEDULE = AdaptiveSettings()
CURVE = [-0.3, -0.2, -0.1, 0.0, 0.1, 0.0, -0.1, -0.2, -0.3]
UNIFORM_REPEATS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16)


def temperatures(n: int) -> list[float]:
    return [round(float(t), 3) for t in np.linspace(0.1, 0.9, n)]


def config_rollouts(temperature: float, rewards: np.ndarray) -> ConfigRollouts:
    """A configuration's rollouts from a (tasks x repeats) array of rewards."""
    tasks, repeats = rewards.shape
    frame = pl.DataFrame(
        {
            "task_index": np.repeat(np.arange(tasks), repeats),
            "rollout_index": np.tile(np.arange(repeats), tasks),
            "task_id": [f"t{t}" for t in np.repeat(np.arange(tasks), repeats)],
            "reward": rewards.ravel(),
            **{name: np.zeros(tasks * repeats) for name in ROLLOUT_COLUMNS[4:]},
        }
    )
    return ConfigRollouts({"temperature": temperature}, frame)


def chances(
    rng: np.random.Generator, tasks: int, effects: list[float], interaction: float = 0.0
) -> np.ndarray:
    """Success chance per (configuration, task): a task's difficulty shifted by the effect and,
    with ``interaction``, by a per-(configuration, task) shift uniform in +-interaction that
    averages to zero over each configuration's tasks (equal means, different tasks)."""
    difficulty = rng.uniform(0.1, 0.9, size=tasks)
    chance = difficulty[None, :] + np.asarray(effects)[:, None]
    if interaction:  # (no draw without it: the other scenarios keep their random streams)
        shift = rng.uniform(-interaction, interaction, size=(len(effects), tasks))
        chance += shift - shift.mean(axis=1, keepdims=True)
    return np.clip(chance, 0.0, 1.0)


def sweep(
    rng: np.random.Generator,
    tasks: int,
    repeats: int,
    effects: list[float],
    interaction: float = 0.0,
) -> list:
    """One synthetic uniform sweep: a ConfigRollouts per configuration."""
    chance = chances(rng, tasks, effects, interaction)
    return [
        config_rollouts(temperature, (rng.random((tasks, repeats)) < row[:, None]).astype(float))
        for temperature, row in zip(temperatures(len(effects)), chance, strict=True)
    ]


def race(
    rng: np.random.Generator,
    tasks: int,
    effects: list[float],
    seed: int,
    interaction: float = 0.0,
    schedule: AdaptiveSettings = SCHEDULE,
) -> dict:
    """One synthetic adaptive sweep, round by round through the pipeline's own decisions;
    returns its ``best_params`` (with the race)."""
    chance = chances(rng, tasks, effects, interaction)
    labels = [f"temperature~{t}" for t in temperatures(len(effects))]
    rewards = {label: np.zeros((tasks, 0)) for label in labels}

    def collect(number: int, alive: list[str]) -> dict[str, pl.DataFrame]:
        for label in alive:
            row = chance[labels.index(label)]
            repeats = schedule.round_repeats[number - 1]
            new = (rng.random((tasks, repeats)) < row[:, None]).astype(float)
            rewards[label] = np.hstack([rewards[label], new])
        return {label: config_rollouts(0.0, rewards[label]).rollouts for label in alive}

    rounds = run_race(collect, labels, settings=schedule, n_tasks=tasks, alpha=ALPHA, seed=seed)
    outcome = race_outcome(
        rounds, n_configs=len(labels), n_tasks=tasks, total_repeats=schedule.total_repeats
    )
    configs = [
        config_rollouts(t, rewards[label])
        for t, label in zip(temperatures(len(effects)), labels, strict=True)
    ]
    summary = summarize(configs, n_bootstrap=100)
    return picks_after_race(summary, configs, outcome, n_bootstrap=300, alpha=ALPHA)


def picks(configs: list, min_effect: float) -> dict:
    summary = summarize(configs, n_bootstrap=100)
    return best_params(summary, configs, n_bootstrap=300, alpha=ALPHA, min_effect=min_effect)


def wilson_interval(hits: int, trials: int, z: float = 1.96) -> list[float]:
    """The 95 % Wilson score interval of a rate: how far a measured share may be from the
    true one (a null row's rate is a measurement, ``best`` <= alpha is a claim about the truth)."""
    share = hits / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    half /= 1 + z * z / trials
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def right_config(effects: list[float]) -> str | None:
    """The truly best configuration, or None when none is better than all the others."""
    top = max(effects)
    if effects.count(top) > 1:
        return None
    return f"temperature~{temperatures(len(effects))[effects.index(top)]}"


def scenario(
    seed: int,
    sweeps: int,
    tasks: int,
    repeats: int,
    effects: list[float],
    interaction: float = 0.0,
) -> dict:
    rng = np.random.default_rng(seed)
    right = right_config(effects)
    said_best = wrong_best = 0
    for _ in range(sweeps):
        configs = sweep(rng, tasks, repeats, effects, interaction)
        result = picks(configs, min_effect=max(max(effects), 0.05))
        if result["verdict"] == "best":
            said_best += 1
            wrong_best += result["best"]["config"] != right
    return {
        "tasks": tasks,
        "repeats": repeats,
        "effects": effects,
        "interaction": interaction,
        "rollouts_per_sweep": tasks * repeats * len(effects),
        "best_rate": round(said_best / sweeps, 3),
        "best_rate_95ci": wilson_interval(said_best, sweeps),
        "wrong_best_rate": round(wrong_best / sweeps, 3),
    }


def adaptive_scenario(
    seed: int,
    races: int,
    tasks: int,
    effects: list[float],
    interaction: float = 0.0,
    schedule: AdaptiveSettings = SCHEDULE,
) -> dict:
    """Races under ``effects``; then the uniform grid that decides as often as they did."""
    rng = np.random.default_rng(seed)
    right = right_config(effects)
    said_best = wrong_best = 0
    spent, rounds = [], []
    for index in range(races):
        result = race(
            rng, tasks, effects, seed * 100_000 + index, interaction=interaction, schedule=schedule
        )
        spent.append(result["race"]["spent"])
        rounds.append(result["race"]["rounds"])
        if result["verdict"] == "best":
            said_best += 1
            wrong_best += result["best"]["config"] != right
    best_rate = said_best / races
    figures = {
        "tasks": tasks,
        "effects": effects,
        "interaction": interaction,
        "round_repeats": schedule.round_repeats,
        "races": races,
        "best_rate": round(best_rate, 3),
        "best_rate_95ci": wilson_interval(said_best, races),
        "wrong_best_rate": round(wrong_best / races, 3),
        "mean_rollouts": round(float(np.mean(spent)), 1),
        "mean_rounds": round(float(np.mean(rounds)), 2),
        "uniform_grid_of_every_round": len(effects) * tasks * schedule.total_repeats,
    }
    if right is None:
        return figures
    uniform = []
    for repeats in UNIFORM_REPEATS:
        uniform.append(scenario(seed + 1, races, tasks, repeats, effects))
        if uniform[-1]["best_rate"] >= best_rate:
            break
    figures["uniform"] = {u["repeats"]: u["best_rate"] for u in uniform}
    if uniform[-1]["best_rate"] < best_rate:
        figures["uniform_rollouts_for_same_power"] = figures["saving"] = None
        return figures
    # between the last two grid points, the repeats that reach the race's rate (linear), so
    # the uniform grid is not charged for a whole repeat it may not need
    repeats = float(uniform[-1]["repeats"])
    if len(uniform) > 1 and uniform[-1]["best_rate"] > uniform[-2]["best_rate"]:
        low, high = uniform[-2], uniform[-1]
        share = (best_rate - low["best_rate"]) / (high["best_rate"] - low["best_rate"])
        repeats = low["repeats"] + share * (high["repeats"] - low["repeats"])
    needed = len(effects) * tasks * repeats
    figures["uniform_rollouts_for_same_power"] = round(needed)
    figures["saving"] = round(needed / figures["mean_rollouts"], 2)
    return figures


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
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.10)
    parser.add_argument(
        "--two-config-races",
        type=int,
        default=3000,
        help="races of the 2-configuration null row: its bound has no slack, so it needs many "
        "to tell a rate at alpha from one above (3,000: +-0.8 %%)",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    gap = [0.0, 0.0, args.gap, 0.0, 0.0]
    results = {
        "null, 1 repeat": scenario(1, args.sweeps, args.tasks, 1, [0.0] * 5),
        "null, 5 repeats": scenario(2, args.sweeps, args.tasks, 5, [0.0] * 5),
        f"gap {args.gap}, 1 repeat": scenario(3, args.sweeps, args.tasks, 1, gap),
        f"gap {args.gap}, 5 repeats": scenario(4, args.sweeps, args.tasks, 5, gap),
        "advice": advice_check(5, args.sweeps, args.tasks, args.gap),
        "null, adaptive": adaptive_scenario(6, args.races, args.tasks, [0.0] * 5),
        "null, 2 configurations, adaptive": adaptive_scenario(
            11, args.two_config_races, args.tasks, [0.0] * 2
        ),
        # equal means, but each configuration better on some tasks and worse on others
        "null with task interactions, 5 repeats": scenario(
            9, args.sweeps, args.tasks, 5, [0.0] * 5, interaction=0.15
        ),
        "null with task interactions, adaptive": adaptive_scenario(
            10, args.races, args.tasks, [0.0] * 5, interaction=0.15
        ),
        f"gap {args.gap}, adaptive": adaptive_scenario(7, args.races, args.tasks, gap),
        f"gap {args.gap}, adaptive, rounds 1, 1, 1, 2, 2, 3": adaptive_scenario(
            7,
            args.races,
            args.tasks,
            gap,
            schedule=AdaptiveSettings(round_repeats=[1, 1, 1, 2, 2, 3]),
        ),
        "temperature curve, adaptive": adaptive_scenario(8, args.races, args.tasks, CURVE),
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
            "races": args.races,
            "seconds": round(time.perf_counter() - start, 1),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
