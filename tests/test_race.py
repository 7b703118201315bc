"""Adaptive sweeps (rollsweep.analysis.race): each round's decision, the error rate of the whole
race under the null, and the race as Snakemake checkpoints on the simulated backend (rounds,
dropped configurations collecting nothing more, reruns, kill -9 in round 2)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import read_rows, write_stack_config, write_tasks
from test_faults import model_requests
from test_pipeline import planned_jobs, snakemake, start_snakemake, sweep, write_pipeline

from rollsweep.analysis.race import decide_round, race_level, race_outcome, run_race
from rollsweep.analysis.settings import AdaptiveSettings
from rollsweep.config import load_stack_config
from rollsweep.pipeline.config import load_pipeline_config
from rollsweep.servers.stack import Stack


def rollouts(rewards: np.ndarray) -> pl.DataFrame:
    """A configuration's rollouts from a (tasks x repeats) array of rewards."""
    n_tasks, n_repeats = rewards.shape
    return pl.DataFrame(
        {
            "task_index": np.repeat(np.arange(n_tasks), n_repeats),
            "rollout_index": np.tile(np.arange(n_repeats), n_tasks),
            "task_id": [f"t{t}" for t in range(n_tasks) for _ in range(n_repeats)],
            "reward": rewards.reshape(-1).astype(float),
        }
    )


def draw(rng: np.random.Generator, success: np.ndarray, n_repeats: int) -> np.ndarray:
    """Bernoulli rewards, one row per task with its own success probability."""
    return (rng.random((success.size, n_repeats)) < success[:, None]).astype(float)


def race(
    success: dict[str, np.ndarray], settings: AdaptiveSettings, seed: int, alpha: float = 0.05
) -> dict:
    """A whole race through the real round decisions: each round draws its repeats only for the
    configurations still in it."""
    rng = np.random.default_rng(seed)
    n_tasks = next(iter(success.values())).size
    collected = {label: np.zeros((n_tasks, 0)) for label in success}

    def collect(number: int, alive: list[str]) -> dict[str, pl.DataFrame]:
        for label in alive:
            new = draw(rng, success[label], settings.round_repeats[number - 1])
            collected[label] = np.hstack([collected[label], new])
        return {label: rollouts(collected[label]) for label in alive}

    rounds = run_race(
        collect,
        list(success),
        settings=settings,
        n_tasks=n_tasks,
        alpha=alpha,
        seed=seed,
        n_resamples=500,
    )
    return race_outcome(
        rounds, n_configs=len(success), n_tasks=n_tasks, total_repeats=settings.total_repeats
    )


def test_a_clearly_worse_configuration_drops_and_an_equal_one_stays():
    rng = np.random.default_rng(3)
    success = rng.uniform(0.3, 0.9, 60)
    state = decide_round(
        1,
        {
            "a": rollouts(draw(rng, success, 1)),
            "b": rollouts(draw(rng, success, 1)),
            "c": rollouts(np.zeros((60, 1))),
        },
        settings=AdaptiveSettings(round_repeats=[1, 1, 2]),
        alpha=0.05,
        n_configs=3,
        n_tasks=60,
    )
    assert state["level"] == race_level(0.05, 3, (1, 1, 2))
    assert state["leader"] in ("a", "b")
    assert state["dropped"] == ["c"]
    assert state["alive"] == [label for label in ("a", "b", "c") if label != "c"]
    [to_c] = [c for c in state["comparisons"] if c["config"] == "c"]
    assert to_c["p_one_sided"] <= state["level"] < 1
    assert state["rollouts"] == {"a": 60, "b": 60, "c": 60} and state["spent"] == 180
    assert state["stop"] is False and state["reason"] is None
    assert state["repeats"] == [0, 1]


