"""`python -m pgrad` is the `pgrad` command."""

from pgrad.cli import main

main()
