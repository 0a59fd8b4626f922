"""``offline-fix hive info|query|export|recover`` on hive files (set and delete: hive_edit.py).

    offline-fix hive info SYSTEM --json
    offline-fix hive query SYSTEM "ControlSet001\\Services\\Tcpip" /v Start
    offline-fix hive query SYSTEM "ControlSet001\\Services\\Tcpip" /s
    offline-fix hive export SYSTEM "ControlSet001\\Services\\Tcpip" -o tcpip.reg
    offline-fix hive recover SYSTEM -o SYSTEM.recovered --json

query prints what reg.exe query prints (the key line, then ``    Name    REG_TYPE    data``);
export writes what regedit exports (UTF-16LE .reg). The hive's root is shown as
``HKEY_LOCAL_MACHINE\\<FILE NAME>`` (``--root`` changes it); a key path may be given with or
without that prefix. A dirty hive is read as it is on disk, with a warning that its logs hold
newer data. The hive modules are imported inside the commands.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import typer

from offline_fix.cli import hive_edit
from offline_fix.cli.output import emit_json, printable, warn

hive_app = typer.Typer(
    name="hive",
    help="Read, query, export, recover (and change) registry hive files.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_HIVE = typer.Argument(..., help="The hive file (SYSTEM, SOFTWARE, NTUSER.DAT, BCD ...).")
_JSON = typer.Option(False, "--json", help="Print one JSON document to stdout.")
_ROOT = typer.Option(None, "--root", help="How the hive's root is shown (default HKEY_LOCAL_MACHINE\\<FILE NAME>).")
_TOLERANT = typer.Option(False, "--tolerant", help="Skip damaged keys and values (with warnings) instead of failing.")
_FORCE = typer.Option(False, "--force", help="/f: overwrite an existing output file.")

WARNINGS_SHOWN = 5
ROOT_ALIASES = {"HKLM": "HKEY_LOCAL_MACHINE", "HKU": "HKEY_USERS", "HKCU": "HKEY_CURRENT_USER",
                "HKCR": "HKEY_CLASSES_ROOT", "HKCC": "HKEY_CURRENT_CONFIG"}


def register(app: typer.Typer) -> None:
    hive_app.command("info")(info_cmd)
    hive_app.command("query")(query_cmd)
    hive_app.command("export")(export_cmd)
    hive_app.command("recover")(recover_cmd)
    hive_edit.register(hive_app)
    app.add_typer(hive_app, name="hive")


# -- helpers --------------------------------------------------------------------------------------
def root_name(hive_path: str, root: str | None) -> str:
    if root:
        return _expand_root(root.strip("\\"))
    stem = Path(hive_path).name.split(".")[0].upper() or "HIVE"
    return f"HKEY_LOCAL_MACHINE\\{stem}"


def _expand_root(path: str) -> str:
    first, sep, rest = path.partition("\\")
    return ROOT_ALIASES.get(first.upper(), first) + sep + rest


def key_from_argument(key_path: str, root: str) -> str:
    """KEYPATH relative to the hive's root: a leading root (``HKLM\\SYSTEM\\`` or
    ``HKEY_LOCAL_MACHINE\\SYSTEM\\``, case-insensitive) is dropped."""
    path = _expand_root(key_path.strip("\\"))
    if path.upper() == root.upper():
        return ""
    if path.upper().startswith(root.upper() + "\\"):
        return path[len(root) + 1:]
    return path


def open_hive(hive_path: str, *, tolerant: bool):
    from offline_fix.hive import Hive

    hive = Hive.open(hive_path, tolerant=tolerant)
    if hive.dirty:
        block = hive.base_block
        why = (f"sequence numbers {block.sequence1}/{block.sequence2}" if not block.sequences_match
               else "base block checksum wrong")
        warn(f"{hive_path}: hive is dirty ({why}): its transaction logs may hold newer data than "
             f"shown here; recover it with `offline-fix hive recover {hive_path} -o OUT`")
    return hive


def report_warnings(hive) -> None:
    for message in hive.warnings[:WARNINGS_SHOWN]:
        warn(f"skipped: {message}")
    if hive.warning_count > WARNINGS_SHOWN:
        warn(f"... {hive.warning_count - WARNINGS_SHOWN} more damaged items skipped (--json lists them)")


def show_data(value) -> str:
    """Data as reg.exe query shows it: numbers in 0x hex, REG_MULTI_SZ joined with \\0, strings
    as they are, anything else (and numbers of the wrong size) in upper-case hex."""
    data = value.data
    if isinstance(data, int):
        return f"{data:#x}"
    if isinstance(data, list):
        return "\\0".join(data)
    if isinstance(data, bytes):
        return data.hex().upper()
    return data


def value_doc(value) -> dict:
    data = value.data
    return {"name": value.name, "type": value.type_name, "type_code": value.type, "size": value.size,
            "data": data.hex() if isinstance(data, bytes) else data}


def write_file(out: str, data: bytes, *, force: bool, protect: list[str]) -> None:
    """Write ``data`` to a new file ``out`` (temporary file, fsync, rename): never over one of
    ``protect`` (the inputs), over an existing file only with --force."""
    from offline_fix.errors import PermissionDenied, Refused

    target = Path(out)
    for path in protect:
        if target.exists() and Path(path).exists() and os.path.samefile(target, path):
            raise Refused("the output would overwrite an input file; choose another -o", path=out)
    if target.exists() and not force:
        raise Refused("output file exists (use --force to overwrite it)", path=out)
    tmp = target.with_name(f".{target.name}.offline-fix-tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except PermissionError as exc:
        raise PermissionDenied(f"cannot write: {exc.strerror}", path=out) from None
    except FileNotFoundError as exc:
        from offline_fix.errors import NotFound

        raise NotFound(f"cannot write: {exc.strerror}", path=out) from None
    finally:
        if tmp.exists():
            tmp.unlink()


# -- info -------------------------------------------------------------------------------------------
def hive_summary(hive) -> dict:
    """Counts and free space of an open hive (walks every key, value and cell)."""
    keys = values = 0
    for key in hive.root.walk():
        keys += 1
        values += sum(1 for _ in key.values())
    free_bytes = free_cells = used_bytes = used_cells = 0
    for _off, size, allocated in hive.iter_cells():
        if allocated:
            used_bytes += size
            used_cells += 1
        else:
            free_bytes += size
            free_cells += 1
    return {"keys": keys, "values": values, "bins": len(hive.bins()), "free_bytes": free_bytes,
            "free_cells": free_cells, "allocated_bytes": used_bytes, "allocated_cells": used_cells}


def info_cmd(hive_path: str = _HIVE, json_out: bool = _JSON) -> int:
    """Base block, dirty or clean, sequence numbers, size, free space, number of keys and values.

    Exit 0 for a clean, sound hive; 1 when it is dirty or damaged (damage is listed).
    """
    hive = open_hive(hive_path, tolerant=True)
    block = hive.base_block
    root = hive.root
    summary = hive_summary(hive)
    doc = {
        "hive": hive_path,
        "dirty": hive.dirty,
        "sequence": [block.sequence1, block.sequence2],
        "checksum_ok": block.checksum_ok,
        "size": len(hive.buf),
        "hive_bins_size": block.hive_bins_size,
        "root": {"name": root.name, "offset": root.offset},
        **summary,
        "base_block": block.to_dict(),
        "warnings": list(hive.warnings),
        "warning_count": hive.warning_count,
    }
    if json_out:
        emit_json(doc)
    else:
        report_warnings(hive)
        state = "DIRTY" if hive.dirty else "clean"
        checksum = "ok" if block.checksum_ok else f"WRONG (stored {block.stored_checksum:#010x}, " \
                                                   f"computed {block.computed_checksum:#010x})"
        written = block.last_written.isoformat() if block.last_written else "never"
        rows = [
            ("hive", hive_path),
            ("state", f"{state} (sequence {block.sequence1}/{block.sequence2}, checksum {checksum})"),
            ("version", f"{block.version}, file type {block.file_type}, format {block.file_format}"),
            ("written", written),
            ("file name", block.file_name or "(none)"),
            ("size", f"{len(hive.buf):,} bytes (hive bins data {block.hive_bins_size:,} bytes in "
                     f"{summary['bins']:,} bins)"),
            ("free", f"{summary['free_bytes']:,} bytes in {summary['free_cells']:,} free cells"),
            ("root", f"{root.name} (cell {root.offset:#x})"),
            ("keys", f"{summary['keys']:,}"),
            ("values", f"{summary['values']:,}"),
        ]
        if hive.warning_count:
            rows.append(("damage", f"{hive.warning_count:,} damaged items skipped"))
        for label, text in rows:
            print(f"{label:<10}{text}")
    return 1 if hive.dirty or hive.warning_count else 0


# -- query ------------------------------------------------------------------------------------------
def query_cmd(
    hive_path: str = _HIVE,
    key_path: str = typer.Argument("", help="Key path (from the hive's root, or with HKLM\\<FILE NAME>\\ before it)."),
    value: str | None = typer.Option(None, "--value", help="/v NAME: only this value."),
    default_value: bool = typer.Option(False, "--default-value", help="/ve: only the default (unnamed) value."),
    recurse: bool = typer.Option(False, "--recurse", help="/s: this key and every key below it."),
    root: str | None = _ROOT,
    tolerant: bool = _TOLERANT,
    json_out: bool = _JSON,
) -> int:
    """Show a key's values and subkeys as reg query does.

    With /v NAME (or /ve) only that value; with /s also every key below (with /v, the keys that
    have that value). A missing key or value is exit 3; with --tolerant, damaged items skipped
    make the exit code 1.
    """
    from offline_fix.errors import NotFound

    if value is not None and default_value:
        raise typer.BadParameter("give /v NAME or /ve, not both")
    wanted = "" if default_value else value
    shown_root = root_name(hive_path, root)
    hive = open_hive(hive_path, tolerant=tolerant)
    start = hive.key(key_from_argument(key_path, shown_root))
    blocks = []
    for key in (start.walk() if recurse else [start]):
        if wanted is None:
            values = list(key.values())
        else:
            found = key.value(wanted)
            values = [] if found is None else [found]
            if not values and recurse:
                continue
        full = "\\".join(part for part in (shown_root, key.path) if part)
        subkeys = [child.name for child in key.subkeys()] if wanted is None and not recurse else []
        blocks.append((full, key, values, subkeys))
    matches = sum(len(values) for _f, _k, values, _s in blocks)
    if wanted is not None and not matches:
        name = "(Default)" if wanted == "" else wanted
        raise NotFound(f"value {name!r} not found under {start.path or '(root)'!r}", path=hive_path)
    if json_out:
        emit_json({
            "hive": hive_path,
            "dirty": hive.dirty,
            "keys": [{"key": full, "path": key.path,
                      "last_written": key.last_written.isoformat() if key.last_written else None,
                      "values": [value_doc(v) for v in values], "subkeys": subkeys}
                     for full, key, values, subkeys in blocks],
            "warnings": list(hive.warnings),
        })
    else:
        report_warnings(hive)
        def write(text: str) -> None:
            sys.stdout.write(printable(text[:-1]) + "\n" if text.endswith("\n") else printable(text))

        for full, _key, values, subkeys in blocks:
            write(f"\n{full}\n")
            for v in values:
                write(f"    {v.name or '(Default)'}    {v.type_name}    {show_data(v)}\n")
            if subkeys:
                write("\n")
                for name in subkeys:
                    write(f"{full}\\{name}\n")
        if recurse and wanted is not None:
            write(f"\nEnd of search: {matches} match(es) found.\n")
        elif not (blocks and blocks[-1][3]):  # reg.exe ends with an empty line unless subkeys end it
            write("\n")
    return 1 if hive.warning_count else 0  # --tolerant skipped damaged items: a finding


# -- export -----------------------------------------------------------------------------------------
def export_cmd(
    hive_path: str = _HIVE,
    key_path: str = typer.Argument("", help="Key to export with everything below it (default: the whole hive)."),
    out: str = typer.Option(..., "-o", "--output", help="The .reg file to write."),
    root: str | None = _ROOT,
    tolerant: bool = _TOLERANT,
    force: bool = _FORCE,
    json_out: bool = _JSON,
) -> int:
    """Write a key and its subkeys as a regedit .reg file (UTF-16LE, Version 5.00 format)."""
    from offline_fix.hive.regfile import encode, export_lines

    shown_root = root_name(hive_path, root)
    hive = open_hive(hive_path, tolerant=tolerant)
    key = hive.key(key_from_argument(key_path, shown_root))
    lines = list(export_lines(key, shown_root))
    data = encode(lines)
    write_file(out, data, force=force, protect=[hive_path])
    keys = sum(1 for line in lines if line.startswith("["))
    doc = {"hive": hive_path, "key": "\\".join(p for p in (shown_root, key.path) if p), "output": out,
           "keys": keys, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "dirty": hive.dirty, "warnings": list(hive.warnings)}
    if json_out:
        emit_json(doc)
    else:
        report_warnings(hive)
        print(f"exported {keys:,} keys under {doc['key']} to {out} ({len(data):,} bytes)")
    return 1 if hive.warning_count else 0  # --tolerant skipped damaged items: a finding


# -- recover ----------------------------------------------------------------------------------------
def recover_cmd(
    hive_path: str = _HIVE,
    logs: list[str] | None = typer.Option(None, "--log", help="A transaction log (repeat; default: HIVE.LOG1, HIVE.LOG2, HIVE.LOG next to HIVE)."),
    out: str = typer.Option(..., "-o", "--output", help="Where to write the recovered hive (a new file; HIVE is never changed)."),
    force: bool = _FORCE,
    json_out: bool = _JSON,
) -> int:
    """Replay a dirty hive's transaction logs as Windows does and write the clean hive to OUT.

    Damaged logs, or logs that do not continue the hive's sequence, are refused (exit 5, nothing
    written). The result is read back in full before it is written.
    """
    from offline_fix.errors import VerificationFailed
    from offline_fix.hive import Hive, HiveError
    from offline_fix.hive.log import find_logs, recover_files

    log_paths = list(logs) if logs else [str(p) for p in find_logs(hive_path)]
    recovery = recover_files(hive_path, log_paths)
    try:
        check = Hive.open(recovery.data)
        keys = sum(1 for _ in check.root.walk())
    except HiveError as exc:
        raise VerificationFailed(f"the recovered hive does not read back: {exc}", path=hive_path) from None
    if check.dirty:
        raise VerificationFailed("the recovered hive is still dirty", path=hive_path)
    write_file(out, recovery.data, force=force, protect=[hive_path, *log_paths])
    doc = {"hive": hive_path, "output": out, **recovery.to_dict(), "keys": keys}
    if json_out:
        emit_json(doc)
        return 0
    for message in recovery.warnings:
        warn(message)
    if not recovery.was_dirty:
        print(f"{hive_path} was not dirty: copied unchanged to {out}")
        return 0
    entries = recovery.applied_entries
    what = (f"log entries {entries[0]}..{entries[-1]}" if recovery.format == "new" and entries
            else f"{recovery.pages_applied} dirty pages")
    print(f"applied {what} from {', '.join(recovery.logs_used)} ({recovery.format} format); "
          f"last sequence {recovery.last_sequence}")
    print(f"wrote {out} ({len(recovery.data):,} bytes, {keys:,} keys, sha256 {doc['sha256']})")
    return 0
