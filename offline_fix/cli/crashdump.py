"""``offline-fix crashdump enable TARGET``: make the next crash leave a dump that names its driver.

Sets, in every ControlSet00N of the SYSTEM hive (the one that boots, Default and LastKnownGood
alike), ``Control\\CrashControl``: ``CrashDumpEnabled`` (``--type``: kernel 2 by default, complete
1, small 3, automatic 7, active 1 with ``FilterPages`` 1, as Microsoft's "Overview of memory dump
file options for Windows" lists them) and ``AutoReboot`` 0, so that the blue screen stays up and
the machine does not loop. One journaled change to the SYSTEM hive (backup, journal, independent
re-read, undo with ``offline-fix undo TARGET --change ID``).
"""

from __future__ import annotations

import typer

from offline_fix.cli.common import BACKUP_DIR, DRY_RUN, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import warn
from offline_fix.errors import Refused

crashdump_app = typer.Typer(help="Turn crash dumps on in an offline Windows install.", no_args_is_help=True)

DUMP_TYPES = {"complete": 1, "kernel": 2, "small": 3, "automatic": 7, "active": 1}


def register(app: typer.Typer) -> None:
    app.add_typer(crashdump_app, name="crashdump")


def plan(hive, dump_type: str) -> list[tuple[str, str, str | None, int | None, object]]:
    """(op, key, value, old type, old data) ... for every control set: what to change, in order."""
    from offline_fix.hive.structures import REG_DWORD
    from offline_fix.windows import system

    wanted = {"CrashDumpEnabled": DUMP_TYPES[dump_type], "AutoReboot": 0}
    ops = []
    for cs in system.control_sets(hive).present:
        path = f"{cs}\\Control\\CrashControl"
        key = hive.find_key(path)
        if key is None:
            if hive.find_key(f"{cs}\\Control") is None:
                continue  # not a control set Windows can boot from; nothing to set there
            ops.append(("create-key", path, None, None, None))
        for name, data in wanted.items():
            old = key.value(name) if key is not None else None
            if old is None or old.type != REG_DWORD or old.data != data:
                ops.append(("set", path, name, None if old is None else old.type, None if old is None else old.data))
        pages = key.value("FilterPages") if key is not None else None
        if dump_type == "active" and (pages is None or pages.data != 1 or pages.type != REG_DWORD):
            ops.append(("set", path, "FilterPages", None if pages is None else pages.type,
                        None if pages is None else pages.data))
        elif dump_type != "active" and pages is not None:
            ops.append(("delete-value", path, "FilterPages", pages.type, pages.data))
    if not ops and not system.control_sets(hive).present:
        raise Refused("the SYSTEM hive has no ControlSet00N key: nothing to set")
    return ops


@crashdump_app.command("enable")
def enable_cmd(
    target: str = TARGET,
    dump_type: str = typer.Option("kernel", "--type", help="kernel (default), complete, small, automatic or active."),
    force: bool = typer.Option(False, "--force", help="Write despite a live hibernation image."),
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Set CrashControl CrashDumpEnabled (--type, kernel by default) and AutoReboot=0 in every control set, journaled and undoable."""
    from offline_fix.changes.engine import WriteSession
    from offline_fix.changes.registry import Edit, HiveEditPlan, build_hive_change
    from offline_fix.cli.reg import report
    from offline_fix.evidence.registry import read_crash_control
    from offline_fix.hive.errors import BaseBlockError, LogError
    from offline_fix.hive.structures import REG_DWORD
    from offline_fix.windows import system

    dump_type = dump_type.lower()
    if dump_type not in DUMP_TYPES:
        raise typer.BadParameter(f"{dump_type!r}: choose one of {', '.join(DUMP_TYPES)}", param_hint="--type")
    values = {"CrashDumpEnabled": DUMP_TYPES[dump_type], "AutoReboot": 0, "FilterPages": 1}
    tgt, inst = open_install(target, install)
    with tgt:
        hive_path = inst.system_hive_path
        plan_ = HiveEditPlan(hive_path, "SYSTEM")

        def edits(writer, hive):
            for op, key, name, old_type, old in plan(hive, dump_type):
                if op == "create-key":
                    writer.create_key(key)
                    plan_.edits.append(Edit("create-key", key))
                elif op == "set":
                    writer.set_value(key, name, REG_DWORD, values[name])
                    plan_.edits.append(Edit("set", key, name, REG_DWORD, values[name], old=old, old_type=old_type))
                else:
                    writer.delete_value(key, name)
                    plan_.edits.append(Edit("delete-value", key, name, old=old))

        try:
            change = build_hive_change(inst.fs, plan_, kind="crashdump-enable",
                                       summary=f"crashdump enable --type {dump_type}", apply_edits=edits)
        except (LogError, BaseBlockError) as exc:
            if not inst.system_hive().dirty:
                raise
            raise Refused(f"refused: the SYSTEM hive is dirty and its logs cannot be replayed safely: {exc}. "
                          "Nothing was written") from None
        hive = inst.system_hive()
        cc = read_crash_control(hive, system.current_control_set(hive))
        if cc.no_paging_file:
            warn("no paging file is configured (Memory Management\\PagingFiles is empty) and there is no "
                 "DedicatedDumpFile: Windows needs one of them on the boot volume to write a kernel dump")
        with WriteSession(tgt, inst.volume, backup_dir=backup_dir, force=force, warn=warn) as session:
            result = session.apply(change, dry_run=dry_run)
    return report(result, json_out, target)