def test_the_race_stops_decided_at_the_last_round_or_at_the_budget():
    ones, zeros = rollouts(np.ones((30, 1))), rollouts(np.zeros((30, 1)))
    settings = AdaptiveSettings(round_repeats=[1, 2])
    decided = decide_round(
        1, {"a": ones, "b": zeros}, settings=settings, alpha=0.05, n_configs=2, n_tasks=30
    )
    assert (decided["alive"], decided["stop"], decided["reason"]) == (["a"], True, "decided")

    same = decide_round(
        1, {"a": ones, "b": ones}, settings=settings, alpha=0.05, n_configs=2, n_tasks=30
    )
    assert same["alive"] == ["a", "b"] and not same["stop"]
    three = rollouts(np.ones((30, 3)))
    last = decide_round(
        2,
        {"a": three, "b": three},
        settings=settings,
        alpha=0.05,
        n_configs=2,
        n_tasks=30,
        previous=same,
    )
    assert (last["stop"], last["reason"]) == (True, "last round")
    assert last["rollouts"] == {"a": 60, "b": 60} and last["spent"] == 180
    assert last["repeats"] == [1, 3]

    # the next round would add 2 configurations x 30 tasks x 2 repeats = 120 to the 60 spent
    tight = AdaptiveSettings(round_repeats=[1, 2], budget=179)
    budget = decide_round(
        1, {"a": ones, "b": ones}, settings=tight, alpha=0.05, n_configs=2, n_tasks=30
    )
    assert (budget["stop"], budget["reason"]) == (True, "budget")
    outcome = race_outcome([budget], n_configs=2, n_tasks=30, total_repeats=3)
    assert outcome["verdict"] == "tie" and outcome["spent"] == 60
    assert outcome["uniform_rollouts"] == 180
    with pytest.raises(ValueError, match="not finished"):
        race_outcome([same], n_configs=2, n_tasks=30, total_repeats=3)
    with pytest.raises(ValueError, match="ranks by"):
        decide_round(
            1,
            {"a": ones},
            settings=settings,
            alpha=0.05,
            n_configs=1,
            n_tasks=30,
            metric="pass_at_k",
        )


def test_under_the_null_the_race_calls_best_in_at_most_alpha_of_runs():
    """120 seeded races of 4 equal configurations (tasks of varying difficulty): `best` is an
    error, and its rate is bounded by alpha; with one configuration better by 0.25, the race
    decides for it in most runs and never for another."""
    settings = AdaptiveSettings(round_repeats=[1, 1, 2])
    difficulty = np.random.default_rng(0).uniform(0.2, 0.8, 40)
    runs = 120
    null = [race(dict.fromkeys("abcd", difficulty), settings, seed) for seed in range(runs)]
    wrong = sum(outcome["verdict"] == "best" for outcome in null)
    assert wrong <= 0.05 * runs, wrong
    assert all(o["reason"] in ("last round", "decided") for o in null)
    # sharper: under the null each configuration is a best one, and the race may drop a given
    # one in at most alpha of runs
    for label in "abcd":
        dropped = sum(any(label in r["dropped"] for r in o["per_round"]) for o in null)
        assert dropped <= 0.05 * runs, (label, dropped)

    better = np.clip(difficulty + 0.25, 0, 1)
    gap = [
        race({"a": difficulty, "b": better, "c": difficulty}, settings, seed) for seed in range(40)
    ]
    verdicts = [(o["verdict"], o["winner"]) for o in gap]
    assert ("best", "a") not in verdicts and ("best", "c") not in verdicts
    assert verdicts.count(("best", "b")) >= 30, verdicts
    decided = [o for o in gap if o["verdict"] == "best"]
    assert np.mean([o["spent"] / o["uniform_rollouts"] for o in decided]) < 0.8


