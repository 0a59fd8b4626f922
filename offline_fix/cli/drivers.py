"""``offline-fix drivers list|disable|enable TARGET``: the drivers of an offline Windows install.

``list`` is read-only. ``disable`` and ``enable`` go through the journaled write path (backup,
journal, independent re-read, undo) as one change to the SYSTEM hive each. The rules (ImagePath
forms, filters, what is boot-critical) live in offline_fix/windows/services.py.
``drivers verify`` joins this sub-app later (``drivers_app``).
"""

from __future__ import annotations


import typer

from offline_fix.cli.common import BACKUP_DIR, DRY_RUN, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import emit_json, report_change, warn, write_lines
from offline_fix.errors import NotFound, Refused

drivers_app = typer.Typer(help="List, disable and enable the drivers of an offline Windows install.",
                          no_args_is_help=True)

NAMES = typer.Argument(..., metavar="NAME...", help="Service names (as under Services, any casing).")
FORCE = typer.Option(False, "--force", help="Disable even a boot-critical driver, and write despite a live hibernation image.")


def register(app: typer.Typer) -> None:
    app.add_typer(drivers_app, name="drivers")


def install_context(tgt, inst) -> dict:
    """What the service rules need to know about the disk: Windows folder, drive letter, BitLocker."""
    from offline_fix.windows.services import system_drive, windows_dir_of

    part = inst.volume.partition
    table = tgt.table
    drive = None
    if part is not None:
        drive = system_drive(inst.system_hive(), mbr_signature=table.disk_signature if table else None,
                             offset=part.offset, gpt_guid=part.guid)
    return {"windows_dir": windows_dir_of(inst.system_hive_path), "drive": drive or "C:",
            "bitlocker": any(v.filesystem == "bitlocker" for v in tgt.volumes)}


# -- list ----------------------------------------------------------------------------------------
@drivers_app.command("list")
def list_cmd(
    target: str = TARGET,
    all_services: bool = typer.Option(False, "--all", help="Also list Win32 services (and keys without a Type)."),
    install: int = INSTALL,
    json_out: bool = JSON,
) -> int:
    """List the kernel and file-system drivers of the control set that boots. Read-only."""
    from offline_fix.windows.services import list_services

    tgt, inst = open_install(target, install)
    with tgt:
        hive = inst.system_hive()
        ctx = install_context(tgt, inst)
        table = list_services(hive, inst.fs, windows_dir=ctx["windows_dir"], drive=ctx["drive"],
                              include_win32=all_services, bitlocker=ctx["bitlocker"])
        warnings = list(table.warnings)
        if hive.dirty:
            warnings.insert(0, "the SYSTEM hive is dirty: its transaction logs hold changes not shown here "
                               "(disable/enable replay them first, or refuse)")
        if json_out:
            emit_json({
                "target": target, "install": inst.number, "partition": inst.volume.index,
                "system_hive": {"path": inst.system_hive_path, "dirty": hive.dirty},
                "control_set": table.control_set, "windows_dir": table.windows_dir, "drive": table.drive,
                "drivers": [s.to_dict() for s in table.services], "warnings": warnings,
            })
            return 0
        _render(target, inst, table)
        for w in warnings:
            warn(w)
        return 0


def _flags(svc) -> str:
    flags = []
    if svc.boot_critical:
        flags.append("boot-critical")
    flags.extend(p.upper() for p in svc.problems())
    if svc.start_override:
        flags.append("StartOverride " + ",".join(f"{k}={v}" for k, v in svc.start_override.items()))
    for f in svc.filters:
        what = f.class_name or f.class_guid or "?"
        flags.append(f"{f.value} of {what}" + (f" device {f.device}" if f.device else ""))
    return "; ".join(flags)


