"""``offline-fix hive set|delete``: change a hive file, reg.exe style.

    offline-fix hive set SYSTEM "ControlSet001\\Services\\foo" /v Start /t REG_DWORD /d 4 /f
    offline-fix hive delete SYSTEM "ControlSet001\\Services\\foo" /v ImagePath /f --dry-run

reg.exe's switches (/v /ve /t /d /se /f) are translated by offline_fix.cli.main. Without ``-o``
the hive file is patched in place, only the changed byte ranges: first the base block is marked
dirty (primary sequence number + 1), then the cells are written, then the final base block, each
step flushed to disk, so that an interrupted write leaves a hive that reads as dirty instead of a
hive that looks clean and is not. ``-o OUT`` writes a new file instead. A dirty hive is refused
(exit 7): recover it first with ``offline-fix hive recover``.
"""

from __future__ import annotations

import os
import sys

import typer

from offline_fix.errors import PermissionDenied, Refused, VerificationFailed
from offline_fix.cli.output import emit_json

# Typer reads these at import; the hive modules themselves load inside the commands.
_HIVE = typer.Argument(..., metavar="HIVE", help="The hive file (SYSTEM, SOFTWARE, NTUSER.DAT, BCD ...).")
_KEY = typer.Argument(..., metavar="KEYPATH",
                      help="Key path, from the hive's root (ControlSet001\\Services\\foo) or with it (HKLM\\SYSTEM\\...).")
_ROOT = typer.Option(None, "--root", help="How the hive's root is named in KEYPATH (default HKEY_LOCAL_MACHINE\\<FILE NAME>).")
_OUT = typer.Option(None, "-o", "--output", help="Write the changed hive to this new file (default: in place).")
_FORCE = typer.Option(False, "--force", help="/f: overwrite an existing value or output file, delete without asking.")
_DRY = typer.Option(False, "--dry-run", help="Show the change and the bytes it would write; write nothing.")
_JSON = typer.Option(False, "--json", help="Print one JSON document to stdout.")
_VALUE = typer.Option(None, "--value", help="/v NAME: the value to set or delete.")
_DEFAULT = typer.Option(False, "--default-value", help="/ve: the key's default (unnamed) value.")

TYPE_ALIASES = {"REG_DWORD_LITTLE_ENDIAN": "REG_DWORD", "REG_QWORD_LITTLE_ENDIAN": "REG_QWORD"}


def register(hive_app: typer.Typer) -> None:
    hive_app.command("set")(set_cmd)
    hive_app.command("delete")(delete_cmd)


# -- data as reg.exe takes it ----------------------------------------------------------------------
def parse_type(text: str) -> int:
    from offline_fix.hive.structures import TYPES_BY_NAME

    name = TYPE_ALIASES.get(text.upper(), text.upper())
    if name in TYPES_BY_NAME:
        return TYPES_BY_NAME[name]
    try:
        code = int(text, 0)
    except ValueError:
        code = -1
    if not 0 <= code <= 0xFFFFFFFF:
        raise typer.BadParameter(f"unknown type {text!r} (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, "
                                 "REG_QWORD, REG_BINARY, REG_NONE, ... or a number)", param_hint="/t")
    return code


def _number(text: str, bits: int) -> int:
    t = text.strip().lower()
    try:
        value = int(t[2:], 16) if t.startswith("0x") else int(t, 10)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number (decimal, or hex with 0x)", param_hint="/d") from None
    if not 0 <= value < 1 << bits:
        raise typer.BadParameter(f"{text!r} does not fit in {bits} bits", param_hint="/d")
    return value


def parse_data(type_: int, text: str, separator: str = "\\0"):
    """reg.exe's /d text as data for ``type_``: strings as given, REG_MULTI_SZ split at
    ``separator`` (default the two characters \\0), numbers decimal or 0x hex, other types hex."""
    from offline_fix.hive import structures as s

    if type_ in (s.REG_SZ, s.REG_EXPAND_SZ, s.REG_LINK):
        return text
    if type_ == s.REG_MULTI_SZ:
        if not separator:
            raise typer.BadParameter("the separator may not be empty", param_hint="/se")
        return [part for part in text.split(separator) if part] if text else []
    if type_ in (s.REG_DWORD, s.REG_DWORD_BIG_ENDIAN):
        return _number(text, 32)
    if type_ == s.REG_QWORD:
        return _number(text, 64)
    hexdigits = "".join(text.replace(",", " ").replace(":", " ").split())
    try:
        return bytes.fromhex(hexdigits)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not hex bytes (e.g. 0a1b2c or 0a,1b,2c)", param_hint="/d") from None


