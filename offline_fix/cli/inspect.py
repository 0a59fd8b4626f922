"""``offline-fix inspect TARGET``: what is on this disk, and where its Windows is."""

from __future__ import annotations

import sys

import typer

from offline_fix.cli.output import emit_json, out, warn
from offline_fix.errors import CorruptInput, NotFound, Unsupported


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def gather(target_spec: str) -> tuple[dict, Exception | None]:
    """The inspect document, and the error that makes the exit code non-zero (or None)."""
    from offline_fix.target import open_target
    from offline_fix.windows.install import find_installs

    with open_target(target_spec) as target:
        installs = find_installs(target)
        table = target.table
        doc = {
            "target": target_spec,
            "kind": target.kind,
            "container": target.describe_container(),
            "partition_table": None if table is None else {
                k: v for k, v in (("scheme", table.scheme), ("sector_size", table.sector_size),
                                  ("disk_guid", table.disk_guid), ("disk_signature", table.disk_signature)) if v is not None},
            "partitions": [v.to_dict() for v in target.volumes] if target.disk is not None else [],
            "windows": [i.summary() for i in installs],
            "warnings": list(target.warnings),
        }
        error = None
        if not installs:
            locked = [v.index for v in target.volumes if v.filesystem == "bitlocker"]
            if target.errors:
                error = target.errors[0]
            elif locked:
                error = Unsupported(f"no readable Windows install: partition {locked[0]} is BitLocker-encrypted and locked "
                                    "(see 'unlock' in the report)")
            elif target.disk is not None and not target.volumes:
                error = CorruptInput(f"{target_spec} is not a disk image: no partition table and no known filesystem")
            else:
                error = NotFound(f"no Windows installation found on {target_spec} (no Windows\\System32\\config\\SYSTEM)")
        return doc, error


def render(doc: dict) -> None:
    """The report for people. Everything read from the disk is escaped (rich markup) and made
    inert (control characters) before it is printed: a hostile disk cannot style or redraw it."""
    from rich.markup import escape as e
    from rich.table import Table

    console = out()
    c = doc["container"]
    line = f"[bold]{e(doc['target'])}[/bold]: {c['format']}"
    if c.get("subformat"):
        line += f" ({c['subformat']})"
    if doc["kind"] != "folder":
        line += f", virtual size {_size(c.get('virtual_size'))}"
        if c.get("file_size") is not None:
            line += f", file {_size(c['file_size'])}"
    console.print(line)
    if doc["partitions"]:
        scheme = (doc["partition_table"] or {}).get("scheme", "?")
        table = Table(title=f"partition table: {scheme}", title_justify="left", box=None, pad_edge=False)
        for col in ("#", "offset", "size", "type", "filesystem", "label"):
            table.add_column(col, justify="right" if col in ("#", "offset", "size") else "left")
        for p in doc["partitions"]:
            fs = p["filesystem"] + (" (locked)" if p.get("locked") else "")
            table.add_row(str(p["index"]), str(p["offset"]), _size(p["size"]), e(p.get("type_name", "")), fs,
                          e(p.get("label", "")))
        console.print(table)
    for p in doc["partitions"]:
        if p.get("locked"):
            console.print(f"partition {p['index']}: {p['unlock']}", soft_wrap=True)
    if not doc["windows"]:
        console.print("no Windows installation found")
    for w in doc["windows"]:
        version = w.get("version") or {}
        name = version.get("name") or "Windows (version unknown)"
        build = f" build {w['build']}" if w.get("build") else ""
        console.print(f"[bold]Windows install {w['number']}[/bold] on partition {w['partition']}: {e(name)}{build}, "
                      f"computer {e(w.get('computer_name') or '?')}")
        sh = w["system_hive"]
        if "error" in sh:
            console.print(f"  SYSTEM hive {e(sh['path'])}: [red]unreadable[/red]: {e(sh['error'])}")
        else:
            state = "[yellow]dirty[/yellow]" if sh["dirty"] else "clean"
            logs = f", logs {e(', '.join(sh['logs']))}" if sh.get("logs") else ""
            console.print(f"  SYSTEM hive {e(sh['path'])}: {state} (sequence {sh['sequence'][0]}/{sh['sequence'][1]}{logs})")
            sets = e(", ".join(w.get("control_sets") or [])) or "none"
            sel = w.get("select", {})
            console.print(f"  control sets: {sets}; boots {e(w.get('current_control_set') or '?')} "
                          f"(Select\\Current={sel.get('Current', '?')}, LastKnownGood={sel.get('LastKnownGood', '?')})")
            if version.get("source"):
                console.print(f"  version from {e(version['source'])}", style="dim")
        for problem in w.get("problems", []):
            console.print(f"  [yellow]![/yellow] {e(problem)}", soft_wrap=True)


def inspect_cmd(
    target: str = typer.Argument(..., help="Folder (mounted volume or drive letter), block device, or disk image "
                                          "(raw, .vhd, .vhdx; read-only also vmdk, qcow2, E01)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document to stdout."),
) -> int:
    """Show the container, partitions, BitLocker volumes and Windows installs of TARGET. Read-only.

    Exit code 0 when at least one Windows install was found, 3 when none, 6 when the only
    candidate is BitLocker-encrypted.
    """
    doc, error = gather(target)
    if json_out:
        if error is not None:
            doc["error"] = error.to_dict()
        emit_json(doc)
    else:
        render(doc)
        for w in doc["warnings"]:
            warn(w)
        for p in doc["partitions"]:
            if p.get("notes") and error is None:
                warn(f"partition {p['index']}: {p['notes'][0]}")
    if error is not None:
        print(f"offline-fix: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
