"""The resource commands of `tnx-crm` (`leads`, `lists`, `imports`), built on the client.
`add_commands(subparsers)` adds them to an argparse command set; each sets `run(settings,
args)`, which returns the exit code."""

from __future__ import annotations

from tnx_crm.cli import imports, leads, lists
from tnx_crm.cli._base import EXIT_CODES, Subparsers, common_options


def add_commands(commands: Subparsers) -> None:
    common = common_options()
    leads.add_commands(commands, common)
    lists.add_commands(commands, common)
    imports.add_commands(commands, common)


__all__ = ["EXIT_CODES", "add_commands"]
