"""Adaptive sweeps: rounds of repeats that go only to the configurations still in the race.

Round 1 collects ``round_repeats[0]`` repeats of every task for every configuration. After each
round the configuration with the highest metric so far (the leader) is compared with every other
one still in the race, paired on tasks with the sign-flip test the picks use
(``statistics.sign_flip_test``), one-sided: is the leader better? A configuration the leader
beats at the round's level drops out and collects no more. The race stops when one
configuration is left (verdict ``best``), after the last pre-registered round, or when the next
round would pass the rollout budget (``tie`` among those left).

Why the verdict stays valid although the data decide what is collected next: a configuration j
drops only when, at some round, the one-sided test of the leader i of that round against j
rejects. While i and j are both in the race they have collected the same fixed repeats of every
task, so the sequence of that test's statistics over the rounds is the one a fixed
group-sequential design would see, and a constant (Pocock-type) boundary for the pre-registered
schedule holds it, over all its looks, to a crossing chance of ``alpha / K`` when i is not
better than j. So (a union bound over the K - 1 possible i) a truly best configuration drops
with chance at most ``(K - 1) / K * alpha``: a wrong ``best``, or a best configuration missing
from the set still in the race, is at most that rare. Under the null every configuration is a
best one and a ``best`` verdict needs K - 1 drops; the expected number of drops is at most
``(K - 1) * alpha``, so (Markov's inequality) K - 1 of them happen with chance at most
``alpha``. (A first version spent ``alpha / (K - 1)`` per comparison: two equal configurations
were then called ``best`` in 23 of 300 null races of tests/test_race.py, each direction of
their one pair spending the whole alpha.) The argument takes each look's test as exact;
with two configurations it has no slack: 3,000 null races of two equal configurations over ten
rounds (benchmarks/decision_calibration.py) said ``best`` in 3.9 % (95 % interval 3.3-4.7 %).

The boundary (``race_level``): the nominal one-sided level at which each look stops, such that
a standardized random walk observed after each round's cumulative repeats crosses it with
probability ``alpha / K`` (Pocock, "Group sequential methods in the design and analysis
of clinical trials", Biometrika 1977; unequal looks as in Jennison & Turnbull, "Group
Sequential Methods with Applications to Clinical Trials", 2000, ch. 2-3; racing as in Maron &
Moore, "Hoeffding races", NIPS 1993). Under the null of equal configurations the per-task
differences have a variance that shrinks as 1/repeats, so the information grows with the
cumulative repeats; per-task interactions that do not shrink make the looks more correlated,
which only lowers the true error. The per-look guarantee is the sign-flip test's own: exact for
per-task differences symmetric about zero, approximate (over the tasks) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from rollsweep.analysis.configs import ConfigRollouts
from rollsweep.analysis.picks import best_params, task_values
from rollsweep.analysis.settings import RACE_METRICS, AdaptiveSettings
from rollsweep.analysis.statistics import sign_flip_test

METHOD = (
    "racing: after each round the leader is compared with each other configuration in the race "
    "(one-sided paired sign-flip test over tasks) at a constant Pocock-type level for the "
    "pre-registered rounds that holds each comparison to alpha / configurations; beaten "
    "configurations drop out"
)
#: Monte Carlo resamples per unit of 1 / level, so a p-value can fall well below the level.
RESAMPLES_PER_LEVEL = 20
#: Random walks that place the boundary (its crossing probability within about 2 %).
BOUNDARY_PATHS = 400_000


@lru_cache(maxsize=64)
def race_level(alpha: float, n_configs: int, round_repeats: tuple[int, ...]) -> float:
    """The one-sided level of each test of each round of a race with this schedule.

    A constant boundary c on the standardized statistic after each round's cumulative repeats,
    crossed at some round with probability ``alpha / n_configs`` by a random walk (the null);
    the level is the normal tail beyond c. One round: that share of alpha itself.
    """
    share = alpha / max(n_configs, 1)
    if len(round_repeats) == 1:
        return share
    rng = np.random.default_rng(0)  # fixed: the same schedule always gets the same boundary
    steps = rng.standard_normal((BOUNDARY_PATHS, len(round_repeats)))
    steps *= np.sqrt(np.asarray(round_repeats, dtype=np.float64))
    information = np.cumsum(round_repeats, dtype=np.float64)
    peaks = (np.cumsum(steps, axis=1) / np.sqrt(information)).max(axis=1)
    boundary = float(np.quantile(peaks, 1 - share))
    return 0.5 * math.erfc(boundary / math.sqrt(2))


def decide_round(
    round_number: int,
    rollouts: Mapping[str, pl.DataFrame],
    *,
    settings: AdaptiveSettings,
    alpha: float,
    n_configs: int,
    n_tasks: int,
    previous: Mapping[str, Any] | None = None,
    metric: str = "mean",
    success_threshold: float = 1.0,
    seed: int = 0,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """The outcome of one round: who stays in the race, who drops, and whether it stops.

    ``rollouts``: label -> every rollout so far (task_index, rollout_index, reward) of each
    configuration in this round, in the grid's order; ``previous``: the round before's outcome
    (None for round 1). Returns a JSON-able dict (one ``race/round-N.json`` of the pipeline).
    """
    if metric not in RACE_METRICS:
        raise ValueError(f"an adaptive sweep ranks by {' or '.join(RACE_METRICS)}, not {metric}")
    rounds = len(settings.round_repeats)
    if not 1 <= round_number <= rounds:
        raise ValueError(f"round {round_number} of a race of {rounds} rounds")
    level = race_level(alpha, n_configs, tuple(settings.round_repeats))
    values = {
        label: task_values(frame, metric, success_threshold) for label, frame in rollouts.items()
    }
    means = {label: _mean(frame) for label, frame in values.items()}
    ranked = sorted(means, key=lambda label: -math.inf if means[label] is None else -means[label])
    leader = ranked[0]
    resamples = max(n_resamples, math.ceil(RESAMPLES_PER_LEVEL / level))
    comparisons = [
        _compare(values[leader], values[label], label, level, resamples, seed + round_number)
        for label in ranked[1:]
    ]
    dropped = [c["config"] for c in comparisons if c["dropped"]]
    alive = [label for label in rollouts if label not in dropped]
    so_far = {label: frame.height for label, frame in rollouts.items()}
    before = previous["rollouts_so_far"] if previous else {}
    added = {label: count - before.get(label, 0) for label, count in so_far.items()}
    spent = (previous["spent"] if previous else 0) + sum(added.values())
    reason = None
    if len(alive) == 1:
        reason = "decided"
    elif round_number == rounds:
        reason = "last round"
    elif settings.budget is not None:
        next_round = len(alive) * n_tasks * settings.round_repeats[round_number]
        if spent + next_round > settings.budget:
            reason = "budget"
    start = settings.round_starts()[round_number - 1]
    return {
        "round": round_number,
        "rounds_planned": rounds,
        "repeats": [start, start + settings.round_repeats[round_number - 1]],
        "metric": metric,
        "alpha": alpha,
        "level": level,
        "in_race": list(rollouts),
        "rollouts": added,
        "rollouts_so_far": so_far,
        "leader": leader,
        "values": means,
        "comparisons": comparisons,
        "dropped": dropped,
        "alive": alive,
        "spent": spent,
        "stop": reason is not None,
        "reason": reason,
    }


def run_race(
    collect: Callable[[int, list[str]], Mapping[str, pl.DataFrame]],
    labels: Sequence[str],
    *,
    settings: AdaptiveSettings,
    n_tasks: int,
    alpha: float,
    **decide_settings: Any,
) -> list[dict[str, Any]]:
    """A whole race in one process (the pipeline runs each round as a checkpoint instead).

    ``collect(round_number, alive)`` collects that round's repeats for the configurations still
    in the race and returns every rollout so far of each (label -> frame). Returns each round's
    outcome, the last one stopped; ``decide_settings`` go to ``decide_round``.
    """
    rounds: list[dict[str, Any]] = []
    alive = list(labels)
    for number in range(1, len(settings.round_repeats) + 1):
        state = decide_round(
            number,
            collect(number, alive),
            settings=settings,
            alpha=alpha,
            n_configs=len(labels),
            n_tasks=n_tasks,
            previous=rounds[-1] if rounds else None,
            **decide_settings,
        )
        rounds.append(state)
        if state["stop"]:
            break
        alive = state["alive"]
    return rounds


def _mean(values: pl.DataFrame) -> float | None:
    return float(values.get_column("value").mean()) if values.height else None  # type: ignore[arg-type]


def _compare(
    leader: pl.DataFrame,
    other: pl.DataFrame,
    label: str,
    level: float,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    paired = leader.join(other, on="task_index", how="inner", suffix="_other")
    differences = (paired.get_column("value") - paired.get_column("value_other")).to_numpy()
    if not differences.size:
        return {"config": label, "estimate": None, "p_one_sided": 1.0, "dropped": False}
    estimate = float(differences.mean())
    # the sign-flip distribution is symmetric: the leader's side holds half the two-sided p
    p_value = sign_flip_test(differences, n_resamples=resamples, seed=seed) / 2
    if estimate <= 0:
        p_value = 1 - p_value
    return {
        "config": label,
        "estimate": estimate,
        "p_one_sided": p_value,
        "dropped": bool(estimate > 0 and p_value <= level),
    }


def race_outcome(
    rounds: Sequence[Mapping[str, Any]], *, n_configs: int, n_tasks: int, total_repeats: int
) -> dict[str, Any]:
    """What a finished race says: the verdict, the configurations left, rollouts spent per
    round, and what the uniform grid with every round's repeats (``total_repeats``) would cost."""
    if not rounds or not rounds[-1]["stop"]:
        raise ValueError("the race has not finished")
    last = rounds[-1]
    return {
        "method": METHOD,
        "alpha": last["alpha"],
        "level": last["level"],
        "rounds": len(rounds),
        "rounds_planned": last["rounds_planned"],
        "verdict": "best" if len(last["alive"]) == 1 else "tie",
        "reason": last["reason"],
        "winner": last["leader"],
        "alive": last["alive"],
        "spent": last["spent"],
        "uniform_rollouts": n_configs * n_tasks * total_repeats,
        "per_round": [
            {
                "round": state["round"],
                "repeats": state["repeats"],
                "rollouts": state["rollouts"],
                "dropped": state["dropped"],
            }
            for state in rounds
        ],
    }


