# A reproducibility manifest beside each experiment's results (rollsweep.pipeline.manifest); rewritten
# whenever the results are. `rollsweep check-manifest results/EXPERIMENT` compares it with now.
from rollsweep.pipeline.manifest import write_workflow_manifest


rule manifest:
    input:
        [f"{RESULTS}/{{experiment}}/{name}" for name in AGGREGATE_FILES],
    output:
        f"{RESULTS}/{{experiment}}/{MANIFEST_FILE}",
    log:
        f"{RESULTS}/{{experiment}}/logs/manifest.log",
    localrule: True
    run:
        # run, not script: the executor is the workflow's, and as a param it would rewrite the
        # manifest (without rerunning anything) whenever a rerun used another executor
        write_workflow_manifest(
            workflow, config, wildcards.experiment, output[0], log[0]
        )
