# polars statistics per experiment: summary, best params, per task, distributions, plots.


rule aggregate:
    input:
        lambda w: PLANS[w.experiment].rollouts,
    output:
        **{
            name.replace(".", "_"): f"{RESULTS}/{{experiment}}/{name}"
            for name in AGGREGATE_FILES
        },
        reward_vs_params=report(
            f"{RESULTS}/{{experiment}}/plots/reward_vs_params.png",
            caption="../report/reward_vs_params.rst",
            category="{experiment}",
            labels={"experiment": "{experiment}", "plot": "reward vs parameters"},
        ),
        reward_distribution=report(
            f"{RESULTS}/{{experiment}}/plots/reward_distribution.png",
            caption="../report/reward_distribution.rst",
            category="{experiment}",
            labels={"experiment": "{experiment}", "plot": "reward distribution"},
        ),
        per_task_variance=report(
            f"{RESULTS}/{{experiment}}/plots/per_task_variance.png",
            caption="../report/per_task_variance.rst",
            category="{experiment}",
            labels={"experiment": "{experiment}", "plot": "per-task variance"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/aggregate.log",
    localrule: True
    params:
        # only what this experiment's numbers depend on, so that a change elsewhere in the
        # config does not rerun it
        experiment=lambda w: PIPELINE.experiments[w.experiment].model_dump(),
        stats=PIPELINE.stats.model_dump(),
        seed=PIPELINE.seed,
    script:
        "../scripts/aggregate.py"