def test_the_boundary_spends_alpha_over_the_rounds_and_rivals():
    """One round: each of the K - 1 comparisons at alpha / K. More rounds: each look at less,
    but at more than Bonferroni's split over the rounds (the looks are correlated)."""
    assert race_level(0.05, 3, (1,)) == pytest.approx(0.05 / 3)
    for schedule in ((1, 1), (1, 1, 2), (1, 1, 1, 2, 2, 3)):
        level = race_level(0.05, 3, schedule)
        assert 0.05 / 3 / len(schedule) < level < 0.05 / 3
    assert race_level(0.05, 5, (1, 1, 2)) < race_level(0.05, 3, (1, 1, 2))
    # a random walk's crossing probability of that level, from fresh paths, is the share
    rng = np.random.default_rng(1)
    schedule = np.array([1, 1, 1, 2, 2, 3])
    walks = np.cumsum(rng.standard_normal((200_000, 6)) * np.sqrt(schedule), axis=1)
    z = walks / np.sqrt(np.cumsum(schedule))
    boundary = NormalDist().inv_cdf(1 - race_level(0.05, 5, tuple(schedule)))
    assert (z.max(axis=1) >= boundary).mean() == pytest.approx(0.05 / 5, rel=0.06)


def test_two_equal_configurations_are_called_best_in_at_most_alpha_of_races():
    """With two configurations either may lead, so each direction of the one comparison gets
    half of alpha (at alpha per comparison, 23 of these 300 races said `best`; now 8)."""
    settings = AdaptiveSettings(round_repeats=[1, 1, 1, 2])
    difficulty = np.random.default_rng(2).uniform(0.1, 0.9, 60)
    runs = 300
    null = [race(dict.fromkeys("ab", difficulty), settings, seed) for seed in range(runs)]
    said_best = sum(outcome["verdict"] == "best" for outcome in null)
    assert said_best <= 0.05 * runs, said_best


# --------------------------------------------------------------------------- the pipeline

ROUNDS = [1, 1, 2]
N_TASKS = 40
TEMPERATURES = [0.1, 0.5, 0.9]


def adaptive_sweep(tasks: Path, **extra) -> dict:
    return sweep(tasks, TEMPERATURES, adaptive={"round_repeats": ROUNDS}, **extra)


def round_files(workdir: Path, experiment: str = "race") -> list[dict]:
    paths = sorted((workdir / "results" / experiment / "race").glob("round-*.json"))
    return [json.loads(path.read_text()) for path in paths]


def check_race_layout(workdir: Path, n_tasks: int) -> list[dict]:
    """Each round's file, each configuration's shards and rollouts, and best_params agree:
    a configuration collected exactly the rounds it was in the race for."""
    rounds = round_files(workdir)
    assert [state["round"] for state in rounds] == list(range(1, len(rounds) + 1))
    assert rounds[-1]["stop"] and not any(state["stop"] for state in rounds[:-1])
    labels = [f"temperature~{t}" for t in TEMPERATURES]
    assert rounds[0]["in_race"] == labels

    out = workdir / "results" / "race"
    starts = AdaptiveSettings(round_repeats=ROUNDS).round_starts()
    for label in labels:
        raced = [state["round"] for state in rounds if label in state["in_race"]]
        assert raced == list(range(1, len(raced) + 1))
        repeats = sum(ROUNDS[: len(raced)])
        rows = read_rows(out / label / "rollouts.jsonl")
        assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows] == [
            (t, r) for t in range(n_tasks) for r in range(repeats)
        ]
        # no shard of a round the configuration was not in was collected
        shards = sorted(p.name for p in (out / label / "shards").glob("r*-c*.jsonl"))
        assert shards == [
            f"r{starts[n - 1] + i}-c0.jsonl" for n in raced for i in range(ROUNDS[n - 1])
        ]
        for state in rounds:
            if label in state["in_race"]:
                assert state["rollouts_so_far"][label] == n_tasks * sum(ROUNDS[: state["round"]])

    best = json.loads((out / "best_params.json").read_text())
    assert best["race"]["rounds"] == len(rounds)
    assert best["race"]["spent"] == sum(
        len(read_rows(out / label / "rollouts.jsonl")) for label in labels
    )
    assert best["race"]["uniform_rollouts"] == 3 * n_tasks * sum(ROUNDS)
    assert best["n_configs"] == 3
    assert best["verdict"] == ("best" if len(rounds[-1]["alive"]) == 1 else "tie")
    if best["verdict"] == "best":
        assert best["best"]["params"] == {"temperature": 0.5}
        assert best["indistinguishable_from_best"] == []
    assert (out / "plots" / "rollouts_per_round.png").stat().st_size > 1000
    return rounds