def rollouts_per_round(rounds: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """One row per (round, configuration in it): the rollouts that round added (for the plot
    of where an adaptive sweep spent its rollouts)."""
    rows = [
        {"round": state["round"], "config": label, "rollouts": count}
        for state in rounds
        for label, count in state["rollouts"].items()
    ]
    schema = {"round": pl.Int64, "config": pl.String, "rollouts": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def picks_after_race(
    summary: pl.DataFrame,
    configs: Sequence[ConfigRollouts],
    outcome: Mapping[str, Any],
    **pick_settings: Any,
) -> dict[str, Any]:
    """``best_params`` for an adaptive experiment: the pick among the configurations the race
    left, with the race's verdict (the fixed-sample comparisons of ``best_params`` would not be
    valid after data-dependent stopping, so they stay descriptive) and the race itself."""
    alive = set(outcome["alive"])
    keep = [i for i, label in enumerate(summary.get_column("config")) if label in alive]
    picks = best_params(summary[keep], [configs[i] for i in keep], **pick_settings)
    best = picks["best"]["config"] if picks["best"] else None
    picks.update(
        n_configs=summary.height,
        verdict=outcome["verdict"],
        indistinguishable_from_best=[label for label in outcome["alive"] if label != best],
        race=dict(outcome),
    )
    return picks
