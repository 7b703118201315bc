# Adaptive experiments (`adaptive:`): each round is a checkpoint whose outcome names the
# configurations that collect the next round's shards (rollsweep.analysis.race).


checkpoint race_round:
    input:
        unpack(race_round_inputs),
    output:
        f"{RESULTS}/{{experiment}}/{RACE_DIR}/round-{{round}}.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/race-round-{{round}}.log",
    localrule: True
    params:
        labels=lambda w: list(PLANS[w.experiment].configurations),
        experiment=lambda w: PIPELINE.experiments[w.experiment].model_dump(),
        stats=PIPELINE.stats.model_dump(),
        seed=PIPELINE.seed,
    script:
        "../scripts/race_round.py"


rule plot_race:
    input:
        lambda w: race_files(w.experiment),
    output:
        report(
            f"{RESULTS}/{{experiment}}/{PLOTS_DIR}/{ROLLOUTS_PER_ROUND_PNG}",
            caption="../report/rollouts_per_round.rst",
            category="{experiment}",
            labels={"experiment": "{experiment}", "plot": "rollouts per round"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/plot-race.log",
    localrule: True
    params:
        experiment=lambda w: PIPELINE.experiments[w.experiment].model_dump(),
    script:
        "../scripts/plot_race.py"
