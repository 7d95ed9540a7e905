"""``python -m bulkmig``: the same command line as the ``bulkmig`` script."""

from bulkmig.cli import run

run()
