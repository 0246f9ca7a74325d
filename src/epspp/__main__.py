"""``python -m epspp`` = the ``epspp`` command."""

from epspp.cli import main

main()
