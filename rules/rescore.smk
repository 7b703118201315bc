# The verifier workbench in the pipeline: re-score an experiment's frozen rollouts with the
# verifier named by `rescore_with` (no model calls). Editing that verifier file reruns only this.


rule rescore:
    input:
        rollouts=f"{RESULTS}/{{experiment}}/{{config}}/{ROLLOUTS_FILE}",
        verifier=lambda w: rescore_verifier_file(w.experiment),
    output:
        rollouts=f"{RESULTS}/{{experiment}}/rescored/{{config}}/{ROLLOUTS_FILE}",
        report=f"{RESULTS}/{{experiment}}/rescored/{{config}}/report.txt",
    log:
        f"{RESULTS}/{{experiment}}/logs/rescore-{{config}}.log",
    localrule: True
    params:
        verifier=lambda w: PIPELINE.experiments[w.experiment].rescore_with,
    script:
        "../scripts/rescore.py"
