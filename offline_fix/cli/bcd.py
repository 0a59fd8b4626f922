"""``offline-fix bcd list|set|delete|ems TARGET``: bcdedit /store on an attached disk.

Microsoft's offline recipes say ``bcdedit /store F:\\boot\\bcd /set {default} safeboot minimal``;
this does the same on the disk itself: the store is found on the EFI system partition (FAT32,
``EFI\\Microsoft\\Boot\\BCD``) or the System Reserved partition (``Boot\\BCD``), or given with
--store, and written through the journaled path (backup, journal, independent re-read by
pytsk3 and python-registry, ``offline-fix undo``).
"""

from __future__ import annotations

import typer

from offline_fix.cli.common import BACKUP_DIR, DRY_RUN, IGNORE_HIBERNATION, JSON, TARGET
from offline_fix.cli.output import emit_json, out, report_change, warn
from offline_fix.errors import NotFound, OfflineFixError, Refused

bcd_app = typer.Typer(help="Read and edit the boot configuration (BCD store) offline, with bcdedit's names.",
                      no_args_is_help=True)

STORE = typer.Option(None, "--store", help="The BCD file, or a mounted EFI system / System Reserved partition "
                                            "folder holding it (default: found on TARGET).")
INSTALL = typer.Option(None, "--install", min=1,
                       help="With several Windows installs: {default} (and `bcd ems`) mean the boot loader of install N.")
OBJECT = typer.Argument(..., help="{default}, {bootmgr}, {memdiag}, {emssettings} ... or a GUID (see `bcd list`).")
ELEMENT = typer.Argument(..., help="bcdedit's element name (safeboot, nointegritychecks, bootstatuspolicy ...) "
                                   "or its 8-hex-digit identifier.")


def register(app: typer.Typer) -> None:
    app.add_typer(bcd_app, name="bcd")


# -- reading ---------------------------------------------------------------------------------------

def _open_store(loc, *, for_display: bool):
    """(BcdStore, notes) of the store at ``loc``; a dirty store is shown as its logs make it."""
    from offline_fix.changes.registry import read_hive_for_edit
    from offline_fix.hive import Hive
    from offline_fix.windows.bcd import BcdStore

    notes = []
    fs = loc.volume.fs()
    try:
        original, data, recovery = read_hive_for_edit(fs, loc.path)
    except OfflineFixError as exc:
        if not for_display:
            raise
        data = loc.read()
        notes.append(f"the store is dirty and its logs cannot be replayed ({exc}); shown as the file holds it")
        recovery = None
    if recovery:
        notes.append(f"the store is dirty: shown with its transaction logs replayed ({', '.join(recovery.get('logs_used', []))}); "
                     "a write replays them into the file first")
    hive = Hive.open(data, tolerant=for_display)
    hive.path = loc.path
    store = BcdStore(hive)
    notes.extend(f"hive: {w}" for w in hive.warnings[:10])
    return store, notes


def _name_devices(store, target) -> None:
    """Let device elements say which partition of TARGET they mean."""
    for v in getattr(target, "volumes", []):
        part = v.partition
        if part is None:
            continue
        name = f"partition {v.index} of the target{', ' + v.label if v.label else ''}"
        if part.guid:
            store.device_names["{" + str(part.guid).strip("{}").lower() + "}"] = name
        else:
            store.device_names[part.offset] = name


@bcd_app.command("list")
def list_cmd(
    target: str = TARGET,
    store: str = STORE,
    json_out: bool = JSON,
) -> int:
    """Every object of the store: friendly name, type, description, device, path, elements."""
    from offline_fix.target import open_target
    from offline_fix.windows.bcd import locate_store

    with open_target(target) as tgt:
        loc = locate_store(tgt, store)
        bcd, notes = _open_store(loc, for_display=True)
        _name_devices(bcd, tgt)
        objects = bcd.describe()
        default = bcd.default_guid()
        notes.append("{current} does not exist offline: it means the Windows that is running")
        if json_out:
            emit_json({"target": target, "store": loc.to_dict(), "default": default, "current": None,
                       "objects": objects, "problems": bcd.problems, "notes": notes})
            return 0
        _print_list(loc, bcd, objects, default, notes)
    return 0


