"""``python -m bnnconvert`` runs the command line."""

import sys

try:
    from bnnconvert.cli.main import run
except KeyboardInterrupt:  # Ctrl-C while the command line itself is still importing
    sys.stderr.write("error: interrupted; no partial output was left behind\n")
    sys.exit(130)

run()
