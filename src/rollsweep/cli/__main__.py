"""``python -m rollsweep.cli COMMAND ...``: the ``rollsweep`` command without its script."""

from rollsweep.cli import rollsweep_main

rollsweep_main()