# -- writing the result ----------------------------------------------------------------------------
def _fsync_write(fh, offset: int, data: bytes) -> None:
    fh.seek(offset)
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def patch_in_place(path: str, original: bytes, commit) -> None:
    """Apply ``commit`` to the hive file at ``path`` (which must still hold ``original``):
    base block marked dirty, cells, final base block; each step fsynced."""
    from offline_fix.hive.baseblock import BASE_BLOCK_SIZE, BaseBlock, in_progress

    if not commit.ranges:
        return
    final = commit.apply(original)
    try:
        fh = open(path, "r+b")
    except PermissionError:
        raise PermissionDenied("cannot open the hive file for writing", path=path) from None
    with fh:
        if fh.read() != original:
            raise Refused("the hive file changed while offline-fix was working on it; nothing written", path=path)
        dirty = in_progress(BaseBlock.parse(original[:BASE_BLOCK_SIZE]), BaseBlock.parse(final[:BASE_BLOCK_SIZE]))
        _fsync_write(fh, 0, dirty.to_bytes())
        if commit.grows:
            fh.truncate(commit.new_size)
        for r in commit.ranges:
            if r.offset >= BASE_BLOCK_SIZE:
                fh.seek(r.offset)
                fh.write(r.new)
        fh.flush()
        os.fsync(fh.fileno())
        _fsync_write(fh, 0, final[:BASE_BLOCK_SIZE])
    with open(path, "rb") as check:
        if check.read() != final:
            raise VerificationFailed("the hive file does not read back as written", path=path)


# -- the commands ----------------------------------------------------------------------------------
def _open(hive_path: str, key_path: str, root: str | None):
    """(original bytes, writable hive, writer, key path relative to the hive's root)."""
    from offline_fix.cli.hive import key_from_argument, root_name
    from offline_fix.hive import Hive
    from offline_fix.hive.writer import HiveWriter

    hive = Hive.open(hive_path, writable=True)
    writer = HiveWriter(hive)  # refuses a dirty hive
    return bytes(hive.buf), hive, writer, key_from_argument(key_path, root_name(hive_path, root))


def _value_state(hive, key_path: str, name: str) -> dict | None:
    from offline_fix.cli.hive import show_data

    key = hive.find_key(key_path)
    value = None if key is None else key.value(name)
    if value is None:
        return None
    return {"type": value.type_name, "data": show_data(value), "size": value.size}


def _finish(hive_path: str, out: str | None, original: bytes, hive, writer, changes: list[dict], *,
            dry_run: bool, force: bool, json_out: bool) -> int:
    import hashlib

    commit = writer.commit()
    new = bytes(hive.buf)
    if not changes:
        dry_run = True  # nothing to write
    if not dry_run:
        if out:
            from offline_fix.cli.hive import write_file

            write_file(out, new, force=force, protect=[hive_path])
        else:
            patch_in_place(hive_path, original, commit)
    doc = {
        "hive": hive_path,
        "written_to": None if dry_run else (out or hive_path),
        "dry_run": dry_run,
        "changes": changes,
        "old_size": commit.old_size,
        "new_size": commit.new_size,
        "grows": commit.grows,
        "sha256_before": hashlib.sha256(original).hexdigest(),
        "sha256_after": hashlib.sha256(new).hexdigest(),
        "ranges": [{"offset": r.offset, "length": len(r.new)} for r in commit.ranges],
    }
    if json_out:
        emit_json(doc)
        return 0
    for change in changes:
        print(_describe(change))
    size = "grows to " + str(commit.new_size) if commit.grows else "size unchanged"
    where = f"written to {out or hive_path}" if not dry_run else "nothing written" + (" (dry run)" if changes else "")
    print(f"{len(commit.ranges)} byte ranges ({commit.changed_bytes} bytes), file {size}; {where}")
    if not dry_run:
        print("The operation completed successfully.")
    return 0


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _describe(change: dict) -> str:
    where = change["key"] or "(root)"
    action = change["action"]
    if action in ("create_key", "delete_key"):
        return f"{action.replace('_', ' ')}: {where}"
    name = change["value"] or "(Default)"
    old, new = change.get("old"), change.get("new")
    before = f"{old['type']} {_short(old['data'])}" if old else "(none)"
    after = f"{new['type']} {_short(new['data'])}" if new else "(deleted)"
    return f"{where}  {name}  {before} -> {after}"


