"""``python -m recengine`` runs the command line."""

from recengine.cli import main

main()
