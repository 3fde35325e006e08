"""``python -m crofuse_cli ...`` runs the ``crofuse`` command line."""

from crofuse_cli.app import main

main()
