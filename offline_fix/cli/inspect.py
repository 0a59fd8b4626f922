"""``offline-fix inspect TARGET``: what is on this disk."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)


def inspect_cmd(
    target: str = typer.Argument(..., help="Folder, block device, or disk image (raw, .vhd, .vhdx, ...)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document to stdout."),
) -> int:
    """Show the container, partitions, BitLocker volumes and Windows installs of TARGET."""
    raise NotImplementedError("inspect: not supported yet")