def _print_list(loc, bcd, objects: list[dict], default: str | None, notes: list[str]) -> None:
    console = out()
    console.print(f"BCD store: {loc.where}: {loc.path}", soft_wrap=True, markup=False)
    if default:
        desc = next((o["description"] for o in objects if o["id"] == default), None)
        console.print(f"{{default}} is {default}" + (f" ({desc})" if desc else ""), soft_wrap=True, markup=False)
    for other in loc.others:
        console.print(f"not used: {other}", soft_wrap=True, markup=False)
    for obj in objects:
        console.print("")
        console.print(obj["type_description"], markup=False)
        console.print("-" * len(obj["type_description"]), markup=False)
        console.print(f"{'identifier':<24}{obj['name']}" + (f"  ({obj['id']})" if obj["name"] != obj["id"] else ""),
                      soft_wrap=True, markup=False)
        console.print(f"{'type':<24}{obj['type']}", markup=False)
        for el in obj["elements"]:
            label = el["name"] or el["key"]
            console.print(f"{label:<24}{el['display']}", soft_wrap=True, markup=False)
        for name, s in obj["settings"].items():
            if s["inherited_from"] and s["value"] is not None:
                console.print(f"{name:<24}{s['value']}  (inherited from {s['inherited_from']})", soft_wrap=True,
                              markup=False)
        for role in obj["roles"]:
            console.print(f"{'':<24}[{role}]", soft_wrap=True, markup=False)
        for problem in obj.get("problems", []):
            console.print(f"{'':<24}problem: {problem}", soft_wrap=True, markup=False)
    for problem in bcd.problems:
        console.print(f"problem: {problem}", soft_wrap=True, markup=False)
    for note in notes:
        console.print(f"note: {note}", soft_wrap=True, markup=False)


# -- writing ---------------------------------------------------------------------------------------

def _install_loader(tgt, bcd, install: int) -> str:
    """The GUID of the Windows Boot Loader whose osdevice is install N's partition."""
    from offline_fix.windows.bcd import loader_for_partition
    from offline_fix.windows.install import select_install

    inst = select_install(tgt, install)
    part = inst.volume.partition
    if part is None:
        raise Refused("--install picks a loader by its partition, and a folder target has none: name the loader "
                      "by its GUID (see `offline-fix bcd list`)")
    found = loader_for_partition(bcd, part)
    if not found:
        raise NotFound(f"no Windows Boot Loader in the store boots install {install} (partition {inst.volume.index})")
    if len(found) > 1:
        raise Refused(f"{len(found)} loaders boot install {install}: name one by its GUID "
                      f"({', '.join(o.guid for o in found)})")
    return found[0].guid


def _warn_hibernated_windows(tgt) -> None:
    """Bootmgr resumes a live hibernation image and then ignores the loader's settings."""
    from offline_fix.changes.guards import hibernation_state
    from offline_fix.windows.install import find_installs

    try:
        installs = find_installs(tgt)
    except OfflineFixError:
        return
    for inst in installs:
        if hibernation_state(inst.fs) == "live":
            warn(f"install {inst.number} holds a live hibernation image (hiberfil.sys): Windows will resume from it "
                 "and ignore boot-loader settings until it boots fresh (shut down fully, or powercfg /h off)")


def _write(target: str, store: str | None, install: int | None, make_changes, *, kind: str, summary: str,
           dry_run: bool, json_out: bool, backup_dir: str | None, ignore_hibernation: bool) -> int:
    from offline_fix.changes.engine import WriteSession
    from offline_fix.changes.registry import Edit, HiveEditPlan, build_hive_change
    from offline_fix.target import open_target
    from offline_fix.windows.bcd import apply_changes, locate_store

    with open_target(target) as tgt:
        loc = locate_store(tgt, store)
        bcd, _notes = _open_store(loc, for_display=False)
        loader = _install_loader(tgt, bcd, install) if install is not None else None
        changes = make_changes(bcd, loader)
        plan = HiveEditPlan(loc.path, "BCD")
        details: list[dict] = []
        change = build_hive_change(loc.volume.fs(), plan, kind=kind, summary=summary,
                                   apply_edits=lambda writer, hive: apply_changes(
                                       writer, hive, changes, lambda *edit: plan.edits.append(Edit(*edit)), details))
        change.details[:] = details + change.details
        if loc.target.disk is not None and any(p.grows for p in change.patches):
            p = change.patches[0]
            raise Refused(f"the BCD store would grow from {len(p.before)} to {len(p.after)} bytes (the change needs a "
                          f"new hive bin) and offline-fix patches a store inside a disk image only in place; mount the "
                          f"{'EFI system' if loc.volume.filesystem.startswith('fat') else 'boot'} partition and give "
                          "its BCD with --store PATH")
        if not dry_run and change.patches:
            _warn_hibernated_windows(tgt)
        with WriteSession(loc.target, loc.volume, backup_dir=backup_dir, force=ignore_hibernation, warn=warn) as session:
            result = session.apply(change, dry_run=dry_run)
    return _report(target, loc, details, result, json_out, backup_dir)


