"""``python -m aicp``: the same as the ``aicp`` command."""

from aicp.cli import main

main()
