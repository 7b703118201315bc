# `snakemake --report report.html`: the plots of every experiment, with captions.


report: "../report/workflow.rst"
