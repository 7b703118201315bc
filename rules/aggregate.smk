# polars statistics per experiment: summary, best params, per task, distributions, plots.


rule aggregate:
    input:
        rollouts=lambda w: PLANS[w.experiment].rollouts,
        # an adaptive experiment's rounds carry its verdict
        race=lambda w: race_files(w.experiment),
    output:
        **{
            name.replace(".", "_"): f"{RESULTS}/{{experiment}}/{name}"
            for name in AGGREGATE_FILES
        },
        # one output per plot, named by its stem (reward_vs_params, ...), with its caption
        **{
            name.removesuffix(".png"): report(
                f"{RESULTS}/{{experiment}}/{PLOTS_DIR}/{name}",
                caption=f"../report/{name.removesuffix('.png')}.rst",
                category="{experiment}",
                labels={"experiment": "{experiment}", "plot": title},
            )
            for name, title in PLOT_FILES.items()
        },
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
