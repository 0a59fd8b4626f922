"""The bundled demo disk, and the demo: ``python -m images.demo --out DIR`` (``make demo``).

1. builds DIR/demo.vhdx from synthetic parts only (images/synth: nothing from ../shared, so it
   ships with the tool), reusing it when the spec has not changed (DIR/demo.vhdx.key);
2. runs the main job on it: ``offline-fix diagnose`` once that command exists, ``offline-fix
   drivers list`` until then;
3. copies it to DIR/demo-repair.vhdx, disables the culprit there (``drivers disable``), shows the
   change (``journal``) and its undo (``undo --all``), and checks that the copy's sha256 is what
   it was before. Backups and the journal go to DIR/state.

The disk: GPT (ESP, MSR, Windows), a Windows Server 2016 (build 14393) SYSTEM hive with several
hundred services in ControlSet001 and ControlSet002 (Select Current=1, LastKnownGood=2), a
third-party boot-start disk filter "acmedisk" that crashes (the culprit; it is in the DiskDrive
class UpperFilters and a disk's own UpperFilters, with a StartOverride), a minifilter whose file is
all zeros ("acmemon"), an unsigned UMDF driver in drivers\\UMDF, a driver under Program Files
(``\\??\\C:\\`` ImagePath), and a minimal PE file for every other driver.

Hooks for the signing and evidence parts (empty until the lead fills them): ``package_catalogs``
(catalogs in Windows\\servicing\\Packages, missing from CatRoot), ``catroot_catalogs``,
``crash_evidence`` (Windows\\Minidump), ``memory_dump`` and ``event_logs``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

from images import specs
from images.spec import DiskSpec, literal, zeros

DEMO_NAME = "demo.vhdx"
REPAIR_NAME = "demo-repair.vhdx"
TIMESTAMP = "2024-07-19T04:09:00Z"


# -- hooks: files the signing and evidence libraries will provide --------------------------------
def package_catalogs() -> dict[str, bytes]:
    """Catalog files (name -> bytes) present in Windows\\servicing\\Packages but missing from
    CatRoot\\{F750E6C3-...}: the field story of DESIGN.md. To be filled from the signing library."""
    return {}


def catroot_catalogs() -> dict[str, bytes]:
    """The catalogs still in CatRoot\\{F750E6C3-...} (name -> bytes)."""
    return {}


def crash_evidence() -> dict[str, bytes]:
    """Windows\\Minidump files (name -> bytes) naming the culprit (bug check 0x5A in
    nt!IopLoadDriver while loading acmedisk.sys). To be filled from the evidence library."""
    return {}


def memory_dump() -> bytes | None:
    """Windows\\MEMORY.DMP, or None."""
    return None


def event_logs() -> dict[str, bytes]:
    """winevt\\Logs files (name -> bytes): System (bug checks, 7026), CodeIntegrity (3004 ...)."""
    return {}


# -- the disk ------------------------------------------------------------------------------------
def driver_files() -> dict[str, object]:
    """Every driver file of the demo disk (Windows path -> Source)."""
    from offline_fix.windows.services import is_driver_type, resolve_image_path

    from images.synth.pe import driver_image
    from images.synth.services_2016 import INBOX, OUTSIDE, THIRD_PARTY, UMDF, ZEROED

    files: dict[str, object] = {}
    for row in INBOX + THIRD_PARTY:
        if not is_driver_type(row.type):
            continue
        path = resolve_image_path(row.image_path, row.name, row.type, "Windows").resolved
        if row is ZEROED:
            files[path] = zeros(48 * 1024)
        elif row is UMDF:
            files[path] = literal(driver_image(row.name, umdf=True))
        else:
            files[path] = literal(driver_image(row.name, timestamp=0x66A00000 if row is OUTSIDE else 0x57899A4F))
    return files


def demo_spec() -> DiskSpec:
    from images.synth.system import software_hive, system_hive

    dump = memory_dump()
    return specs.windows_disk(
        "gpt", literal(system_hive()), software=literal(software_hive()), files=driver_files(),
        packages=package_catalogs(), catalogs=catroot_catalogs(), minidumps=crash_evidence(),
        event_logs=event_logs(), memory_dmp=literal(dump) if dump is not None else None,
        timestamp=TIMESTAMP, seed=2016, size_mib=192)


def build_demo(out: Path, *, log=print) -> Path:
    """DIR/demo.vhdx, built unless the one there was built from the same spec."""
    from images import cache
    from images.builder import build

    out.mkdir(parents=True, exist_ok=True)
    spec = demo_spec()
    key = cache.key(spec, "vhdx")
    image, stamp = out / DEMO_NAME, out / (DEMO_NAME + ".key")
    if image.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        log(f"{image}: up to date (spec {key[:12]})")
        return image
    work = out / ".demo-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    started = time.monotonic()
    built = build(spec, work / DEMO_NAME, "vhdx")
    os.replace(built.path, image)
    stamp.write_text(key + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"{image}: built in {time.monotonic() - started:.1f} s (spec {key[:12]})")
    return image


# -- the demo ------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_fix(*args: str) -> int:
    from offline_fix.cli import main

    print(f"\n$ offline-fix {' '.join(args)}", flush=True)
    code = main(list(args))
    sys.stdout.flush()
    return code


def _has_command(name: str) -> bool:
    from offline_fix.cli import app

    return any((c.name or getattr(c.callback, "__name__", "")) == name for c in app.registered_commands)


def run_demo(out: Path) -> int:
    from images.synth.services_2016 import CULPRIT

    image = build_demo(out)
    main_job = ["diagnose", str(image)] if _has_command("diagnose") else ["drivers", "list", str(image)]
    if _offline_fix(*main_job) not in (0, 1):
        return 10
    repair = out / REPAIR_NAME
    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.copyfile(image, repair)
    before = sha256_file(repair)
    print(f"\n{repair}: a copy to repair, sha256 {before}")
    steps = [
        ("drivers", "disable", str(repair), CULPRIT.name, "--backup-dir", str(state)),
        ("journal", str(repair), "--backup-dir", str(state)),
        ("undo", str(repair), "--all", "--backup-dir", str(state)),
    ]
    for step in steps:
        code = _offline_fix(*step)
        if code != 0:
            print(f"demo: `offline-fix {' '.join(step)}` failed with exit code {code}", file=sys.stderr)
            return code
    after = sha256_file(repair)
    same = after == before
    print(f"\n{repair}: sha256 {after}\n" + ("identical to before the repair: undo verified" if same
                                             else "DIFFERS from before the repair"))
    return 0 if same else 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.demo", description="Build the demo disk and run the demo.")
    parser.add_argument("--out", required=True, help="folder for demo.vhdx, its repaired copy and the journal")
    parser.add_argument("--build-only", action="store_true", help="build (or reuse) DIR/demo.vhdx and stop")
    args = parser.parse_args(argv)
    from offline_fix.errors import OfflineFixError

    try:
        if args.build_only:
            build_demo(Path(args.out))
            return 0
        return run_demo(Path(args.out))
    except OfflineFixError as exc:
        print(f"images.demo: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
