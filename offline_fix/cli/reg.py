"""``offline-fix reg query|add|delete TARGET KEYPATH``: reg.exe on an attached disk.

Microsoft's offline recipe is ``reg load HKLM\\BROKENSYSTEM F:\\Windows\\System32\\config\\SYSTEM``
then ``reg add``; this does the same on the disk itself, through the journaled write path
(backup, journal, independent verification, undo). HKLM\\SYSTEM, HKLM\\SOFTWARE, ... map to the
install's hive files; CurrentControlSet resolves to the control set that boots (Select\\Current).
"""

from __future__ import annotations


import typer

from offline_fix.cli.common import BACKUP_DIR, DRY_RUN, IGNORE_HIBERNATION, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import emit_json, report_change, warn, write_lines
from offline_fix.errors import NotFound, Refused

reg_app = typer.Typer(help="reg.exe's query, add and delete on an offline Windows install (reg.exe switches work: /v /t /d /f /s /ve).",
                      no_args_is_help=True)

KEYPATH = typer.Argument(..., help=r"Key path, e.g. HKLM\SYSTEM\CurrentControlSet\Services\foo.")
VALUE = typer.Option(None, "--value", help="/v NAME: the value.")
DEFAULT = typer.Option(False, "--default-value", help="/ve: the key's default (unnamed) value.")


def register(app: typer.Typer) -> None:
    app.add_typer(reg_app, name="reg")


def _show(value) -> str:
    from offline_fix.cli.hive import show_data

    return show_data(value)


def _format_key(key, display: str, name_filter: str | None, lines: list[str]) -> int:
    from offline_fix.hive.structures import type_name

    shown = 0
    values = list(key.values())
    if name_filter is not None:
        values = [v for v in values if v.name.upper() == name_filter.upper()]
    lines.append("")
    lines.append(display)
    for v in values:
        lines.append(f"    {v.name or '(Default)'}    {type_name(v.type)}    {_show(v)}")
        shown += 1
    return shown


@reg_app.command("query")
def query_cmd(
    target: str = TARGET,
    keypath: str = KEYPATH,
    value: str = VALUE,
    default_value: bool = DEFAULT,
    recurse: bool = typer.Option(False, "--recurse", help="/s: every subkey and value below the key."),
    install: int = INSTALL,
    json_out: bool = JSON,
) -> int:
    """Show a key's values (and subkeys), as reg.exe query does."""
    from offline_fix.hive import Hive
    from offline_fix.hive.structures import type_name
    from offline_fix.windows import system
    from offline_fix.windows.install import MAX_HIVE_SIZE
    from offline_fix.windows.regpath import resolve_key_path

    tgt, inst = open_install(target, install)
    with tgt:
        sys_hive = inst.system_hive()
        path = resolve_key_path(keypath, lambda: system.current_control_set(sys_hive))
        if path.hive_name == "SYSTEM":
            hive = sys_hive
        else:
            hive = Hive.open(inst.fs.read_bytes(inst.fs.resolve(path.hive_file), MAX_HIVE_SIZE), tolerant=True)
        if hive.dirty:
            warn(f"{path.hive_name} hive is dirty: its transaction logs hold newer data than shown here")
        key = hive.key(path.key)
        name_filter = "" if default_value else value
        if name_filter is not None and key.value(name_filter) is None:
            raise NotFound(f"the value {name_filter or '(Default)'} does not exist in {path.display}")
        keys = [(key, path.display)]
        if recurse:
            keys = []
            stack = [(key, path.display)]
            while stack:
                k, display = stack.pop()
                keys.append((k, display))
                stack.extend(reversed([(s, f"{display}\\{s.name}") for s in k.subkeys()]))
        if json_out:
            emit_json({"key": path.display, "hive_file": inst.fs.resolve(path.hive_file), "keys": [
                {"key": display, "last_written": k.last_written.isoformat() if k.last_written else None,
                 "values": [{"name": v.name, "type": type_name(v.type), "data": v.data if not isinstance(v.data, bytes) else v.data.hex()}
                            for v in k.values() if name_filter is None or v.name.upper() == name_filter.upper()],
                 "subkeys": [s.name for s in k.subkeys()]} for k, display in keys]})
            return 0
        lines: list[str] = []
        for k, display in keys:
            _format_key(k, display, name_filter, lines)
            if not recurse and name_filter is None:
                for s in k.subkeys():
                    lines.append("")
                    lines.append(f"{display}\\{s.name}")
        write_lines(lines)
        return 0


def _write(target: str, install: int | None, keypath: str, backup_dir: str | None, dry_run: bool,
           json_out: bool, ignore_hibernation: bool, kind: str, make_edits) -> int:
    from offline_fix.changes.engine import WriteSession
    from offline_fix.changes.registry import HiveEditPlan, build_hive_change
    from offline_fix.windows import system
    from offline_fix.windows.regpath import resolve_key_path

    tgt, inst = open_install(target, install)
    with tgt:
        sys_hive = inst.system_hive()
        path = resolve_key_path(keypath, lambda: system.current_control_set(sys_hive))
        plan = HiveEditPlan(inst.fs.resolve(path.hive_file), path.hive_name)
        change = build_hive_change(inst.fs, plan, kind=kind, summary=f"reg {kind} {path.display}",
                                   apply_edits=lambda writer, hive: make_edits(writer, hive, path, plan))
        with WriteSession(tgt, inst.volume, backup_dir=backup_dir, force=ignore_hibernation, warn=warn) as session:
            result = session.apply(change, dry_run=dry_run)
        return report(result, json_out, target, backup_dir)


