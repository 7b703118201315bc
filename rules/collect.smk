# One job per shard (configuration x repeat shard x task chunk), then a merge per configuration.


rule collect_shard:
    input:
        tasks=lambda w: PIPELINE.experiments[w.experiment].input,
    output:
        f"{RESULTS}/{{experiment}}/{{config}}/shards/{{shard}}.jsonl",
    log:
        f"{RESULTS}/{{experiment}}/{{config}}/logs/{{shard}}.log",
    # 1 when the shard calls running servers; the embedded model's pool when it starts its own
    # (that pool sizes itself to these threads: Snakemake passes them as OMP_NUM_THREADS)
    threads: lambda w: PLANS[w.experiment].threads(w.config)
    resources:
        # one SLURM job per shard (profiles/slurm): the collector and the agent's servers are
        # light next to the model they call; the embedded model in the job needs about 1 GB
        runtime=120,
        mem_mb=2048,
        cpus_per_task=lambda w, threads: threads,
    params:
        # what shapes these rollouts (stack config of the agent, model file, verifier code, task
        # file, sampling, seed): when it changes, Snakemake reruns the shard
        identity=lambda w: PLANS[w.experiment].identity(w.config),
        command=lambda w, output: PLANS[w.experiment].collect_command(
            w.config, w.shard, output[0]
        ),
    shell:
        "{params.command} > {log} 2>&1"


rule merge_shards:
    input:
        shard_files,
    output:
        f"{RESULTS}/{{experiment}}/{{config}}/{ROLLOUTS_FILE}",
    log:
        f"{RESULTS}/{{experiment}}/{{config}}/logs/merge.log",
    localrule: True
    script:
        "../scripts/merge_shards.py"
