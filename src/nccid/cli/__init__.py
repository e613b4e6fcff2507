"""The ``nccid`` command line. Each part of the system contributes a Typer sub-app from its own
``cli.py``; this package only assembles them and handles errors the same way everywhere."""