def report(result, json_out: bool, target: str, backup_dir: str | None = None) -> int:
    """Print a write's Result: what changed (old -> new), the files, the change id and its undo."""
    if json_out:
        emit_json(result.to_dict())
        return 0
    return report_change(result, target=target, lines=[describe_detail(d) for d in result.details], backup_dir=backup_dir)


def describe_detail(d: dict) -> str:
    where = f"HKLM\\{d.get('hive', '?')}\\{d.get('key', '')}"
    op = d.get("op")
    if op == "set":
        old = "(absent)" if d.get("old") is None else f"{d.get('old_type')} {d.get('old')!r}"
        return f"set {where} /v {d.get('value') or '(Default)'}: {old} -> {d.get('type')} {d.get('new')!r}"
    if op == "delete-value":
        return f"delete {where} /v {d.get('value') or '(Default)'} (was {d.get('old')!r})"
    if op == "create-key":
        return f"create key {where}"
    if op == "delete-key":
        return f"delete key {where} (and everything below it)"
    if op == "recover":
        return (f"replay the {d.get('hive')} transaction logs first: {len(d.get('applied_entries', []))} entries "
                f"from {', '.join(d.get('logs_used', []))}")
    return str(d)


@reg_app.command("add")
def add_cmd(
    target: str = TARGET,
    keypath: str = KEYPATH,
    value: str = VALUE,
    default_value: bool = DEFAULT,
    type_: str = typer.Option("REG_SZ", "--type", help="/t TYPE: REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, REG_QWORD, REG_BINARY, REG_NONE."),
    data: str = typer.Option(None, "--data", help="/d DATA: decimal or 0x hex for numbers, \\0-separated for REG_MULTI_SZ, hex for binary."),
    separator: str = typer.Option("\\0", "--separator", help="/se: the REG_MULTI_SZ separator."),
    force: bool = typer.Option(False, "--force", help="/f: overwrite an existing value without asking."),
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    ignore_hibernation: bool = IGNORE_HIBERNATION,
    json_out: bool = JSON,
) -> int:
    """Add or change a value (or create a key), journaled and undoable."""
    from offline_fix.changes.registry import Edit
    from offline_fix.cli.hive_edit import parse_data, parse_type

    code = parse_type(type_)
    payload = parse_data(code, data if data is not None else "", separator) if (value is not None or default_value) else None

    def edits(writer, hive, path, plan):
        if value is None and not default_value:
            existed = hive.find_key(path.key) is not None
            if not existed:
                writer.create_key(path.key)
                plan.edits.append(Edit("create-key", path.key))
            return
        name = "" if default_value else value
        key = hive.find_key(path.key)
        old = key.value(name) if key is not None else None
        if old is not None and not force:
            raise Refused(f"the value {name or '(Default)'} exists in {path.display} ({old.type_name} {_show(old)}): "
                          "add /f to overwrite it")
        if key is None:
            writer.create_key(path.key)
            plan.edits.append(Edit("create-key", path.key))
        writer.set_value(path.key, name, code, payload)
        plan.edits.append(Edit("set", path.key, name, code, payload,
                               old=None if old is None else old.data, old_type=None if old is None else old.type))

    return _write(target, install, keypath, backup_dir, dry_run, json_out, ignore_hibernation, "add", edits)


@reg_app.command("delete")
def delete_cmd(
    target: str = TARGET,
    keypath: str = KEYPATH,
    value: str = VALUE,
    default_value: bool = DEFAULT,
    force: bool = typer.Option(False, "--force", help="/f: delete without asking (required: offline-fix never prompts)."),
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    ignore_hibernation: bool = IGNORE_HIBERNATION,
    json_out: bool = JSON,
) -> int:
    """Delete a value, or a key with everything below it, journaled and undoable."""
    from offline_fix.changes.registry import Edit

    if not force and not dry_run:
        raise Refused("reg delete asks before deleting; offline-fix never prompts: add /f (or try --dry-run first)")

    def edits(writer, hive, path, plan):
        key = hive.key(path.key)
        if value is not None or default_value:
            name = "" if default_value else value
            old = key.value(name)
            if old is None:
                raise NotFound(f"the value {name or '(Default)'} does not exist in {path.display}")
            writer.delete_value(path.key, name)
            plan.edits.append(Edit("delete-value", path.key, name, old=old.data))
        else:
            writer.delete_key(path.key, recursive=True)
            plan.edits.append(Edit("delete-key", path.key))

    return _write(target, install, keypath, backup_dir, dry_run, json_out, ignore_hibernation, "delete", edits)
