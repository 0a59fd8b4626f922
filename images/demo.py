"""The bundled demo disk, and the demo: ``python -m images.demo --out DIR`` (``make demo``).

1. builds DIR/demo.vhdx from synthetic parts only (images/synth: nothing from ../shared, so it
   ships with the tool), reusing it when the spec has not changed (DIR/demo.vhdx.key);
2. runs the main job on it: ``offline-fix diagnose`` (ranked suspects, the culprit first; the
   HTML report goes to DIR/demo-report.html), then ``offline-fix drivers list``;
3. copies it to DIR/demo-repair.vhdx, disables the culprit there (``drivers disable``), shows the
   change (``journal``) and its undo (``undo --all``), and checks that the copy's sha256 is what
   it was before. Backups and the journal go to DIR/state.

The disk: GPT (ESP, MSR, Windows), a Windows Server 2016 (build 14393) SYSTEM hive with several
hundred services in ControlSet001 and ControlSet002 (Select Current=1, LastKnownGood=2), a
third-party boot-start disk filter "acmedisk" that crashes (the culprit; it is in the DiskDrive
class UpperFilters and a disk's own UpperFilters, with a StartOverride), a minifilter whose file is
all zeros ("acmemon"), an unsigned UMDF driver in drivers\\UMDF, a driver under Program Files
(``\\??\\C:\\`` ImagePath), and a minimal PE file for every other driver.

Hooks for the signing and evidence parts: ``package_catalogs`` (catalogs in
Windows\\servicing\\Packages, missing from CatRoot), ``catroot_catalogs``, ``crash_evidence``
(Windows\\Minidump: a small dump of the crash in acmedisk.sys, written from the documented
ntiodump.h layout), ``memory_dump`` and ``event_logs`` (empty: an EVTX writer is not part of the
tool).
"""

from __future__ import annotations


import argparse
import functools
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
PACKAGE_COUNT = 40  # package catalogs in servicing\Packages
KEPT_IN_CATROOT = 4  # of them still in CatRoot: the other 36 are the field story's gap
CATALOG_CA_SEED = 2016


@functools.lru_cache(maxsize=1)
def _catalogs() -> tuple[dict[str, bytes], dict[str, bytes]]:
    r"""(servicing\Packages, CatRoot) catalogs. Every driver but the UMDF one and the zero-filled
    one is listed by Authenticode hash in one of PACKAGE_COUNT package catalogs, signed by a test CA
    made here (deterministic keys, trusted by nothing); CatRoot keeps only KEPT_IN_CATROOT of them,
    plus the third-party driver's own oem catalog."""
    from offline_fix.signing.pe import authenticode_digests

    from images.synth.services_2016 import THIRD_PARTY, UMDF, ZEROED
    from images.synth.signing import CatFile, build_catalog, make_ca

    ca = make_ca("offline-fix demo", seed=CATALOG_CA_SEED)
    skip = {row.name.lower() for row in (UMDF, ZEROED)}
    third = {row.name.lower() for row in THIRD_PARTY} - skip
    members: dict[str, list] = {}
    oem = []
    for path, source in sorted(driver_files().items()):
        name = path.rsplit("\\", 1)[-1]
        stem = name.rsplit(".", 1)[0].lower()
        if stem in skip or not isinstance(source.data, bytes):
            continue
        digests = authenticode_digests(source.data)
        entry = CatFile(name, digests["sha1"], digests["sha256"])
        if stem in third:
            oem.append(entry)
            continue
        n = len(members) if len(members) < PACKAGE_COUNT else sum(map(len, members.values())) % PACKAGE_COUNT
        key = f"Microsoft-Windows-Server-Drivers-Package{n:02d}~31bf3856ad364e35~amd64~~10.0.14393.0.cat"
        members.setdefault(key, []).append(entry)
    packages = {name: build_catalog(files, ca) for name, files in sorted(members.items())}
    catroot = {name: packages[name] for name in sorted(packages)[:KEPT_IN_CATROOT]}
    if oem:
        catroot["oem12.cat"] = build_catalog(oem, ca)
    return packages, catroot


def package_catalogs() -> dict[str, bytes]:
    r"""Catalog files (name -> bytes) in Windows\servicing\Packages (the field story of DESIGN.md:
    most of them are missing from CatRoot\{F750E6C3-...})."""
    return {name: literal(data) for name, data in _catalogs()[0].items()}


