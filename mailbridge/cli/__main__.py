"""`python -m mailbridge.cli` is the `mailbridge` command too (the tests run it so)."""

from mailbridge.cli import main

main()
