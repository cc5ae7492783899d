"""``python -m localrules ...`` runs the command line, as the ``localrules`` script does."""

from localrules.cli.main import cli

cli()
