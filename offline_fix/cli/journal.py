"""``offline-fix journal TARGET`` and ``offline-fix undo TARGET``: what was changed, and putting it back."""

from __future__ import annotations

import typer

from offline_fix.cli.common import BACKUP_DIR, INSTALL, JSON, TARGET
from offline_fix.cli.output import emit_json, out, warn
from offline_fix.errors import NotFound


def register(app: typer.Typer) -> None:
    app.command("journal")(journal_cmd)
    app.command("undo")(undo_cmd)


def _journal(target: str, backup_dir: str | None):
    from offline_fix.changes.journal import Journal
    from offline_fix.changes.state import state_dir_for

    return Journal(state_dir_for(target, backup_dir))


def journal_cmd(target: str = TARGET, backup_dir: str = BACKUP_DIR, json_out: bool = JSON) -> int:
    """List the changes offline-fix made to TARGET, newest last, with their state."""
    changes = _journal(target, backup_dir).changes()
    if json_out:
        emit_json({"target": target, "changes": [
            {k: v for k, v in c.items() if k not in ("ranges", "event")} | {"host_ranges": len(c.get("ranges", []))}
            for c in changes]})
        return 0
    console = out()
    if not changes:
        console.print(f"no changes recorded for {target}")
        return 0
    for c in changes:
        console.print(f"{c['id']}  {c['status']:<11} {c['summary']}", soft_wrap=True, markup=False)
        for f in c.get("files", []):
            if f["sha256_before"] is None:
                console.print(f"    {f['path']}: created, sha256 {f['sha256_after'][:12]}..", soft_wrap=True, markup=False)
            else:
                console.print(f"    {f['path']}: sha256 {f['sha256_before'][:12]}.. -> {f['sha256_after'][:12]}.., "
                              f"backup {f['backup']}", soft_wrap=True, markup=False)
    return 0


def undo_cmd(
    target: str = TARGET,
    change: str = typer.Option(None, "--change", help="The change to undo (an id from `offline-fix journal`)."),
    all_changes: bool = typer.Option(False, "--all", help="Undo every change still in effect, newest first."),
    force: bool = typer.Option(False, "--force", help="Restore the original bytes even if the file changed since."),
    install: int = INSTALL,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Put back the byte-identical originals of a change (sha256 checked)."""
    from offline_fix.changes import journal as J
    from offline_fix.changes.engine import WriteSession
    from offline_fix.cli.common import open_install

    if bool(change) == bool(all_changes):
        raise typer.BadParameter("give either --change ID or --all")
    tgt, inst = open_install(target, install)
    with tgt, WriteSession(tgt, inst.volume, backup_dir=backup_dir, force=True, warn=warn) as session:
        settled = session.resolve_interrupted()
        entries = session.journal.changes()
        if change:
            picked = [e for e in entries if e["id"] == change]
            if not picked:
                raise NotFound(f"no change {change} in the journal of {target} (see `offline-fix journal {target}`)")
        else:
            picked = [e for e in reversed(entries) if e["status"] == J.VERIFIED]
        results = [session.undo(e, force=force) for e in picked]
    if json_out:
        emit_json({"target": target, "interrupted": settled, "undone": results})
    else:
        console = out()
        for r in results:
            console.print(f"{r['id']}: {r['outcome']}")
        if not results:
            console.print("nothing to undo")
    return 0
