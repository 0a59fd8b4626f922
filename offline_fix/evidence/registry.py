"""Registry evidence for ``diagnose``: what the SYSTEM hive says changed before the crashes, and
how the machine is set to boot and to record a crash.

Read from the control set that boots (Select\\Current), as Microsoft documents the values:

- ``Services\\<name>`` key last-write times: a driver key written in the ``window_days`` before
  the first crash (the "anchor") changed then (installed, reconfigured or re-enabled). Windows and
  update installers rewrite many keys at once (every boot touches some, a cumulative update
  hundreds), so keys are grouped by the minute they were written; a minute holding more than
  ``MASS_WRITE`` keys is a mass write, reported once and counted against no single driver.
- Service Control Manager 7045 events (service installed) in the same window: drivers added.
- ``Control\\Session Manager``: ``PendingFileRenameOperations`` (and ``...2``), pairs of
  REG_MULTI_SZ strings "source, destination" that smss.exe performs at the next boot (an empty
  destination deletes, a "!" prefix replaces an existing file; "Pending file rename operations",
  MoveFileEx MOVEFILE_DELAY_UNTIL_REBOOT); ``BootExecute`` and ``SetupExecute``, the native
  programs smss.exe runs before Windows starts (default ``autocheck autochk *``; anything else
  runs before any driver can be repaired).
- ``Control\\CrashControl`` ("Overview of memory dump file options for Windows"):
  ``CrashDumpEnabled`` 0 none, 1 complete (or active, with ``FilterPages``=1), 2 kernel, 3 small,
  7 automatic; ``AutoReboot``; ``DumpFile`` / ``MinidumpDir``; ``DedicatedDumpFile``. Dumps
  disabled is said plainly, with the command that turns them on. Windows writes a kernel dump
  through the paging file of the boot volume (or a dedicated dump file): ``Memory Management\\
  PagingFiles`` empty with no ``DedicatedDumpFile`` means no dump can be written either.

Nothing here ranks anything: rank.py weighs this evidence with the rest.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PureWindowsPath

from offline_fix.evidence.timeline import DRIVER_CHANGE, Entry, iso
from offline_fix.hive import Hive
from offline_fix.hive.reader import fold_name

WINDOW_DAYS = 7  # "changed in the days before the first crash"
MASS_WRITE = 10  # more keys than this written in the same minute: a boot or an installer, not one driver
MAX_RENAMES = 4096  # pairs read from PendingFileRenameOperations (bounds a hostile value)
SESSION_MANAGER = "Control\\Session Manager"
CRASH_CONTROL = "Control\\CrashControl"
MEMORY_MANAGEMENT = "Control\\Session Manager\\Memory Management"
DEFAULT_BOOT_EXECUTE = ("autocheck autochk *",)
RENAME_VALUES = ("PendingFileRenameOperations", "PendingFileRenameOperations2")
EXECUTE_VALUES = ("BootExecute", "SetupExecute")

# CrashDumpEnabled values (Microsoft: "Overview of memory dump file options").
DUMP_NONE, DUMP_COMPLETE, DUMP_KERNEL, DUMP_SMALL, DUMP_AUTOMATIC = 0, 1, 2, 3, 7
DUMP_TYPE_NAMES = {DUMP_NONE: "none", DUMP_COMPLETE: "complete", DUMP_KERNEL: "kernel", DUMP_SMALL: "small",
                   DUMP_AUTOMATIC: "automatic"}
DRIVER_SERVICE_TYPES = ("kernel mode driver", "file system driver")  # 7045 ServiceType text


def _int(data) -> int | None:
    return data if isinstance(data, int) and not isinstance(data, bool) else None


def _strings(data) -> list[str]:
    """REG_MULTI_SZ as a list; a REG_SZ as one item; anything else as nothing."""
    if isinstance(data, list):
        return [s for s in data if isinstance(s, str)]
    if isinstance(data, str):
        return [data] if data else []
    return []


# -- results -------------------------------------------------------------------------------------
@dataclass
class ServiceChange:
    """A driver whose key was written, or which was installed (7045), inside the window."""

    name: str
    time: datetime
    source: str  # "key last-write" or "SCM 7045 record N"
    key: str | None = None
    image: str | None = None
    in_window: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "time": iso(self.time), "source": self.source, "key": self.key,
                "image": self.image, "in_window": self.in_window}


@dataclass
class MassWrite:
    """Many service keys written in the same minute: a boot or an installer, not one driver."""

    time: datetime
    count: int
    sample: list[str]

    def to_dict(self) -> dict:
        return {"time": iso(self.time), "count": self.count, "sample": self.sample}


@dataclass
class PendingRename:
    source: str
    destination: str | None  # None: the file is deleted at the next boot
    replace: bool  # "!" prefix: replace an existing file
    value: str
    service: str | None = None  # the driver service whose file it touches

    @property
    def text(self) -> str:
        if self.destination is None:
            return f"delete {self.source}"
        return f"{'replace' if self.replace else 'move'} {self.source} -> {self.destination}"

    def to_dict(self) -> dict:
        return {"source": self.source, "destination": self.destination, "replace": self.replace,
                "value": self.value, "service": self.service, "text": self.text}


@dataclass
class CrashControl:
    present: bool
    crash_dump_enabled: int | None = None
    auto_reboot: int | None = None
    filter_pages: int | None = None
    dump_file: str | None = None
    minidump_dir: str | None = None
    dedicated_dump_file: str | None = None
    paging_files: list[str] | None = None  # None: the value is absent

    @property
    def disabled(self) -> bool:
        """No dump at all: CrashDumpEnabled=0 (Windows' default when the value is absent is 7)."""
        return self.crash_dump_enabled == DUMP_NONE

    @property
    def no_paging_file(self) -> bool:
        """No paging file and no dedicated dump file: a kernel dump cannot be written."""
        if self.dedicated_dump_file:
            return False
        return self.paging_files is not None and not any(p.strip() for p in self.paging_files)

    @property
    def type_name(self) -> str:
        if not self.present:
            return "unknown (no CrashControl key)"
        if self.crash_dump_enabled is None:
            return "automatic (CrashDumpEnabled absent: Windows' default)"
        name = DUMP_TYPE_NAMES.get(self.crash_dump_enabled, f"unknown value {self.crash_dump_enabled}")
        if self.crash_dump_enabled == DUMP_COMPLETE and self.filter_pages == 1:
            name = "active"
        return name

    def problems(self) -> list[str]:
        out = []
        if self.disabled:
            out.append("crash dumps are disabled (CrashControl\\CrashDumpEnabled = 0): the next bug check "
                       "leaves no dump to name the faulting driver")
        if self.no_paging_file:
            out.append("no paging file is configured (Memory Management\\PagingFiles is empty) and there is no "
                       "DedicatedDumpFile: Windows cannot write a kernel dump")
        return out

    def to_dict(self) -> dict:
        return {"present": self.present, "crash_dump_enabled": self.crash_dump_enabled, "type": self.type_name,
                "auto_reboot": self.auto_reboot, "dump_file": self.dump_file, "minidump_dir": self.minidump_dir,
                "dedicated_dump_file": self.dedicated_dump_file, "paging_files": self.paging_files,
                "disabled": self.disabled, "problems": self.problems()}


@dataclass
class RegistryEvidence:
    control_set: str
    anchor: datetime | None  # the first crash
    window_days: int
    changed: list[ServiceChange] = field(default_factory=list)  # key last-write in the window, not mass
    installed: list[ServiceChange] = field(default_factory=list)  # 7045 of drivers (in_window says when)
    mass_writes: list[MassWrite] = field(default_factory=list)
    renames: list[PendingRename] = field(default_factory=list)
    execute: dict[str, list[str]] = field(default_factory=dict)  # BootExecute / SetupExecute as stored
    crash_control: CrashControl = field(default_factory=lambda: CrashControl(False))

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        if self.anchor is None:
            return None
        return self.anchor - timedelta(days=self.window_days), self.anchor

    def unusual_execute(self) -> dict[str, list[str]]:
        """BootExecute entries other than the default, and any SetupExecute entry."""
        out = {}
        for name, entries in self.execute.items():
            default = DEFAULT_BOOT_EXECUTE if name == "BootExecute" else ()
            extra = [e for e in entries if e.strip().lower() not in {d.lower() for d in default}]
            if extra:
                out[name] = extra
        return out

    def timeline_entries(self) -> list[Entry]:
        entries = [Entry(c.time, DRIVER_CHANGE, f"registry {c.key}", f"service key {c.name} last written", c.name)
                   for c in self.changed]
        entries += [Entry(m.time, DRIVER_CHANGE, "registry Services",
                          f"{m.count} service keys written in the same minute (a boot or an installer)", None)
                    for m in self.mass_writes]
        return entries

    def to_dict(self) -> dict:
        window = self.window
        return {
            "control_set": self.control_set,
            "anchor": iso(self.anchor),
            "window_days": self.window_days,
            "window": [iso(window[0]), iso(window[1])] if window else None,
            "changed": [c.to_dict() for c in self.changed],
            "installed": [c.to_dict() for c in self.installed],
            "mass_writes": [m.to_dict() for m in self.mass_writes],
            "pending_renames": [r.to_dict() for r in self.renames],
            "execute": self.execute,
            "unusual_execute": self.unusual_execute(),
            "crash_control": self.crash_control.to_dict(),
        }


# -- reading -------------------------------------------------------------------------------------
def read_crash_control(hive: Hive, control_set: str) -> CrashControl:
    key = hive.find_key(f"{control_set}\\{CRASH_CONTROL}")
    memory = hive.find_key(f"{control_set}\\{MEMORY_MANAGEMENT}")
    paging = None
    if memory is not None and memory.value("PagingFiles") is not None:
        paging = _strings(memory.get("PagingFiles"))
    if key is None:
        return CrashControl(False, paging_files=paging)
    text = lambda name: key.get(name) if isinstance(key.get(name), str) else None  # noqa: E731
    return CrashControl(True, _int(key.get("CrashDumpEnabled")), _int(key.get("AutoReboot")),
                        _int(key.get("FilterPages")), text("DumpFile"), text("MinidumpDir"),
                        text("DedicatedDumpFile"), paging)


def _file_index(table) -> dict[str, str]:
    """Folded volume path and folded file name -> service name, for the drivers of ``table``."""
    index: dict[str, str] = {}
    for svc in table.services:
        path = (svc.file.path if svc.file is not None and svc.file.path else None) or (
            svc.image.resolved if svc.image is not None else None)
        if path:
            index.setdefault(fold_name(path), svc.name)
            index.setdefault(fold_name(PureWindowsPath(path).name), svc.name)
    return index


def volume_path(text: str, table) -> str | None:
    """A path as Windows writes it (\\??\\C:\\..., C:\\..., %SystemRoot%\\...) on the Windows volume."""
    from offline_fix.windows.services import resolve_image_path

    resolved = resolve_image_path(text.lstrip("!").strip(), "", 1, table.windows_dir, drive=table.drive)
    return resolved.resolved


def read_renames(hive: Hive, control_set: str, table) -> list[PendingRename]:
    key = hive.find_key(f"{control_set}\\{SESSION_MANAGER}")
    if key is None:
        return []
    files = _file_index(table)
    out = []
    for value_name in RENAME_VALUES:
        items = _strings(key.get(value_name))[:2 * MAX_RENAMES]
        # the list is pairs; a trailing lone source is kept with no destination
        for i in range(0, len(items), 2):
            source = items[i]
            dest = items[i + 1] if i + 1 < len(items) else ""
            if not source:
                continue
            rename = PendingRename(source, dest.lstrip("!") or None, dest.startswith("!"), value_name)
            for text in (source, dest):
                if not text:
                    continue
                path = volume_path(text, table)
                name = files.get(fold_name(path)) if path else None
                if name is None and text.lower().endswith(".sys"):
                    name = files.get(fold_name(PureWindowsPath(text.lstrip("!")).name))
                if name is not None:
                    rename.service = name
                    break
            out.append(rename)
    return out


def read_execute(hive: Hive, control_set: str) -> dict[str, list[str]]:
    key = hive.find_key(f"{control_set}\\{SESSION_MANAGER}")
    if key is None:
        return {}
    return {name: _strings(key.get(name)) for name in EXECUTE_VALUES if key.value(name) is not None}


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def key_changes(table, anchor: datetime | None, window_days: int) -> tuple[list[ServiceChange], list[MassWrite]]:
    """Driver keys written in the window before ``anchor``: single changes, and mass writes."""
    if anchor is None:
        return [], []
    start = anchor - timedelta(days=window_days)
    by_minute: dict[datetime, list] = defaultdict(list)
    for svc in table.services:
        when = svc.last_written
        if when is not None and start <= when <= anchor:
            by_minute[_minute(when)].append(svc)
    changed, mass = [], []
    for minute, services in sorted(by_minute.items()):
        if len(services) > MASS_WRITE:
            names = sorted(s.name for s in services)
            mass.append(MassWrite(minute, len(services), names[:8]))
            continue
        for svc in services:
            changed.append(ServiceChange(svc.name, svc.last_written, "key last-write", svc.key,
                                         svc.image.stored if svc.image else None))
    changed.sort(key=lambda c: c.time)
    return changed, mass


def installed_drivers(events, anchor: datetime | None, window_days: int) -> list[ServiceChange]:
    """SCM 7045 events that installed a kernel or file-system driver (any time; in_window marked)."""
    out = []
    start = anchor - timedelta(days=window_days) if anchor is not None else None
    for e in events:
        if e.event_id != 7045 or not e.names:
            continue
        kind = str(e.data.get("service_type", "")).strip().lower()
        if kind not in DRIVER_SERVICE_TYPES and kind not in ("1", "2"):
            continue
        in_window = anchor is not None and start <= e.time <= anchor
        out.append(ServiceChange(e.names[0], e.time, f"SCM 7045 record {e.record_id}", None, e.path, in_window))
    return out


def read_registry(hive: Hive, table, *, anchor: datetime | None = None, events=(),
                  window_days: int = WINDOW_DAYS) -> RegistryEvidence:
    """Registry evidence of the control set ``table`` was read from (``table``: a ServiceTable of
    offline_fix.windows.services, with driver files probed); ``events``: event log Events (7045)."""
    cs = table.control_set
    changed, mass = key_changes(table, anchor, window_days)
    return RegistryEvidence(
        control_set=cs, anchor=anchor, window_days=window_days, changed=changed,
        installed=installed_drivers(events, anchor, window_days), mass_writes=mass,
        renames=read_renames(hive, cs, table), execute=read_execute(hive, cs),
        crash_control=read_crash_control(hive, cs),
    )


def all_services(hive: Hive, control_set: str) -> dict[str, tuple[str, int | None, int | None]]:
    """Every service key of the control set (Win32 services too): folded name -> (name, Type, Start)."""
    key = hive.find_key(f"{control_set}\\Services")
    out = {}
    for sub in key.subkeys() if key is not None else ():
        values = {fold_name(v.name): v.data for v in sub.values()}
        out[fold_name(sub.name)] = (sub.name, _int(values.get(fold_name("Type"))), _int(values.get(fold_name("Start"))))
    return out