def catroot_catalogs() -> dict[str, bytes]:
    r"""The catalogs still in CatRoot\{F750E6C3-...} (name -> bytes)."""
    return {name: literal(data) for name, data in _catalogs()[1].items()}


CRASH_TIME = "2024-07-19T04:09:30Z"  # the boot after the last hive write (images/synth/system.py)
CULPRIT_BASE = 0xFFFFF80C2A6E0000
# (name, base, size) of the drivers in the small dump's module list, in load order
DUMP_MODULES = (("ntoskrnl.exe", 0xFFFFF80C28A00000, 0x8A6000), ("hal.dll", 0xFFFFF80C28986000, 0x7A000),
                ("CLFS.SYS", 0xFFFFF80C29E10000, 0x62000), ("partmgr.sys", 0xFFFFF80C2A600000, 0x1D000),
                ("disk.sys", 0xFFFFF80C2A680000, 0x1A000), ("acmedisk.sys", CULPRIT_BASE, 0x6000),
                ("storvsc.sys", 0xFFFFF80C2A700000, 0x18000))


def small_dump(code: int, params: tuple[int, int, int, int], when: str, modules=DUMP_MODULES,
               build: int = 14393) -> bytes:
    """A 64-bit small (triage) kernel dump as Windows writes to Windows\\Minidump, from the layout in
    ntiodump.h: DUMP_HEADER64 (0x2000 bytes, unused fields filled with "PAGE"), TRIAGE_DUMP64 at
    0x2000, the DUMP_DRIVER_ENTRY64 list (0x90 bytes each), the DUMP_STRING pool (ULONG length in
    characters, UTF-16LE, NUL) and the "TRGD" marker in the last ULONG."""
    import struct
    from datetime import datetime

    filetime = int((datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() + 11644473600) * 10**7)
    header = bytearray(b"PAGE" * (0x2000 // 4))
    header[0x00:0x08] = b"PAGEDU64"
    struct.pack_into("<II", header, 0x08, 0xF, build)  # MajorVersion (free build), MinorVersion
    struct.pack_into("<III", header, 0x30, 0x8664, 2, code)  # MachineImageType, NumberProcessors, BugCheckCode
    struct.pack_into("<4Q", header, 0x40, *params)  # BugCheckParameter1..4
    struct.pack_into("<I", header, 0xF98, 4)  # DumpType: triage (small) dump
    struct.pack_into("<q", header, 0xFA8, filetime)  # SystemTime
    struct.pack_into("<q", header, 0x1030, 41 * 10**7)  # SystemUpTime: 41 s into the boot
    list_at = 0x2000 + 0x80
    pool_at = list_at + 0x90 * len(modules)
    entries, pool = bytearray(), bytearray()
    for name, base, size in modules:
        entry = bytearray(0x90)
        struct.pack_into("<I", entry, 0x00, pool_at + len(pool))  # DriverNameOffset
        struct.pack_into("<QQI", entry, 0x38, base, base + 0x1000, size)  # DllBase, EntryPoint, SizeOfImage
        entries += entry
        pool += struct.pack("<I", len(name)) + name.encode("utf-16-le") + b"\0\0"
    total = pool_at + len(pool) + 4
    triage = bytearray(0x80)
    struct.pack_into("<III", triage, 0x00, 0, total, total - 4)  # ServicePackBuild, SizeOfDump, ValidOffset
    struct.pack_into("<IIII", triage, 0x30, list_at, len(modules), pool_at, len(pool))  # driver list, string pool
    struct.pack_into("<q", header, 0xFA0, total)  # RequiredDumpSpace
    return bytes(header + triage + entries + pool + b"TRGD")


def crash_evidence() -> dict[str, bytes]:
    """Windows\\Minidump files (name -> bytes) naming the culprit: the crash 41 s into the boot,
    an access violation (0xC0000005) inside acmedisk.sys, reported as bug check 0x1000007E
    SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M (parameter 2: the faulting address)."""
    params = (0xC0000005, CULPRIT_BASE + 0x1A2C, 0xFFFFE48F1C2A7118, 0xFFFFE48F1C2A6950)
    return {"071924-4093-01.dmp": small_dump(0x1000007E, params, CRASH_TIME)}


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


def run_demo(out: Path) -> int:
    from images.synth.services_2016 import CULPRIT

    image = build_demo(out)
    report = out / "demo-report.html"
    for job in (["diagnose", str(image), "--report", str(report), "--backup-dir", str(out / "state")],
                ["drivers", "list", str(image)]):
        if _offline_fix(*job) not in (0, 1):
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
