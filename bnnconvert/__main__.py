"""``python -m bnnconvert`` runs the command line."""

from bnnconvert.cli.main import run

run()
