"""``offline-fix catroot check|baseline|restore TARGET``: the catalogs Code Integrity relies on.

``check`` and ``baseline`` are read-only (the catalog index is cached in the target's state
folder). ``restore`` copies the catalogs missing from CatRoot\\{F750E6C3-...} out of
``Windows\\servicing\\Packages`` through the journaled write path: on a folder target as new
files (written beside their place, linked in, never overwriting); on an image or a device
through libntfs-3g run on an in-memory overlay of the Windows volume, whose changed byte ranges
the engine then maps through the container, backs up, journals, writes and re-reads
(The Sleuth Kit). Undo: ``offline-fix undo TARGET --change ID``. The rules live in
offline_fix/windows/catroot.py.
"""

from __future__ import annotations

import json
import os

import typer

from offline_fix.atomic import write_atomic

from offline_fix.cli.common import BACKUP_DIR, DRY_RUN, INSTALL, JSON, TARGET, open_install
from offline_fix.cli.output import emit_json, err, out, show_progress, warn, write_lines
from offline_fix.errors import OfflineFixError, Refused

catroot_app = typer.Typer(help="Check, baseline and restore the catalogs (CatRoot) of an offline Windows install.",
                          no_args_is_help=True)

SHOWN = 20  # names listed in text output before "... and N more"
VHDX_ADVICE = ("convert the disk to raw or fixed VHD (qemu-img convert -O raw, or -O vpc -o subformat=fixed), "
               "or restore on a mounted folder")


def register(app: typer.Typer) -> None:
    app.add_typer(catroot_app, name="catroot")


def restore_hint(target: str, install: int | None) -> str:
    quoted = target if target and all(c.isalnum() or c in "/._-:\\" for c in target) else json.dumps(target)
    return f"offline-fix catroot restore {quoted}" + (f" --install {install}" if install else "")


def _progress(json_out: bool):
    if not show_progress(json_out):
        return None
    def step(role: str, done: int, total: int) -> None:
        if done == total or done % 250 == 0:
            err.print(f"reading catalogs in {role}: {done:,}/{total:,}", end="\r" if done < total else "\n",
                      soft_wrap=True, markup=False)
    return step


def _inventory(target: str, install: int | None, backup_dir: str | None, *, contents: bool, hashes: bool,
               json_out: bool):
    """(target, install, inventory) with the catalog cache in the target's state folder."""
    from offline_fix.changes.state import state_dir_for
    from offline_fix.windows import catroot as C
    from offline_fix.windows import system
    from offline_fix.windows.services import windows_dir_of

    tgt, inst = open_install(target, install)
    try:
        hive = inst.system_hive()
        build = system.windows_version(hive, system.current_control_set(hive), inst.software_hive()).build
    except OfflineFixError as exc:
        build = None
        warn(f"the Windows build could not be read: {exc}")
    try:
        inv = C.inventory(inst.fs, windows_dir_of(inst.system_hive_path), contents=contents, hashes=hashes,
                          state_dir=state_dir_for(target, backup_dir) if contents else None, build=build,
                          progress=_progress(json_out))
    except BaseException:
        tgt.close()
        raise
    return tgt, inst, inv


def _names(files, limit: int = SHOWN) -> str:
    names = [f if isinstance(f, str) else f.name for f in files]
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f", ... and {more:,} more (--json lists all)" if more > 0 else "")


