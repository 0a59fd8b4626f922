"""Ready specs for the common test disks.

``windows_volume`` lays files out where Windows keeps them; the disk helpers wrap it in a layout.
Sources may be paths (``.xz`` decompressed on the fly), bytes, or Source objects. Names given in
the maps (drivers, catalogs ...) are file names inside the folder the argument names.

    minimal_windows(system=hive_bytes)                  # needs nothing from ../shared
    win7_mbr(system=realdata("regipy/SYSTEM.xz"))
    win10_gpt(system=..., system_log1=..., system_log2=...)
    realdata_win10(REALDATA)                            # a full disk from ../shared/realdata
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from images.spec import CATROOT_DRIVERS, CATROOT_OTHER, DiskSpec, Link, Source, SpecError, VolumeSpec, as_source, literal

SYSTEM32 = "Windows\\System32"
CONFIG = f"{SYSTEM32}\\config"
DRIVERS = f"{SYSTEM32}\\drivers"
UMDF = f"{DRIVERS}\\UMDF"
CATROOT = f"{SYSTEM32}\\CatRoot\\{CATROOT_DRIVERS}"
CATROOT_127D = f"{SYSTEM32}\\CatRoot\\{CATROOT_OTHER}"
PACKAGES = "Windows\\servicing\\Packages"
EVTX = f"{SYSTEM32}\\winevt\\Logs"
MINIDUMP = "Windows\\Minidump"

HIBERFIL_PAGE = 4096


def hiberfil(state: str = "live", *, size: int = 64 * 1024, signature: bytes = b"HIBR", **times: str) -> Source:
    """hiberfil.sys content: "live" starts with SIGNATURE ("HIBR" Windows 8+, "hibr" earlier)
    followed by zeros; "stale" is all zeros (the header Windows wipes after resuming)."""
    if state not in ("live", "stale"):
        raise SpecError("hiberfil state must be live or stale", field="state", found=state)
    if size < HIBERFIL_PAGE:
        raise SpecError("hiberfil.sys is at least one page", field="size", expected=f">= {HIBERFIL_PAGE}", found=size)
    head = signature if state == "live" else b""
    return literal(head + bytes(size - len(head)), **times)


def _put(files: dict, folder: str, items: Mapping[str, Any] | None) -> None:
    for name, src in (items or {}).items():
        files[f"{folder}\\{name}"] = as_source(src, where=name)


def windows_volume(
    system: Any,
    *,
    system_log1: Any = None,
    system_log2: Any = None,
    software: Any = None,
    drivers: Mapping[str, Any] | None = None,
    umdf_drivers: Mapping[str, Any] | None = None,
    catalogs: Mapping[str, Any] | None = None,
    catroot_127d: Mapping[str, Any] | None = None,
    packages: Mapping[str, Any] | None = None,
    event_logs: Mapping[str, Any] | None = None,
    minidumps: Mapping[str, Any] | None = None,
    memory_dmp: Any = None,
    pagefile: Any = None,
    hiberfil_sys: Any = None,
    files: Mapping[str, Any] | None = None,
    links: Mapping[str, Link] | None = None,
    size_mib: int = 256,
    label: str = "Windows",
) -> VolumeSpec:
    """A Windows volume: the SYSTEM hive (required) and whatever else is given, each at its place
    (drivers -> System32\\drivers, catalogs -> CatRoot\\{F750E6C3-...}, packages ->
    servicing\\Packages, event_logs -> winevt\\Logs, minidumps -> Windows\\Minidump ...)."""
    out: dict[str, Source] = {f"{CONFIG}\\SYSTEM": as_source(system, where="SYSTEM")}
    for name, src in (("SYSTEM.LOG1", system_log1), ("SYSTEM.LOG2", system_log2), ("SOFTWARE", software)):
        if src is not None:
            out[f"{CONFIG}\\{name}"] = as_source(src, where=name)
    _put(out, DRIVERS, drivers)
    _put(out, UMDF, umdf_drivers)
    _put(out, CATROOT, catalogs)
    _put(out, CATROOT_127D, catroot_127d)
    _put(out, PACKAGES, packages)
    _put(out, EVTX, event_logs)
    _put(out, MINIDUMP, minidumps)
    for winpath, src in (("Windows\\MEMORY.DMP", memory_dmp), ("pagefile.sys", pagefile), ("hiberfil.sys", hiberfil_sys)):
        if src is not None:
            out[winpath] = as_source(src, where=winpath)
    for winpath, src in (files or {}).items():
        out[winpath] = as_source(src, where=winpath)
    return VolumeSpec(kind="windows", size_mib=size_mib, label=label, files=out, links=dict(links or {}))


def windows_disk(
    layout: str,
    system: Any,
    *,
    boot_files: Mapping[str, Any] | None = None,
    extra_volumes: tuple[VolumeSpec, ...] = (),
    seed: int = 0,
    timestamp: str | None = None,
    **volume: Any,
) -> DiskSpec:
    """One Windows install on LAYOUT (gpt, mbr, bare), then EXTRA_VOLUMES."""
    vol = windows_volume(system, **volume)
    kw: dict[str, Any] = {"seed": seed}
    if timestamp is not None:
        kw["timestamp"] = timestamp
    return DiskSpec(
        layout=layout,
        volumes=(vol, *extra_volumes),
        boot_files={k: as_source(v, where=k) for k, v in (boot_files or {}).items()},
        **kw,
    )


def minimal_windows(system: bytes | Source | os.PathLike, *, layout: str = "gpt", **kw: Any) -> DiskSpec:
    """The smallest useful Windows disk: the tree and the SYSTEM hive the caller gives."""
    return windows_disk(layout, system, **kw)


def _bcd_place(layout: str) -> str:
    return "EFI\\Microsoft\\Boot\\BCD" if layout == "gpt" else "Boot\\BCD"


def win7_gpt(system: Any, *, bcd: Any = None, **kw: Any) -> DiskSpec:
    """Windows 7 on GPT (ESP, MSR, Windows). Pass regipy/SYSTEM.xz (Windows 7 SP1)."""
    boot = {_bcd_place("gpt"): bcd} if bcd is not None else None
    return windows_disk("gpt", system, boot_files=boot, **kw)


def win7_mbr(system: Any, *, bcd: Any = None, **kw: Any) -> DiskSpec:
    """Windows 7 on MBR (active System Reserved, then Windows), the usual Windows 7 VM."""
    boot = {_bcd_place("mbr"): bcd} if bcd is not None else None
    return windows_disk("mbr", system, boot_files=boot, **kw)


def win10_mbr(system: Any, *, system_log1: Any = None, system_log2: Any = None, bcd: Any = None, **kw: Any) -> DiskSpec:
    """Windows 10 on MBR (Azure/Hyper-V generation 1). Pass regipy/SYSTEM_B.xz and its logs."""
    boot = {_bcd_place("mbr"): bcd} if bcd is not None else None
    return windows_disk("mbr", system, system_log1=system_log1, system_log2=system_log2, boot_files=boot, **kw)


def win10_gpt(system: Any, *, system_log1: Any = None, system_log2: Any = None, bcd: Any = None, **kw: Any) -> DiskSpec:
    """Windows 10 on GPT (UEFI, Hyper-V generation 2)."""
    boot = {_bcd_place("gpt"): bcd} if bcd is not None else None
    return windows_disk("gpt", system, system_log1=system_log1, system_log2=system_log2, boot_files=boot, **kw)


def data_volume(size_mib: int = 64, *, files: Mapping[str, Any] | None = None, label: str = "Data") -> VolumeSpec:
    """A plain NTFS volume with no Windows on it."""
    return VolumeSpec(kind="data", size_mib=size_mib, label=label, files={k: as_source(v, where=k) for k, v in (files or {}).items()})


def bitlocker_volume(size_mib: int = 64) -> VolumeSpec:
    """A fake BitLocker volume ("-FVE-FS-" boot sector)."""
    return VolumeSpec(kind="bitlocker", size_mib=size_mib)


def realdata_win10(realdata: str | os.PathLike, *, layout: str = "gpt", **kw: Any) -> DiskSpec:
    """A Windows 10 disk from ../shared/realdata: the dirty SYSTEM_B hive with its two logs,
    signed drivers, catalogs (also under servicing\\Packages), event logs, the BCD store and a
    live hiberfil.sys. Missing files raise NotFound when the disk is built."""
    r = Path(realdata)
    return windows_disk(
        layout,
        r / "regipy/SYSTEM_B.xz",
        system_log1=r / "regipy/SYSTEM_B.LOG1.xz",
        system_log2=r / "regipy/SYSTEM_B.LOG2.xz",
        drivers={"pciide.sys": r / "signify/pciide.sys", "winpmem_x64.sys": r / "velociraptor/winpmem_x64.sys"},
        catalogs={"oem89.cat": r / "signify/oem89.cat", "ntexe.cat": r / "velociraptor/ntexe.cat"},
        packages={"oem89.cat": r / "signify/oem89.cat", "ntexe.cat": r / "velociraptor/ntexe.cat"},
        event_logs={
            "System.evtx": r / "omerbenamram-evtx/system.evtx",
            "Microsoft-Windows-CodeIntegrity%4Operational.evtx": r
            / "dfir-artifact-museum/EventLogs_extracted/APTSimulatorVM_Server2022-20348/Microsoft-Windows-CodeIntegrity%4Operational.evtx",
        },
        hiberfil_sys=hiberfil("live"),
        boot_files={_bcd_place(layout): r / "regipy/BCD.xz"},
        **kw,
    )


def missing_catalogs(realdata: str | os.PathLike, *, layout: str = "gpt", **kw: Any) -> DiskSpec:
    """The field story: catalogs present in servicing\\Packages but gone from CatRoot."""
    r = Path(realdata)
    return windows_disk(
        layout,
        r / "regipy/SYSTEM_B.xz",
        drivers={"pciide.sys": r / "signify/pciide.sys"},
        packages={"oem89.cat": r / "signify/oem89.cat", "ntexe.cat": r / "velociraptor/ntexe.cat"},
        event_logs={"System.evtx": r / "omerbenamram-evtx/system.evtx"},
        **kw,
    )
