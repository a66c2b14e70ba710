"""`python -m mailbridge` is the `mailbridge` command (SPEC, Command line)."""

from mailbridge.cli import main

main()
