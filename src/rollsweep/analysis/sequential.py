"""Confidence sequences: intervals for a mean that stay valid however often they are looked at
and whenever collection stops, so an adaptive sweep may drop configurations and stop early.

The bound is the predictable plug-in empirical-Bernstein confidence sequence of Waudby-Smith &
Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86(1), 2024,
Theorem 2 (there written for observations in [0, 1]; here rescaled from any known range). With
probability at least 1 - alpha, every interval of the sequence holds the running average of the
observations' conditional means — for a sweep's paired differences taken a whole round of tasks
at a time, the mean difference over the task set. The running intersection is returned, which
keeps that guarantee. (The library of its authors' group, confseq 0.0.11, does not build here.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The largest bet, as in the paper's experiments: a cap below 1 keeps log(1 - lambda) finite.
BET_CAP = 0.5


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes(self, value: float) -> bool:
        return value < self.low or value > self.high


def confidence_sequence(
    observations: np.ndarray, *, alpha: float, low: float = 0.0, high: float = 1.0
) -> list[Interval]:
    """The confidence sequence after each observation (values in [low, high]), intersected
    with all earlier ones; the last interval is the one to act on."""
    span = high - low
    x = (np.asarray(observations, dtype=np.float64) - low) / span
    if x.size and (x.min() < -1e-12 or x.max() > 1 + 1e-12):
        raise ValueError(f"observations must lie in [{low}, {high}]")
    t = np.arange(1, x.size + 1)
    # predictable estimates: each step uses only the observations before it
    mean_after = (0.5 + np.cumsum(x)) / (t + 1)
    mean_before = np.concatenate(([0.5], mean_after[:-1]))
    variance_after = (0.25 + np.cumsum((x - mean_after) ** 2)) / (t + 1)
    variance_before = np.concatenate(([0.25], variance_after[:-1]))
    log_term = math.log(2 / alpha)
    bets = np.minimum(np.sqrt(2 * log_term / (variance_before * t * np.log1p(t))), BET_CAP)
    psi = (-np.log1p(-bets) - bets) / 4
    weight = np.cumsum(bets)
    centre = np.cumsum(bets * x) / weight
    radius = (log_term + np.cumsum(4 * (x - mean_before) ** 2 * psi)) / weight
    lows = np.maximum.accumulate(np.clip(centre - radius, 0.0, 1.0))
    highs = np.minimum.accumulate(np.clip(centre + radius, 0.0, 1.0))
    return [
        Interval(low + span * a, low + span * max(a, b)) for a, b in zip(lows, highs, strict=True)
    ]