def test_adaptive_config_errors_are_one_line(tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 4)
    for experiment, message in (
        (adaptive_sweep(tasks, num_repeats=3), "takes its repeats from adaptive.round_repeats"),
        (sweep(tasks, TEMPERATURES, adaptive={"round_repeats": []}), "round_repeats"),
        (sweep(tasks, TEMPERATURES, adaptive={"rounds": 3}), "adaptive.rounds"),
    ):
        config = write_pipeline(tmp_path, {"race": experiment})
        with pytest.raises(Exception, match=message):
            load_pipeline_config(yaml.safe_load(config.read_text()))
        result = snakemake(tmp_path, config, "-n")
        assert result.returncode == 2, result.stderr[-2000:]
        assert message.split()[0] in result.stderr


def race_results(workdir: Path) -> tuple[list[dict], dict]:
    best = json.loads((workdir / "results" / "race" / "best_params.json").read_text())
    return round_files(workdir), best


def test_race_in_the_pipeline_then_kill_9_in_round_2_and_rerun(tmp_path):
    """A reference run (rounds, shards only for those in the race, an unchanged rerun does
    nothing), then a run killed in round 2 and resumed: the same rounds and picks, and only the
    rollouts in flight at the kill asked twice. One stack outside the workflow (agent_url)
    counts the model's requests across all three."""
    stack = Stack(
        load_stack_config(
            [write_stack_config(tmp_path / "stack.yaml", latency_ms=30, curvature=0.8)]
        ),
        log_dir=tmp_path / "logs",
    )
    stack.start()
    try:
        agent_url = stack.agent_urls()["my_agent"]
        model_url = stack.urls()["model"]["sim"]
        tasks = write_tasks(tmp_path / "tasks.jsonl", N_TASKS)

        def workdir(name: str) -> tuple[Path, Path]:
            path = tmp_path / name
            path.mkdir()
            experiment = adaptive_sweep(tasks, num_samples_in_parallel=4, agent_url=agent_url)
            return path, write_pipeline(path, {"race": experiment}, curvature=0.8)

        reference, config = workdir("reference")
        assert "race_round" in snakemake(reference, config, "-n").stdout
        before = model_requests(model_url)
        result = snakemake(reference, config)
        assert result.returncode == 0, result.stderr[-3000:]
        rounds = check_race_layout(reference, N_TASKS)
        assert len(rounds) >= 2, "the race must reach round 2 for this test"
        assert any(state["dropped"] for state in rounds), "the extremes are worse by design"
        assert planned_jobs(reference, config) == {}
        expected = race_results(reference)
        spent = expected[1]["race"]["spent"]
        assert model_requests(model_url) - before == spent

        crashed, config = workdir("crashed")
        process = start_snakemake(crashed, config)
        round_1 = crashed / "results" / "race" / "race" / "round-1.json"
        deadline = time.monotonic() + 180
        in_round_2 = 0
        while time.monotonic() < deadline and in_round_2 < 10:
            if round_1.exists():
                checkpoints = crashed.glob("results/race/*/shards/.r1-*.ckpt.jsonl")
                in_round_2 = sum(len(p.read_bytes().splitlines()) for p in checkpoints)
            assert process.poll() is None, "the run ended before round 2 was under way"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert in_round_2 >= 10, "never saw round 2 under way"
        assert not (crashed / "results" / "race" / "race" / "round-2.json").exists()

        result = snakemake(crashed, config, "--rerun-incomplete")
        assert result.returncode == 0, result.stderr[-3000:]
        got = race_results(crashed)
        assert got == expected
        made = model_requests(model_url) - before - spent
        # only rollouts in flight at the kill were asked twice: 2 jobs x 4 in flight at most
        assert spent <= made <= spent + 2 * 4, (made, spent)
        print(
            f"\nkill -9 in round 2: rounds {[(r['round'], r['alive']) for r in rounds]}, "
            f"{spent} rollouts, {made - spent} asked again after the kill"
        )
    finally:
        stack.stop()