def _render(target: str, inst, table) -> None:
    from offline_fix.windows.services import type_label

    rows = [("NAME", "TYPE", "START", "GROUP", "TAG", "FILE", "SIZE", "NOTES")]
    for s in sorted(table.services, key=lambda s: s.name.casefold()):
        f = s.file
        where = (s.image.resolved or f"({s.image.note or 'unresolved'})") if s.image else "-"
        size = "-" if f is None or f.size is None else str(f.size)
        if f is not None and f.path is not None and not f.exists:
            size = "missing"
        rows.append((s.name, type_label(s.type), s.start_name or "-", s.group or "", "" if s.tag is None else str(s.tag),
                     where, size, _flags(s)))
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((28, 14, 9, 26, 4, 60, 8, 0))]
    lines = [f"{target}: Windows install {inst.number} (partition {inst.volume.index}), {table.control_set} "
             f"(the control set that boots), Windows folder {table.windows_dir} on {table.drive}"]
    for r in rows:
        cells = [r[i].ljust(widths[i]) if widths[i] else r[i] for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    critical = sum(1 for s in table.services if s.boot_critical)
    problems = sum(1 for s in table.services if s.problems())
    lines.append(f"{len(table.services)} services, {critical} boot-critical, {problems} with a missing, empty or all-zero file")
    write_lines(lines)


# -- disable / enable ----------------------------------------------------------------------------
def _write(target: str, install: int | None, backup_dir: str | None, dry_run: bool, json_out: bool, force: bool,
           kind: str, summary: str, plan_ops, check=None) -> int:
    """One journaled SYSTEM change: ``plan_ops(hive)`` -> RegOps, planned and applied in turn on the
    hive as recovered from its logs; ``check(hive, ctx)`` may refuse first."""
    from offline_fix.changes.engine import WriteSession
    from offline_fix.changes.registry import Edit, HiveEditPlan, build_hive_change
    from offline_fix.hive.errors import BaseBlockError, LogError
    from offline_fix.windows.services import apply_ops, jsonable

    tgt, inst = open_install(target, install)
    with tgt:
        ctx = install_context(tgt, inst)
        plan = HiveEditPlan(inst.system_hive_path, "SYSTEM")
        ops = []

        def edits(writer, hive):
            if check is not None:
                check(hive, ctx)
            for batch in plan_ops(hive):
                for op in batch(hive):  # each name is planned on the hive as the previous one left it
                    apply_ops(writer, [op])
                    plan.edits.append(Edit(op.op, op.key, op.name, op.type, op.data, old=op.old, old_type=op.old_type))
                    ops.append(op)

        try:
            change = build_hive_change(inst.fs, plan, kind=kind, summary=summary, apply_edits=edits)
        except (LogError, BaseBlockError) as exc:
            if not inst.system_hive().dirty:
                raise
            raise Refused(f"refused: the SYSTEM hive is dirty (its transaction logs hold changes not yet in the file) "
                          f"and cannot be recovered safely: {exc}. Nothing was written; boot Windows once and shut it "
                          "down cleanly, or restore the hive with its logs") from None
        mine = [d for d in change.details if d.get("op") != "recover"]
        for detail, op in zip(mine, ops):
            detail.update(op.extra())
            for k in ("new", "old"):
                if k in detail:
                    detail[k] = jsonable(detail[k])
        with WriteSession(tgt, inst.volume, backup_dir=backup_dir, force=force, warn=warn) as session:
            result = session.apply(change, dry_run=dry_run)
    return _report(target, backup_dir, result, ops, json_out)


def _report(target: str, backup_dir: str | None, result, ops, json_out: bool) -> int:
    if json_out:
        emit_json(result.to_dict() | {"changes": [op.describe() for op in ops]})
        return 0
    lines = [f"replayed the SYSTEM transaction logs first ({len(d.get('applied_entries', []))} entries "
             f"from {', '.join(d.get('logs_used', []))})" for d in result.details if d.get("op") == "recover"]
    lines += [f"  {op.describe()}" for op in ops]
    return report_change(result, target=target, lines=lines, backup_dir=backup_dir)


@drivers_app.command("disable")
def disable_cmd(
    target: str = TARGET,
    names: list[str] = NAMES,
    keep_filters: bool = typer.Option(False, "--keep-filters", help="Leave the name in class and device filter lists."),
    force: bool = FORCE,
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Disable drivers: Start=4 in every control set, StartOverride removed, filter entries removed."""
    from offline_fix.windows.services import boot_critical, plan_disable, read_filters_and_devices, service_control_sets

    def check(hive, ctx):
        refusals = []
        for name in names:
            service_control_sets(hive, name)  # NotFound first, for a typo
            reason = boot_critical(hive, name, bitlocker=ctx["bitlocker"])
            if reason:
                refusals.append(f"{name} is boot-critical ({reason})")
        if refusals and not force:
            raise Refused("refused: " + "; ".join(refusals) + ". Windows would not find its disk; --force disables anyway")
        for r in refusals:
            warn(r + "; disabling anyway because of --force")
        if keep_filters:
            for name in names:
                listed = [f for cs, _ in service_control_sets(hive, name)
                          for f in read_filters_and_devices(hive, cs)[0] if f.names(name)]
                if listed:
                    warn(f"{name} stays in {len(listed)} filter list(s) (--keep-filters): a disabled filter that is "
                         "still listed stops its device stack (0x7B INACCESSIBLE_BOOT_DEVICE for a disk)")

    def plan_ops(_hive):
        return [lambda h, n=n: plan_disable(h, n, keep_filters=keep_filters) for n in names]

    return _write(target, install, backup_dir, dry_run, json_out, force, "drivers-disable",
                  f"drivers disable {' '.join(names)}", plan_ops, check)


def journaled_disable(target: str, backup_dir: str | None, name: str) -> dict | None:
    """The newest disable of ``name`` still in effect in the journal of ``target``, or None."""
    from offline_fix.changes.journal import VERIFIED, Journal
    from offline_fix.changes.state import state_dir_for
    from offline_fix.hive.reader import fold_name

    want = fold_name(name)
    for entry in reversed(Journal(state_dir_for(target, backup_dir)).changes()):
        if entry.get("kind") != "drivers-disable" or entry.get("status") != VERIFIED:
            continue
        if any(d.get("role") and fold_name(str(d.get("service", ""))) == want for d in entry.get("details", [])):
            return entry
    return None


@drivers_app.command("enable")
def enable_cmd(
    target: str = TARGET,
    names: list[str] = NAMES,
    start: int = typer.Option(None, "--start", min=0, max=3,
                              help="Set Start=N (0-3) in every control set instead of what the journal recorded."),
    force: bool = typer.Option(False, "--force", help="Write despite a live hibernation image."),
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Enable drivers again: Start, StartOverride and filter entries as the journal recorded them."""
    from offline_fix.windows.services import plan_enable, plan_enable_start

    batches = []
    for name in names:
        if start is not None:
            batches.append(lambda h, n=name: plan_enable_start(h, n, start))
            continue
        entry = journaled_disable(target, backup_dir, name)
        if entry is None:
            raise NotFound(f"no disable of {name} in effect in the journal of {target} (see `offline-fix journal`): "
                           "give --start N (0 boot, 1 system, 2 automatic, 3 manual) to set Start in every control set")
        batches.append(lambda h, n=name, e=entry: plan_enable(h, n, e["details"]))
    return _write(target, install, backup_dir, dry_run, json_out, force, "drivers-enable",
                  f"drivers enable {' '.join(names)}", lambda _hive: batches)


from offline_fix.cli import verify as _verify  # noqa: E402  (drivers verify, offline_fix/cli/verify.py)

_verify.register(drivers_app)
