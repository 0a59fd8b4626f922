"""Options and helpers shared by the commands that work on a Windows install of a TARGET."""

from __future__ import annotations

import typer

TARGET = typer.Argument(..., help="Folder (mounted volume or drive letter), block device, or disk image.")
INSTALL = typer.Option(None, "--install", min=1, help="Which Windows install (see `offline-fix inspect`), when there are several.")
JSON = typer.Option(False, "--json", help="Print one JSON document to stdout.")
DRY_RUN = typer.Option(False, "--dry-run", help="Print the exact change (path, key, value, old -> new); write nothing.")
IGNORE_HIBERNATION = typer.Option(False, "--ignore-hibernation",
                                  help="Write even though the volume holds a live hibernation image (Windows may undo the change on resume).")
BACKUP_DIR = typer.Option(None, "--backup-dir", help="State folder for backups and the journal (default: ~/.local/state/offline-fix).")


def open_install(target_spec: str, install: int | None):
    """(target, install) for a command; the caller closes the target."""
    from offline_fix.target import open_target
    from offline_fix.windows.install import select_install

    target = open_target(target_spec)
    try:
        return target, select_install(target, install)
    except BaseException:
        target.close()
        raise