def set_cmd(
    hive_path: str = _HIVE,
    key_path: str = _KEY,
    value: str | None = _VALUE,
    default_value: bool = _DEFAULT,
    type_name: str = typer.Option("REG_SZ", "--type", help="/t TYPE: REG_SZ (default), REG_DWORD, REG_MULTI_SZ ..."),
    data: str = typer.Option("", "--data", help="/d DATA: numbers decimal or 0x hex, binary as hex, multi-string split at /se."),
    separator: str = typer.Option("\\0", "--separator", help="/se SEP: REG_MULTI_SZ separator (default \\0)."),
    create: bool = typer.Option(False, "--create", help="Create the key (and its parents) when missing."),
    force: bool = _FORCE,
    root: str | None = _ROOT,
    out: str | None = _OUT,
    dry_run: bool = _DRY,
    json_out: bool = _JSON,
) -> int:
    """Set a value (or, without /v and /ve, create the key), as reg add does.

    A missing key is created only with --create (or when no value is named), so that a typing
    mistake in a path is an error, not a new key. An existing value is replaced only with /f
    (--dry-run shows the change without it).
    """
    if value is not None and default_value:
        raise typer.BadParameter("give /v NAME or /ve, not both")
    type_ = parse_type(type_name)
    parsed = parse_data(type_, data, separator)
    original, hive, writer, key_path = _open(hive_path, key_path, root)
    changes = []
    missing = hive.find_key(key_path) is None
    if missing:
        if value is not None or default_value:
            if not create:
                from offline_fix.hive import KeyNotFound

                raise KeyNotFound("key not found (add --create to create it)", path=key_path)
        writer.create_key(key_path)
        changes.append({"action": "create_key", "key": key_path})
    if value is not None or default_value:
        name = "" if default_value else value
        old = _value_state(hive, key_path, name)
        if old is not None and not force and not dry_run:
            raise Refused(f"value {name or '(Default)'!r} exists (use /f to overwrite it)", path=key_path)
        writer.set_value(key_path, name, type_, parsed)
        changes.append({"action": "set_value", "key": key_path, "value": name, "old": old,
                        "new": _value_state(hive, key_path, name)})
    elif not missing:
        print(f"key exists: {key_path}; nothing to do", file=sys.stderr)
    return _finish(hive_path, out, original, hive, writer, changes, dry_run=dry_run, force=force,
                   json_out=json_out)


def delete_cmd(
    hive_path: str = _HIVE,
    key_path: str = _KEY,
    value: str | None = _VALUE,
    default_value: bool = _DEFAULT,
    force: bool = _FORCE,
    root: str | None = _ROOT,
    out: str | None = _OUT,
    dry_run: bool = _DRY,
    json_out: bool = _JSON,
) -> int:
    """Delete a value (/v, /ve), or the key with all its subkeys, as reg delete does.

    reg.exe asks before deleting; here /f says yes (without it, nothing is deleted) unless
    --dry-run only shows what would go.
    """
    if value is not None and default_value:
        raise typer.BadParameter("give /v NAME or /ve, not both")
    original, hive, writer, key_path = _open(hive_path, key_path, root)
    if value is not None or default_value:
        name = "" if default_value else value
        old = _value_state(hive, key_path, name)
        writer.delete_value(key_path, name)
        changes = [{"action": "delete_value", "key": key_path, "value": name, "old": old, "new": None}]
    else:
        key = hive.key(key_path)
        below = sum(1 for _ in key.walk()) - 1
        writer.delete_key(key_path, recursive=True)
        changes = [{"action": "delete_key", "key": key_path, "subkeys_deleted": below}]
    if not force and not dry_run:
        raise Refused("delete asks for /f (or --dry-run to see what would be deleted)", path=key_path)
    return _finish(hive_path, out, original, hive, writer, changes, dry_run=dry_run, force=force,
                   json_out=json_out)