# -- check ---------------------------------------------------------------------------------------
@catroot_app.command("check")
def check_cmd(
    target: str = TARGET,
    baseline: str = typer.Option(None, "--baseline", metavar="FILE",
                                 help="Compare with a baseline (`catroot baseline` on a healthy machine of the same build)."),
    no_contents: bool = typer.Option(False, "--no-contents", help="Only compare names; do not read the catalogs."),
    list_files: bool = typer.Option(False, "--files", help="With --json, list every catalog of every folder."),
    install: int = INSTALL,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Count CatRoot and servicing\\Packages catalogs, name the missing and damaged ones, compare with a baseline; exit 1 when anything is wrong. Read-only."""
    from offline_fix.windows import catroot as C

    doc = C.load_baseline(baseline) if baseline else None
    tgt, inst, inv = _inventory(target, install, backup_dir, contents=not no_contents or doc is not None,
                                hashes=doc is not None, json_out=json_out)
    with tgt:
        if doc is not None:
            C.compare_baseline(inv, doc)
        hint = restore_hint(target, install)
        if json_out:
            emit_json({"target": target, "install": inst.number, "partition": inst.volume.index,
                       **inv.to_dict(hint, files=list_files)})
        else:
            _render_check(target, inst, inv, hint)
            for w in inv.warnings:
                warn(w)
    return 0 if inv.healthy else 1


def _render_check(target: str, inst, inv, hint: str) -> None:
    from offline_fix.windows import catroot as C

    lines = [f"{target}: Windows install {inst.number} (partition {inst.volume.index})"
             + (f", build {inv.build}" if inv.build else "")]
    for role in (C.CATROOT, C.CATROOT_127D, C.PACKAGES):
        folder = inv.folders[role]
        state = f"{len(folder.files):,} catalogs" if folder.present else "MISSING"
        lines.append(f"  {folder.path:<66} {state}")
    lines.append(f"  {inv.windows_dir}\\{C.CATROOT2:<58} {'present' if inv.catroot2_present else 'MISSING'}")
    missing = inv.missing
    if missing:
        lines.append(f"  missing from CatRoot ({len(missing):,}): {_names(missing)}")
    for role, folder in inv.folders.items():
        for f in folder.bad()[:SHOWN]:
            lines.append(f"  {f.status.upper():<12} {f.path} ({f.size:,} bytes){': ' + f.reason if f.reason else ''}")
        if len(folder.bad()) > SHOWN:
            lines.append(f"  ... and {len(folder.bad()) - SHOWN:,} more damaged in {folder.path} (--json lists all)")
    if inv.baseline is not None:
        b = inv.baseline
        for label, items in (("missing (in the baseline, not here)", b.missing), ("extra (not in the baseline)", b.extra),
                             ("changed (size or sha256)", [c["name"] for c in b.changed])):
            if items:
                lines.append(f"  baseline: {label} ({len(items):,}): {_names(items)}")
    lines.append(inv.verdict(hint))
    write_lines(lines)


# -- baseline ------------------------------------------------------------------------------------
@catroot_app.command("baseline")
def baseline_cmd(
    target: str = TARGET,
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", help="Where to write the baseline (JSON)."),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
    install: int = INSTALL,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Record name, size and sha256 of every CatRoot catalog of a HEALTHY install (same build) for `catroot check --baseline`. Read-only."""
    from offline_fix.windows import catroot as C

    if os.path.exists(output) and not force:
        raise Refused(f"{output} exists; --force replaces it")
    tgt, inst, inv = _inventory(target, install, backup_dir, contents=True, hashes=True, json_out=json_out)
    with tgt:
        doc = C.make_baseline(inv, source=target)
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    write_atomic(output, text)
    counts = {role: len(doc["folders"][role]["files"]) for role in C.BASELINE_ROLES}
    bad = [f for role in C.BASELINE_ROLES for f in inv.folders[role].bad()]
    if json_out:
        emit_json({"target": target, "output": output, "build": inv.build, "counts": counts,
                   "damaged": [f.to_dict() for f in bad]})
    else:
        out().print(f"baseline of {target} (build {inv.build or 'unknown'}) written to {output}: "
                    f"{counts[C.CATROOT]:,} catalogs in {C.DRIVER_ACTION_VERIFY}, "
                    f"{counts[C.CATROOT_127D]:,} in {C.CATROOT_OTHER}", soft_wrap=True, markup=False)
    for f in bad:
        warn(f"{f.path} is {f.status}: is this machine healthy?")
    return 0


# -- restore -------------------------------------------------------------------------------------
@catroot_app.command("restore")
def restore_cmd(
    target: str = TARGET,
    overwrite: bool = typer.Option(False, "--overwrite", help="Also replace CatRoot catalogs whose bytes differ from servicing\\Packages."),
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    json_out: bool = JSON,
) -> int:
    """Copy the catalogs missing from CatRoot\\{F750E6C3-...} out of servicing\\Packages, journaled and undoable; never overwrites unless --overwrite."""
    from offline_fix.changes.engine import WriteSession
    from offline_fix.windows import catroot as C

    tgt, inst, inv = _inventory(target, install, backup_dir, contents=False, hashes=False, json_out=json_out)
    with tgt:
        if not inv.packages.present:
            raise Refused(f"{inv.packages.path} does not exist: there is nothing to restore from")
        plan = C.plan_restore(inst.fs, inv, overwrite=overwrite)
        for s in plan.skipped:
            warn(f"{s['name']} not copied: {s['reason']}")
        result = None
        if plan.items:
            if tgt.disk is None and not plan.dest_present:
                raise Refused(f"{plan.dest_folder} does not exist on this mounted volume: create it (mkdir) and "
                              "run the restore again")
            with WriteSession(tgt, inst.volume, backup_dir=backup_dir, warn=warn) as session:
                change = _change(tgt, inst, plan)
                result = session.apply(change, dry_run=dry_run)
    return _report_restore(target, plan, result, dry_run, json_out)


def _details(plan) -> list[dict]:
    return [{"op": "replace-file" if i.replaces is not None else "create-file", **i.to_dict()} for i in plan.items]


def _change(tgt, inst, plan):
    """The engine Change for a plan: new files (and, with --overwrite, whole-file patches); on an
    image or device, plus the volume ranges libntfs-3g changed on an overlay."""
    from offline_fix.changes.engine import Change, FilePatch, NewFile, Range
    from offline_fix.windows.catroot import DRIVER_ACTION_VERIFY

    summary = (f"catroot restore: {sum(1 for i in plan.items if i.replaces is None):,} catalogs into "
               f"CatRoot\\{DRIVER_ACTION_VERIFY}"
               + (f", {sum(1 for i in plan.items if i.replaces is not None):,} replaced" if any(i.replaces for i in plan.items) else ""))
    creates = [NewFile(i.dest, i.content) for i in plan.items if i.replaces is None]
    replaced = [i for i in plan.items if i.replaces is not None]
    if tgt.disk is None:
        patches = [FilePatch(i.dest, i.old, i.content, [[Range(0, i.old, i.content)]] if len(i.old) == len(i.content) else [])
                   for i in replaced]
        return Change("catroot-restore", summary, _details(plan), patches, creates=creates)
    grows = [i for i in replaced if len(i.old) != len(i.content)]
    if grows:
        raise Refused(f"--overwrite on a disk image replaces a catalog only by one of the same size; "
                      f"{grows[0].dest} is {len(grows[0].old):,} bytes, its package copy {len(grows[0].content):,} "
                      f"({len(grows)} such catalog{'s' if len(grows) > 1 else ''}): restore on a mounted folder, "
                      "or run without --overwrite")
    ranges = [Range(o, old, new) for o, old, new in _overlay_ranges(tgt, inst, plan)]
    _check_mappable(tgt, inst.volume, ranges)
    patches = [FilePatch(i.dest, i.old, i.content, []) for i in replaced]  # bytes travel in volume_ranges
    return Change("catroot-restore", summary, _details(plan), patches, creates=creates, volume_ranges=ranges)


def _overlay_ranges(tgt, inst, plan) -> list[tuple[int, bytes, bytes]]:
    """Create the files with libntfs-3g on an in-memory overlay of the Windows volume; nothing is
    written to the target here. libntfs-3g refuses a hibernated or unclean volume."""
    from offline_fix.target.ntfs3g import NtfsVolume, VolumeOverlay

    vol = inst.volume
    overlay = VolumeOverlay(lambda off, n: vol._disk.read(vol.offset + off, n), vol.size,
                            name=f"{tgt.spec} partition {vol.index}")
    try:
        with NtfsVolume(overlay=overlay) as ntfs:
            for item in plan.items:
                ntfs.write_file(item.dest, item.content, overwrite=item.replaces is not None)
    except OfflineFixError:
        overlay.check()  # a read error of the image explains the libntfs-3g failure best
        raise
    return overlay.changes()


def _check_mappable(tgt, volume, ranges) -> None:
    """Refuse, before anything is written, ranges the container cannot take in place."""
    from offline_fix.target.extents import host_ranges

    for r in ranges:
        try:
            host_ranges(tgt.disk, volume.offset + r.offset, len(r.new))
        except Refused as exc:
            raise Refused(f"the restore needs bytes where the image has no storage ({exc}): {VHDX_ADVICE}") from None


def _report_restore(target: str, plan, result, dry_run: bool, json_out: bool) -> int:
    if json_out:
        emit_json({"target": target, "dry_run": dry_run, "copies": len(plan.items), "bytes": plan.bytes,
                   "plan": [i.to_dict() for i in plan.items], "skipped": plan.skipped,
                   "result": result.to_dict() if result is not None else None})
        return 0
    lines = []
    if not plan.items:
        lines.append("nothing to restore: every usable package catalog is in CatRoot"
                     + (f" ({len(plan.skipped)} package catalogs skipped, see the warnings)" if plan.skipped else ""))
        write_lines(lines)
        return 0
    verb = "would copy" if dry_run else "copied"
    lines.append(f"{verb} {len(plan.items):,} catalogs ({plan.bytes:,} bytes) from servicing\\Packages into {plan.dest_folder}:")
    for i in plan.items:
        lines.append(f"  {i.name:<60} {i.size:>12,} bytes" + ("  (replaces a different copy)" if i.replaces else ""))
    if result is not None and result.status == "dry-run":
        lines.append(f"dry run: nothing written ({result.host_ranges} host byte ranges planned)")
    elif result is not None:
        lines.append(f"change {result.change_id}: {result.status} ({'; '.join(result.checks)})")
        lines.append(f"undo with: offline-fix undo {target} --change {result.change_id}")
    write_lines(lines)
    return 0