def _report(target: str, loc, details: list[dict], result, json_out: bool, backup_dir: str | None = None) -> int:
    if json_out:
        emit_json({"target": target, "store": loc.to_dict(), "changes": details, "result": result.to_dict()})
        return 0
    lines = [f"BCD store: {loc.where}: {loc.path}"]
    for d in details:
        old = "(not set)" if d["old"] is None else d["old"]
        new = "(deleted)" if d["new"] is None else d["new"]
        verb = "set" if d["op"] == "bcd-set" else "delete"
        what = f"{d['object_name']} {d['element']} ({d['element_id']})"
        if d.get("unchanged"):
            lines.append(f"{verb} {what}: already {old}")
        else:
            lines.append(f"{verb} {what}: {old} -> {new}" + (f"  [{d['key']}\\Element {d['reg_type']}]" if d["op"] == "bcd-set" else ""))
    return report_change(result, target=target, lines=lines, backup_dir=backup_dir)


def _one(obj: str, element: str, text: str | None):
    """The changes of `bcd set` (text) or `bcd delete` (None); {default} means install N's loader
    when --install N is given."""
    from offline_fix.windows.bcd import ElementChange

    def changes(bcd, loader: str | None):
        name = loader if loader is not None and obj.strip().lower() in ("{default}", "default") else obj
        return [ElementChange(name, element, text)]

    return changes


@bcd_app.command("set")
def set_cmd(
    target: str = TARGET,
    obj: str = OBJECT,
    element: str = ELEMENT,
    value: str = typer.Argument(..., help="yes/no, a number or value name (minimal, IgnoreAllFailures ...), text, "
                                          "or objects."),
    store: str = STORE,
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    ignore_hibernation: bool = IGNORE_HIBERNATION,
    json_out: bool = JSON,
) -> int:
    """bcdedit /set OBJECT ELEMENT VALUE, journaled and undoable."""
    return _write(target, store, install, _one(obj, element, value), kind="bcd-set",
                  summary=f"bcd set {obj} {element} {value}", dry_run=dry_run, json_out=json_out,
                  backup_dir=backup_dir, ignore_hibernation=ignore_hibernation)


@bcd_app.command("delete")
def delete_cmd(
    target: str = TARGET,
    obj: str = OBJECT,
    element: str = ELEMENT,
    store: str = STORE,
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    ignore_hibernation: bool = IGNORE_HIBERNATION,
    json_out: bool = JSON,
) -> int:
    """bcdedit /deletevalue OBJECT ELEMENT, journaled and undoable."""
    return _write(target, store, install, _one(obj, element, None), kind="bcd-delete",
                  summary=f"bcd delete {obj} {element}", dry_run=dry_run, json_out=json_out,
                  backup_dir=backup_dir, ignore_hibernation=ignore_hibernation)


@bcd_app.command("ems")
def ems_cmd(
    target: str = TARGET,
    state: str = typer.Argument(..., help="on or off."),
    store: str = STORE,
    install: int = INSTALL,
    dry_run: bool = DRY_RUN,
    backup_dir: str = BACKUP_DIR,
    ignore_hibernation: bool = IGNORE_HIBERNATION,
    json_out: bool = JSON,
) -> int:
    """The serial console (EMS/SAC): bootems on {bootmgr}, ems on the loader, COM1 at 115200 baud."""
    from offline_fix.windows.bcd import ems_changes

    word = state.strip().lower()
    if word not in ("on", "off"):
        raise typer.BadParameter("say on or off", param_hint="STATE")

    def changes(bcd, loader):
        obj = bcd.resolve(loader or "{default}")
        menu = bcd.menu_loaders()
        if loader is None and len(menu) > 1:
            warn(f"the boot menu has {len(menu)} Windows Boot Loaders; EMS goes to {{default}} ({obj.guid}): "
                 "use --install N, or `bcd set TARGET GUID ems on` for another")
        return ems_changes(bcd, obj, word == "on")

    return _write(target, store, install, changes, kind="bcd-ems", summary=f"bcd ems {word}", dry_run=dry_run,
                  json_out=json_out, backup_dir=backup_dir, ignore_hibernation=ignore_hibernation)
