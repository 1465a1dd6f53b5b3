"""``python -m bdt_platform.cli``: the ``bdt`` command."""

from bdt_platform.cli import run

run()
