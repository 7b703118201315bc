"""The statistics settings of an experiment's tables and picks (``stats:`` in the pipeline's
config): what ``analysis.outputs.write_experiment_outputs`` and ``best_params`` take."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rollsweep.config import StrictModel
from rollsweep.rollouts.names import METRICS

#: A probability strictly between 0 and 1.
Probability = Annotated[float, Field(gt=0, lt=1)]

#: Which settings each step takes.
SUMMARY_KEYS = {"n_bootstrap", "alpha", "success_threshold", "low_reward_threshold"}
PICK_KEYS = {"metric", "alpha", "n_bootstrap", "success_threshold", "power", "min_effect"}


#: Metrics an adaptive sweep (the race) can rank by: each is a per-task mean over repeats.
RACE_METRICS = ("mean", "pass_at_1")


class StatsSettings(StrictModel):
    """Statistics settings of every experiment's tables and picks."""

    alpha: Probability = Field(
        default=0.05,
        description="family-wise error level of the comparisons with the best configuration",
    )
    n_bootstrap: int = Field(
        default=2000, ge=100, description="task-clustered bootstrap resamples for CIs"
    )
    success_threshold: float = Field(
        default=1.0, description="reward >= this counts as a success for pass@k and majority@k"
    )
    low_reward_threshold: float = Field(
        default=0.3, description="rollouts below this reward go to failures.jsonl"
    )
    metric: Literal[METRICS] = Field(default="mean", description="what best_params ranks by")
    power: Probability = Field(
        default=0.8,
        description="chance of detecting a true difference that the sample-size advice aims at",
    )
    min_effect: float = Field(
        default=0.05,
        gt=0,
        description="the difference in the metric worth detecting: the sample-size advice says "
        "how many repeats or tasks would detect it",
    )

    def for_summary(self) -> dict[str, Any]:
        """The keyword arguments of ``analysis.tables.summarize``."""
        return self.model_dump(include=SUMMARY_KEYS)

    def for_picks(self) -> dict[str, Any]:
        """The keyword arguments of ``analysis.picks.best_params``."""
        return self.model_dump(include=PICK_KEYS)


class AdaptiveSettings(StrictModel):
    """An adaptive sweep (``adaptive:`` of an experiment): rounds of repeats that go only to the
    configurations still in the race (``rollsweep.analysis.race``)."""

    round_repeats: list[Annotated[int, Field(ge=1)]] = Field(
        default=[1, 1, 1, 1, 1, 1, 2, 2, 2, 2],
        min_length=1,
        description="repeats per task that each round adds to every configuration still in the "
        "race; the number of rounds is fixed in advance, since the error level is split over them",
    )
    budget: int | None = Field(
        default=None,
        ge=1,
        description="most rollouts over all rounds: no round starts that would pass it",
    )

    @property
    def total_repeats(self) -> int:
        """The repeats per task of a configuration that stays in the race to the end."""
        return sum(self.round_repeats)

    def round_starts(self) -> list[int]:
        """The first repeat index of each round."""
        starts, start = [], 0
        for count in self.round_repeats:
            starts.append(start)
            start += count
        return starts
