"""Services and drivers of an offline Windows install: what the SYSTEM hive says, where each
driver file is, which device classes and devices load it as a filter, and whether Windows could
still reach its disk without it. Pure functions over a Hive and a FileSystem; no CLI.

Registry layout (Microsoft: "HKLM\\SYSTEM\\CurrentControlSet\\Services Registry Tree", "Specifying
Driver Load Order", "Filter Drivers"): ``ControlSet00N\\Services\\<name>`` holds Type (1 kernel
driver, 2 file system driver, 4 adapter, 8 recognizer; 0x10 / 0x20 / 0x50 / 0x60 and the 0x100
flag are Win32 services), Start (0 Boot, 1 System, 2 Automatic, 3 Manual, 4 Disabled),
ErrorControl (0 Ignore, 1 Normal, 2 Severe, 3 Critical), Group, Tag, DisplayName (``@file,-id``
strings are kept as stored), ImagePath; a StartOverride subkey holds DWORD values named "0",
"1", ... that win over Start. Device classes: ``Control\\Class\\{GUID}`` (its Class value is the
class name) with UpperFilters / LowerFilters (REG_MULTI_SZ); devices: ``Enum\\<bus>\\<device>\\
<instance>`` with Service (the function driver), ClassGUID, ConfigFlags and their own
UpperFilters / LowerFilters.

ImagePath forms Windows accepts (resolved to a path on the Windows volume):
``\\SystemRoot\\...``; a relative ``System32\\drivers\\x.sys`` (relative to the Windows folder);
``\\??\\C:\\...`` (also ``\\DosDevices\\`` and ``\\GLOBAL??\\``); ``%SystemRoot%\\...`` /
``%windir%\\...`` and the other system variables; ``C:\\...`` (the install's own drive letter,
from MountedDevices, else C:); quoted with arguments for Win32 services. No ImagePath means
``System32\\drivers\\<name>.sys`` for a driver. The Windows folder is the one holding the SYSTEM
hive that was read.

Boot-critical rule (``drivers disable`` refuses these without --force, saying why). A driver is
boot-critical when Windows cannot reach or mount its system disk without it:
1. always: disk, partmgr, volmgr, volmgrx, mountmgr, volume, ntfs, refs (storage and file-system
   stack), pci, acpi, msisadrv, vdrvroot (the buses below it), and Wdf01000, ksecdd, cng, fltmgr,
   clfs (boot-start libraries the storage stack and file systems load with);
2. fvevol, when a volume of the target is BitLocker-encrypted (it decrypts the volume);
3. a storage miniport in use: the function driver (Enum ... Service) of a present device of class
   SCSIAdapter or HDC ({4d36e97b-...}, {4d36e96a-...}) on a hardware bus (not ROOT), e.g.
   storvsc, stornvme, AWSNVMe, xenvbd, LSI_SAS, pvscsi, vioscsi, storahci, atapi, intelide;
4. vmbus, when it or a storage miniport is bound to a present VMBUS device (Hyper-V, Azure);
5. any Start=0 driver of the groups "Boot Bus Extender", "System Bus Extender", "SCSI miniport"
   or "Boot File System" that is the function driver of a present hardware device (not ROOT,
   SW or SWD: those are software devices such as the composite battery).
A device is present unless its ConfigFlags say disabled (0x1) or removed (0x2), or its
DEVPKEY_Device_LastRemovalDate is later than its DEVPKEY_Device_LastArrivalDate (Windows 8+;
{83da6326-97a6-4088-9453-a1923f573b29} 0x67 and 0x66 under Properties). Root\\LEGACY_* entries
(Windows 7 and earlier record there that a non-PnP driver was loaded) are not devices. Being a
filter never makes a driver critical: disabling one removes it from the filter lists too.

Disabling (``plan_disable``): Start=4 in every ControlSet00N holding the service (the one that
boots, Default and LastKnownGood alike), every StartOverride value deleted, and the name taken
out of every class and device UpperFilters / LowerFilters list that names it (others kept in
order; a list left empty is deleted, as Windows' own inf uninstall does). Each operation carries
the old type and bytes, so that ``plan_enable`` can put everything back exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

from offline_fix.errors import NotFound, OfflineFixError
from offline_fix.hive import Hive, Key
from offline_fix.hive.reader import fold_name
from offline_fix.hive.structures import REG_DWORD, REG_MULTI_SZ
from offline_fix.windows import system

# -- constants (Microsoft names; wdm.h SERVICE_*, cfg.h CONFIGFLAG_*, devpkey.h) ---------------------
SERVICE_KERNEL_DRIVER = 0x1
SERVICE_FILE_SYSTEM_DRIVER = 0x2
SERVICE_ADAPTER = 0x4
SERVICE_RECOGNIZER_DRIVER = 0x8
SERVICE_DRIVER_MASK = 0xF
SERVICE_WIN32_MASK = 0x3F0  # own/share process, user services, interactive

TYPE_NAMES = {
    0x1: "kernel", 0x2: "file-system", 0x4: "adapter", 0x8: "recognizer",
    0x10: "own-process", 0x20: "share-process", 0x50: "user-own-process", 0x60: "user-share-process",
    0x110: "own-process-interactive", 0x120: "share-process-interactive",
}
START_NAMES = {0: "boot", 1: "system", 2: "automatic", 3: "manual", 4: "disabled"}
ERROR_CONTROL_NAMES = {0: "ignore", 1: "normal", 2: "severe", 3: "critical"}
SERVICE_DISABLED = 4

CONFIGFLAG_DISABLED = 0x1
CONFIGFLAG_REMOVED = 0x2
DEVPKEY_DEVICE_TIMES = "{83da6326-97a6-4088-9453-a1923f573b29}"
DEVPROP_LAST_ARRIVAL = "0066"  # DEVPKEY_Device_LastArrivalDate, pid 102
DEVPROP_LAST_REMOVAL = "0067"  # DEVPKEY_Device_LastRemovalDate, pid 103

CLASS_SCSI_ADAPTER = "{4d36e97b-e325-11ce-bfc1-08002be10318}"
CLASS_HDC = "{4d36e96a-e325-11ce-bfc1-08002be10318}"
CLASS_DISK_DRIVE = "{4d36e967-e325-11ce-bfc1-08002be10318}"
CLASS_VOLUME = "{71a27cdd-812a-11d0-bec7-08002be2092f}"
STORAGE_CLASSES = frozenset((CLASS_SCSI_ADAPTER, CLASS_HDC))
FILTER_VALUES = ("UpperFilters", "LowerFilters")

ALWAYS_CRITICAL = {
    "disk": "the disk class driver: without it no disk is seen",
    "partmgr": "the partition manager: without it no partition is seen",
    "volmgr": "the volume manager: without it no volume is created",
    "volmgrx": "the dynamic-disk volume manager",
    "mountmgr": "the mount manager: without it the system volume gets no name",
    "volume": "the volume class driver",
    "ntfs": "the NTFS file system driver: the Windows volume cannot be mounted without it",
    "refs": "the ReFS file system driver",
    "pci": "the PCI bus driver, below every disk controller",
    "acpi": "the ACPI driver, the root of the device tree",
    "msisadrv": "the ISA bus driver below the PCI-to-ISA bridge",
    "vdrvroot": "the virtual drive enumerator (VHD boot)",
    "wdf01000": "the kernel-mode driver framework that boot-start drivers load with",
    "ksecdd": "kernel security support, loaded at boot by the file systems",
    "cng": "kernel cryptography, loaded at boot",
    "fltmgr": "the file system filter manager",
    "clfs": "the common log file system the registry and NTFS use at boot",
}
BOOT_GROUPS = frozenset(("boot bus extender", "system bus extender", "scsi miniport", "boot file system"))
MAX_DRIVER_SCAN = 512 * 1024 * 1024  # all-zero check: read at most this much of a file
SCAN_CHUNK = 64 * 1024
SCAN_HEAD = 512
MAX_ENUM_INSTANCES = 200_000  # a hostile hive cannot make the Enum walk unbounded


class ServiceNotFound(NotFound):
    """A service name that is in no control set."""


# -- small helpers -------------------------------------------------------------------------------
def _values(key: Key) -> dict:
    """Every value of a key, by folded name (one pass over the value list)."""
    return {fold_name(v.name): v for v in key.values()}


def _data(values: dict, name: str):
    v = values.get(fold_name(name))
    return None if v is None else v.data


def _int(data) -> int | None:
    return data if isinstance(data, int) and not isinstance(data, bool) else None


def _str(data) -> str | None:
    return data if isinstance(data, str) else None


def _filter_entries(value) -> list[str]:
    """A filter list as names: REG_MULTI_SZ as stored, a lone REG_SZ as one name."""
    if value is None:
        return []
    if isinstance(value.data, list):
        return [s for s in value.data if s]
    if isinstance(value.data, str) and value.data:
        return [value.data]
    return []


def type_label(code: int | None) -> str:
    if code is None:
        return "none"
    return TYPE_NAMES.get(code) or (TYPE_NAMES.get(code & ~0x100, f"{code:#x}") + ("-interactive" if code & 0x100 else ""))


def is_driver_type(code: int | None) -> bool:
    return code is not None and bool(code & SERVICE_DRIVER_MASK) and not code & SERVICE_WIN32_MASK


def jsonable(data):
    """Value data as JSON can hold it (bytes as hex)."""
    return data.hex() if isinstance(data, (bytes, bytearray)) else data


# -- ImagePath -----------------------------------------------------------------------------------
@dataclass
class ImagePath:
    stored: str | None  # as in the registry (None: no ImagePath value)
    resolved: str | None  # path on the Windows volume, or None (elsewhere / not a file path)
    form: str  # systemroot, relative, nt-dos, environment, absolute, default, unresolved
    note: str | None = None

    def to_dict(self) -> dict:
        d = {"stored": self.stored, "resolved": self.resolved, "form": self.form}
        if self.note:
            d["note"] = self.note
        return d


_NT_DOS_PREFIXES = ("\\??\\", "\\dosdevices\\", "\\global??\\")
_ENV_FIXED = {"%programfiles%": "Program Files", "%programfiles(x86)%": "Program Files (x86)",
              "%programw6432%": "Program Files", "%commonprogramfiles%": "Program Files\\Common Files",
              "%programdata%": "ProgramData", "%allusersprofile%": "ProgramData", "%systemdrive%": ""}


def _split_command(text: str) -> list[str]:
    """Candidate program paths of a Win32 ImagePath: the quoted part, else each prefix ending at
    a space (CreateProcess tries them shortest first), then the whole text."""
    text = text.strip()
    if text.startswith('"'):
        end = text.find('"', 1)
        return [text[1:end] if end > 0 else text[1:]]
    out = [text[:i] for i, ch in enumerate(text) if ch == " " and text[:i]]
    return out + [text]


def _on_volume(path: str, windows_dir: str, drive: str) -> tuple[str | None, str, str | None]:
    """(volume path, form, note) for one path text (no quotes, no arguments)."""
    p = path.strip().replace("/", "\\")
    low = p.lower()
    form = "absolute"
    for prefix in _NT_DOS_PREFIXES:
        if low.startswith(prefix):
            p = p[len(prefix):]
            low = p.lower()
            form = "nt-dos"
            break
    if low.startswith("\\systemroot\\") or low == "\\systemroot":
        return _join(windows_dir, p[len("\\systemroot"):]), "systemroot", None
    if low.startswith("%"):
        end = low.find("%", 1)
        var = low[:end + 1] if end > 0 else low
        rest = p[len(var):]
        if var in ("%systemroot%", "%windir%"):
            return _join(windows_dir, rest), "environment", None
        if var in _ENV_FIXED:
            return _join(_ENV_FIXED[var], rest), "environment", None
        return None, "unresolved", f"environment variable {p[:len(var)]} is not known offline"
    if len(p) >= 2 and p[1] == ":":
        if p[:2].upper() != drive.upper():
            return None, "unresolved", f"on drive {p[:2].upper()}, not on the Windows volume ({drive})"
        return _join("", p[2:]), form, None
    if form == "nt-dos":
        return None, "unresolved", "an NT path that names no drive letter"
    if p.startswith("\\"):
        if low.startswith("\\device\\") or low.startswith("\\??"):
            return None, "unresolved", "an NT device path, not resolvable offline"
        return _join("", p), "absolute", None
    return _join(windows_dir, p), "relative", None


def _join(base: str, rest: str) -> str:
    parts = [x for x in base.split("\\") if x] + [x for x in rest.split("\\") if x and x != "."]
    return "\\".join(parts)


def resolve_image_path(stored: str | None, name: str, type_: int | None, windows_dir: str, *,
                       drive: str = "C:", exists=None) -> ImagePath:
    """Where the file of a service is on the Windows volume. ``exists(path) -> bool`` picks among
    the candidates of an unquoted Win32 command line with spaces (as CreateProcess does)."""
    if not stored or not stored.strip():
        if is_driver_type(type_):
            return ImagePath(stored, _join(windows_dir, f"System32\\drivers\\{name}.sys"), "default")
        return ImagePath(stored, None, "unresolved", "no ImagePath")
    if is_driver_type(type_):
        text = stored.strip()
        candidates = [text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text]
    else:
        candidates = _split_command(stored)
    first = None
    for cand in candidates:
        path, form, note = _on_volume(cand, windows_dir, drive)
        if first is None or (first[0] is None and path is not None):
            first = (path, form, note)
        if path is not None and exists is not None and exists(path):
            return ImagePath(stored, path, form, note)
    path, form, note = first
    return ImagePath(stored, path, form, note)


def windows_dir_of(system_hive_path: str) -> str:
    r"""The Windows folder of an install: "Windows" for Windows\System32\config\SYSTEM."""
    parts = system_hive_path.replace("/", "\\").split("\\")
    if len(parts) >= 3 and [p.lower() for p in parts[-3:]] == ["system32", "config", "system"]:
        return "\\".join(parts[:-3])
    return "Windows"


def system_drive(hive: Hive, *, mbr_signature: str | None = None, offset: int | None = None,
                 gpt_guid: str | None = None) -> str | None:
    r"""The drive letter Windows gives the volume (SYSTEM\MountedDevices: 12 bytes = MBR disk
    signature + partition offset, or "DMIO:ID:" + the GPT partition GUID), or None."""
    import uuid

    key = hive.find_key("MountedDevices")
    if key is None:
        return None
    wanted = []
    if mbr_signature is not None and offset is not None:
        wanted.append(struct.pack("<IQ", int(mbr_signature, 16), offset))
    if gpt_guid:
        wanted.append(b"DMIO:ID:" + uuid.UUID(gpt_guid).bytes_le)
    for v in key.values():
        name = v.name.upper()
        if name.startswith("\\DOSDEVICES\\") and len(name) == 14 and name[13] == ":" and v.raw in wanted:
            return name[12:14]
    return None


# -- driver files --------------------------------------------------------------------------------
@dataclass
class DriverFile:
    path: str | None
    exists: bool
    size: int | None = None
    all_zero: bool | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        d = {"path": self.path, "exists": self.exists, "size": self.size, "all_zero": self.all_zero}
        if self.note:
            d["note"] = self.note
        return d


class FileProbe:
    """Looks files up on a volume, listing each folder once (most services have no file on a
    test disk; a miss then costs no lookup). Sizes come from the file itself (FileSystem.stat),
    never from the folder listing, whose NTFS index copies can be stale."""

    def __init__(self, fs) -> None:
        self.fs = fs
        self._dirs: dict[str, dict | None] = {}

    def _listing(self, folder: str) -> dict | None:
        """name.casefold() -> Entry of the files in ``folder`` (None when it cannot be listed)."""
        key = folder.lower()
        if key not in self._dirs:
            try:
                self._dirs[key] = {e.name.casefold(): e for e in self.fs.listdir(folder) if not e.is_dir}
            except OfflineFixError:
                self._dirs[key] = None
        return self._dirs[key]

    def exists(self, path: str) -> bool:
        folder, _, name = path.rpartition("\\")
        listing = self._listing(folder)
        return listing is not None and name.casefold() in listing

    def probe(self, path: str | None) -> DriverFile:
        if path is None:
            return DriverFile(None, False, note="no file path")
        if not self.exists(path):
            return DriverFile(path, False)
        folder, _, name = path.rpartition("\\")
        entry = self._listing(folder)[name.casefold()]
        path = f"{folder}\\{entry.name}" if folder else path
        if entry.is_link and self.fs.kind == "ntfs":
            return DriverFile(path, True, note="a junction or symbolic link inside the image; not followed")
        try:
            size = self.fs.stat(path).size
            with self.fs.open(path) as fh:
                return DriverFile(path, True, size, self._all_zero(fh, path, size))
        except OfflineFixError as exc:
            return DriverFile(path, True, note=f"unreadable: {exc}")

    @staticmethod
    def _all_zero(fh, path: str, size: int) -> bool | None:
        """True when every byte is zero (read in chunks, stopping at the first non-zero one)."""
        if size == 0:
            return False
        if size > MAX_DRIVER_SCAN:
            return None
        done = 0
        while done < size:  # a first small read settles nearly every file (a PE starts "MZ")
            chunk = fh.read(min(SCAN_HEAD if done == 0 else SCAN_CHUNK, size - done))
            if not chunk:
                raise OfflineFixError(f"{path}: ended after {done} of {size} bytes")
            if chunk.count(0) != len(chunk):
                return False
            done += len(chunk)
        return True


# -- filters and devices -------------------------------------------------------------------------
@dataclass
class FilterList:
    control_set: str
    key: str  # hive path of the key that holds the value
    value: str  # UpperFilters or LowerFilters (casing as stored)
    entries: list[str]
    type: int
    scope: str  # "class" or "device"
    class_guid: str | None
    class_name: str | None
    device: str | None = None  # bus\device\instance under Enum

    def names(self, service: str) -> bool:
        want = fold_name(service)
        return any(fold_name(e) == want for e in self.entries)

    def to_dict(self) -> dict:
        d = {"scope": self.scope, "list": self.value, "class_guid": self.class_guid,
             "class_name": self.class_name, "entries": self.entries, "key": self.key}
        if self.device:
            d["device"] = self.device
        return d


@dataclass
class Device:
    instance: str  # bus\device\instance
    service: str | None
    class_guid: str | None
    present: bool
    why_absent: str | None = None

    @property
    def bus(self) -> str:
        return self.instance.split("\\", 1)[0].upper()

    def to_dict(self) -> dict:
        d = {"instance": self.instance, "class_guid": self.class_guid, "present": self.present}
        if self.why_absent:
            d["why_absent"] = self.why_absent
        return d


def _filetime(key: Key | None) -> int | None:
    if key is None:
        return None
    v = key.value("")
    if v is None or len(v.raw) != 8:
        return None
    return struct.unpack("<Q", v.raw)[0]


def _presence(inst: Key, values: dict) -> tuple[bool, str | None]:
    flags = _int(_data(values, "ConfigFlags")) or 0
    if flags & CONFIGFLAG_DISABLED:
        return False, "disabled (ConfigFlags 0x1)"
    if flags & CONFIGFLAG_REMOVED:
        return False, "removed (ConfigFlags 0x2)"
    props = inst.subkey("Properties")
    times = props.subkey(DEVPKEY_DEVICE_TIMES) if props is not None else None
    if times is not None:
        arrival = _filetime(times.subkey(DEVPROP_LAST_ARRIVAL))
        removal = _filetime(times.subkey(DEVPROP_LAST_REMOVAL))
        if removal is not None and (arrival is None or removal > arrival):
            return False, "removed after it last arrived (LastRemovalDate)"
    return True, None


def _class_names(hive: Hive, control_set: str) -> dict[str, str | None]:
    key = hive.find_key(f"{control_set}\\Control\\Class")
    out = {}
    for cls in key.subkeys() if key is not None else ():
        out[cls.name.lower()] = _str(cls.get("Class"))
    return out


def read_filters_and_devices(hive: Hive, control_set: str) -> tuple[list[FilterList], list[Device], list[str]]:
    """Every class and device filter list of a control set, every device instance, and warnings."""
    filters: list[FilterList] = []
    devices: list[Device] = []
    warnings: list[str] = []
    names = _class_names(hive, control_set)
    classes = hive.find_key(f"{control_set}\\Control\\Class")
    for cls in classes.subkeys() if classes is not None else ():
        vals = _values(cls)
        for which in FILTER_VALUES:
            v = vals.get(fold_name(which))
            if v is not None and _filter_entries(v):
                filters.append(FilterList(control_set, f"{control_set}\\Control\\Class\\{cls.name}", v.name,
                                          _filter_entries(v), v.type, "class", cls.name, names.get(cls.name.lower())))
    enum = hive.find_key(f"{control_set}\\Enum")
    count = 0
    for bus in enum.subkeys() if enum is not None else ():
        for dev in bus.subkeys():
            for inst in dev.subkeys():
                count += 1
                if count > MAX_ENUM_INSTANCES:
                    warnings.append(f"{control_set}\\Enum holds more than {MAX_ENUM_INSTANCES} device instances; "
                                    "the rest were not read")
                    return filters, devices, warnings
                if bus.name.upper() == "ROOT" and dev.name.upper().startswith("LEGACY_"):
                    continue
                vals = _values(inst)
                instance = f"{bus.name}\\{dev.name}\\{inst.name}"
                cls_guid = _str(_data(vals, "ClassGUID"))
                service = _str(_data(vals, "Service"))
                present, why = _presence(inst, vals)
                devices.append(Device(instance, service, cls_guid.lower() if cls_guid else None, present, why))
                for which in FILTER_VALUES:
                    v = vals.get(fold_name(which))
                    if v is not None and _filter_entries(v):
                        filters.append(FilterList(control_set, f"{control_set}\\Enum\\{instance}", v.name,
                                                  _filter_entries(v), v.type, "device", cls_guid,
                                                  names.get(cls_guid.lower()) if cls_guid else None, instance))
    return filters, devices, warnings


# -- services ------------------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    key: str  # hive path, e.g. ControlSet001\Services\disk
    type: int | None
    start: int | None
    error_control: int | None = None
    group: str | None = None
    tag: int | None = None
    display_name: str | None = None
    start_override: dict[str, int | None] = field(default_factory=dict)
    image: ImagePath | None = None
    file: DriverFile | None = None
    filters: list[FilterList] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    boot_critical: str | None = None  # the reason, or None
    last_written: datetime | None = None

    @property
    def is_driver(self) -> bool:
        return is_driver_type(self.type)

    @property
    def start_name(self) -> str | None:
        return None if self.start is None else START_NAMES.get(self.start, str(self.start))

    def problems(self) -> list[str]:
        out = []
        if self.file is not None and self.start is not None and self.start != SERVICE_DISABLED and self.is_driver:
            loads = self.start <= 2 or any(d.present for d in self.devices)  # loaded at boot, or for a device
            if self.file.path is not None and not self.file.exists:
                if loads:
                    out.append("file missing")
            elif self.file.all_zero:
                out.append("file is all zeros")
            elif self.file.size == 0:
                out.append("file is empty")
        return out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "type": self.type,
            "type_name": type_label(self.type),
            "start": self.start,
            "start_name": self.start_name,
            "start_override": self.start_override or None,
            "error_control": self.error_control,
            "error_control_name": None if self.error_control is None else ERROR_CONTROL_NAMES.get(self.error_control),
            "group": self.group,
            "tag": self.tag,
            "image_path": self.image.to_dict() if self.image else None,
            "file": self.file.to_dict() if self.file else None,
            "filters": [f.to_dict() for f in self.filters],
            "devices": [d.to_dict() for d in self.devices],
            "boot_critical": self.boot_critical is not None,
            "boot_critical_reason": self.boot_critical,
            "last_written": self.last_written.isoformat() if self.last_written else None,
            "key": self.key,
            "problems": self.problems(),
        }


@dataclass
class ServiceTable:
    control_set: str
    windows_dir: str
    drive: str
    services: list[Service]
    filters: list[FilterList]
    devices: list[Device]
    warnings: list[str] = field(default_factory=list)

    def get(self, name: str) -> Service | None:
        want = fold_name(name)
        return next((s for s in self.services if fold_name(s.name) == want), None)


def _read_service(key: Key, control_set: str) -> Service:
    vals = _values(key)
    override = {}
    sub = key.subkey("StartOverride")
    if sub is not None:
        override = {v.name: _int(v.data) for v in sub.values()}
    return Service(
        name=key.name,
        key=f"{control_set}\\Services\\{key.name}",
        type=_int(_data(vals, "Type")),
        start=_int(_data(vals, "Start")),
        error_control=_int(_data(vals, "ErrorControl")),
        group=_str(_data(vals, "Group")),
        tag=_int(_data(vals, "Tag")),
        display_name=_str(_data(vals, "DisplayName")),
        start_override=override,
        image=None,
        last_written=key.last_written,
    )


def devices_by_service(devices: list[Device]) -> dict[str, list[Device]]:
    """Device instances by the lowercased name of their function driver."""
    out: dict[str, list[Device]] = {}
    for d in devices:
        if d.service:
            out.setdefault(d.service.lower(), []).append(d)
    return out


def critical_reason(svc: Service, by_service: dict[str, list[Device]], *, bitlocker: bool = False) -> str | None:
    """Why Windows could not reach or mount its disk without ``svc`` (None: it could)."""
    low = svc.name.lower()
    if low in ALWAYS_CRITICAL:
        return ALWAYS_CRITICAL[low]
    if low == "fvevol" and bitlocker:
        return "BitLocker's volume filter: the encrypted volume cannot be read without it"
    present = [d for d in by_service.get(low, []) if d.present]
    storage = [d for d in present if d.class_guid in STORAGE_CLASSES and d.bus not in ("ROOT", "SW", "SWD")]
    if storage:
        return f"the storage miniport of the disk controller {storage[0].instance}"
    if low == "vmbus":
        vm_devices = [d for devs in by_service.values() for d in devs if d.present and d.bus == "VMBUS"]
        if present or vm_devices:
            return "the Hyper-V/Azure VMBus: the synthetic disk controller (storvsc) sits on it"
    hardware = [d for d in present if d.bus not in ("ROOT", "SW", "SWD")]
    if svc.start == 0 and (svc.group or "").lower() in BOOT_GROUPS and hardware:
        return f"a boot-start \"{svc.group}\" driver bound to the present device {hardware[0].instance}"
    return None


def list_services(hive: Hive, fs=None, *, control_set: str | None = None, windows_dir: str = "Windows",
                  drive: str | None = None, include_win32: bool = False, bitlocker: bool = False) -> ServiceTable:
    """The services of ``control_set`` (default: the one that boots), drivers only unless
    ``include_win32``; with ``fs``, each driver file is looked up and checked."""
    control_set = control_set or system.current_control_set(hive)
    services_key = hive.find_key(f"{control_set}\\Services")
    if services_key is None:
        raise NotFound(f"{control_set} has no Services key", path=hive.path)
    drive = drive or "C:"
    filters, devices, warnings = read_filters_and_devices(hive, control_set)
    by_service = devices_by_service(devices)
    probe = FileProbe(fs) if fs is not None else None
    out = []
    for key in services_key.subkeys():
        svc = _read_service(key, control_set)
        if not svc.is_driver and not include_win32:
            continue
        vals_path = _data(_values(key), "ImagePath")
        svc.image = resolve_image_path(_str(vals_path), svc.name, svc.type, windows_dir, drive=drive,
                                       exists=probe.exists if probe else None)
        if probe is not None and (svc.image.resolved is not None or svc.is_driver):
            svc.file = probe.probe(svc.image.resolved)
        svc.filters = [f for f in filters if f.names(svc.name)]
        svc.devices = by_service.get(svc.name.lower(), [])
        svc.boot_critical = critical_reason(svc, by_service, bitlocker=bitlocker) if svc.is_driver else None
        out.append(svc)
    warnings.extend(hive.warnings[:20])
    return ServiceTable(control_set, windows_dir, drive, out, filters, devices, warnings)


# -- disable / enable plans ----------------------------------------------------------------------
@dataclass
class RegOp:
    """One registry change of a disable or enable, with what was there before (type and bytes),
    so that it can be reversed exactly."""

    op: str  # "set" or "delete-value"
    key: str
    name: str
    type: int | None = None
    data: object = None
    old: object = None  # decoded (JSON-able) old data, None when the value was absent
    old_type: int | None = None
    old_raw: bytes | None = None
    service: str = ""
    control_set: str = ""
    role: str = ""  # start, start-override, filter
    filter: dict | None = None  # scope, class_guid, class_name, device, index

    def extra(self) -> dict:
        """What goes into the journal beside the generic Edit description."""
        d = {"service": self.service, "control_set": self.control_set, "role": self.role,
             "old_type_code": self.old_type, "old_raw": None if self.old_raw is None else self.old_raw.hex()}
        if self.filter is not None:
            d["filter"] = self.filter
        return d

    def describe(self) -> str:
        """One line: where, old -> new."""
        where = f"{self.key}\\{self.name}"
        if self.role == "filter":
            f = self.filter or {}
            what = f.get("class_name") or f.get("class_guid") or "?"
            where = (f"{self.key} ({'device of class ' if f.get('scope') == 'device' else 'class '}{what}) {self.name}")
            old = ", ".join(self.old or []) if isinstance(self.old, list) else self.old
            new = "(value deleted)" if self.op == "delete-value" else (", ".join(self.data) if isinstance(self.data, list) else self.data)
            if self.old is None:
                old = "(absent)"
            return f"{where}: {old} -> {new}"
        old = "(absent)" if self.old_type is None else _show(self.old)
        new = "(value deleted)" if self.op == "delete-value" else _show(self.data)
        return f"{where}: {old} -> {new}"


def _show(data) -> str:
    if isinstance(data, int) and not isinstance(data, bool) and 0 <= data <= 4:
        return f"{data} ({START_NAMES[data]})"
    if isinstance(data, list):
        return ", ".join(data) or "(empty)"
    return repr(data) if not isinstance(data, int) else str(data)


def _old(value) -> tuple[object, int | None, bytes | None]:
    return (None, None, None) if value is None else (jsonable(value.data), value.type, value.raw)


def _service_keys(hive: Hive, name: str) -> list[tuple[str, Key]]:
    """(control set, service key) for every ControlSet00N holding the service."""
    found = []
    for cs in system.control_sets(hive).present:
        services = hive.find_key(f"{cs}\\Services")
        key = services.subkey(name) if services is not None else None
        if key is not None:
            found.append((cs, key))
    return found


def service_control_sets(hive: Hive, name: str) -> list[tuple[str, Key]]:
    found = _service_keys(hive, name)
    if not found:
        raise ServiceNotFound(f"no service {name!r} in any control set of this SYSTEM hive", path=hive.path)
    return found


def plan_disable(hive: Hive, name: str, *, keep_filters: bool = False) -> list[RegOp]:
    """The operations that disable ``name`` everywhere (see the module docstring)."""
    ops: list[RegOp] = []
    found = service_control_sets(hive, name)
    real = found[0][1].name
    for cs, key in found:
        start = key.value("Start")
        if start is None or start.data != SERVICE_DISABLED or start.type != REG_DWORD:
            old, old_type, raw = _old(start)
            ops.append(RegOp("set", key.path, start.name if start else "Start", REG_DWORD, SERVICE_DISABLED,
                             old, old_type, raw, real, cs, "start"))
        override = key.subkey("StartOverride")
        for v in override.values() if override is not None else ():
            old, old_type, raw = _old(v)
            ops.append(RegOp("delete-value", override.path, v.name, None, None, old, old_type, raw, real, cs,
                             "start-override"))
    if not keep_filters:
        for cs, _key in found:
            for fl in read_filters_and_devices(hive, cs)[0]:
                if fl.names(real):
                    ops.append(_filter_removal(hive, fl, real))
    return ops


def _filter_removal(hive: Hive, fl: FilterList, service: str) -> RegOp:
    value = hive.key(fl.key).value(fl.value)
    old, old_type, raw = _old(value)
    want = fold_name(service)
    kept = [e for e in fl.entries if fold_name(e) != want]
    index = next(i for i, e in enumerate(fl.entries) if fold_name(e) == want)
    info = {"scope": fl.scope, "class_guid": fl.class_guid, "class_name": fl.class_name, "device": fl.device,
            "index": index, "entries": fl.entries}
    if kept:
        return RegOp("set", fl.key, fl.value, REG_MULTI_SZ, kept, old, old_type, raw, service, fl.control_set,
                     "filter", info)
    return RegOp("delete-value", fl.key, fl.value, None, None, old, old_type, raw, service, fl.control_set,
                 "filter", info)


def plan_enable_start(hive: Hive, name: str, start: int) -> list[RegOp]:
    """Enable without a journal entry: Start=``start`` in every control set holding the service."""
    if start not in START_NAMES or start == SERVICE_DISABLED:
        raise OfflineFixError(f"--start must be 0 to 3, not {start}")
    ops = []
    for cs, key in service_control_sets(hive, name):
        value = key.value("Start")
        if value is None or value.data != start or value.type != REG_DWORD:
            old, old_type, raw = _old(value)
            ops.append(RegOp("set", key.path, value.name if value else "Start", REG_DWORD, start, old, old_type, raw,
                             key.name, cs, "start"))
    return ops


def plan_enable(hive: Hive, name: str, details: list[dict]) -> list[RegOp]:
    """Put back what a disable recorded (``details``: the journal entry's details). Start and
    StartOverride get their old type and bytes; a filter name goes back at its old position (the
    whole old list when nothing else changed it since)."""
    want = fold_name(name)
    mine = [d for d in details if d.get("role") and fold_name(str(d.get("service", ""))) == want]
    ops: list[RegOp] = []
    for d in mine:
        key = hive.find_key(d["key"])
        if key is None:
            continue  # the control set or key went away since: nothing to put back there
        current = key.value(d["value"])
        cur_old, cur_type, cur_raw = _old(current)
        old_type = d.get("old_type_code")
        old_raw = bytes.fromhex(d["old_raw"]) if d.get("old_raw") is not None else None
        common = dict(service=d["service"], control_set=d.get("control_set", ""), role=d["role"], filter=d.get("filter"))
        if d["role"] in ("start", "start-override"):
            if old_raw is None:
                if current is not None:
                    ops.append(RegOp("delete-value", d["key"], current.name, None, None, cur_old, cur_type, cur_raw, **common))
            elif current is None or current.raw != old_raw or current.type != old_type:
                ops.append(RegOp("set", d["key"], d["value"], old_type, _restorable(old_type, old_raw), cur_old, cur_type,
                                 cur_raw, **common))
            continue
        entries = _filter_entries(current)
        if any(fold_name(e) == fold_name(d["service"]) for e in entries):
            continue
        written = d.get("new") if d.get("op") == "set" else None
        if current is None and d.get("op") == "delete-value" or written is not None and entries == written:
            if old_raw is not None:
                ops.append(RegOp("set", d["key"], d["value"], old_type, _restorable(old_type, old_raw), cur_old, cur_type,
                                 cur_raw, **common))
            continue
        info = d.get("filter") or {}
        recorded = info.get("entries") or []
        index = int(info.get("index", len(entries)))
        spelled = recorded[index] if 0 <= index < len(recorded) else d["service"]
        index = min(max(index, 0), len(entries))
        restored = entries[:index] + [spelled] + entries[index:]
        ops.append(RegOp("set", d["key"], current.name if current is not None else d["value"], REG_MULTI_SZ, restored,
                         cur_old, cur_type, cur_raw, **common))
    return ops


def _restorable(type_: int, raw: bytes):
    """The old data to write back: decoded when that encodes to the very same bytes (readable in
    the report and the journal), else the raw bytes themselves."""
    from offline_fix.hive.reader import decode_data
    from offline_fix.hive.writer import encode_data

    data = decode_data(type_, raw)
    if isinstance(data, bytes):
        return raw
    try:
        same = encode_data(type_, data) == raw
    except OfflineFixError:
        same = False
    return data if same else raw


def apply_ops(writer, ops: list[RegOp]) -> None:
    """Perform the operations with a HiveWriter (the caller records them)."""
    for op in ops:
        if op.op == "set":
            writer.set_value(op.key, op.name, op.type, op.data)
        elif op.op == "delete-value":
            writer.delete_value(op.key, op.name)
        else:
            raise OfflineFixError(f"unknown registry operation {op.op!r}")


__all__ = [
    "CLASS_DISK_DRIVE", "CLASS_VOLUME", "Device", "DriverFile", "FileProbe", "FilterList", "ImagePath", "RegOp",
    "Service", "ServiceNotFound", "ServiceTable", "START_NAMES", "TYPE_NAMES", "apply_ops", "boot_critical", "critical_reason",
    "is_driver_type", "list_services", "plan_disable", "plan_enable", "plan_enable_start", "read_filters_and_devices",
    "resolve_image_path", "service_control_sets", "system_drive", "type_label", "windows_dir_of",
]


def boot_critical(hive: Hive, name: str, *, bitlocker: bool = False) -> str | None:
    """The boot-critical reason for ``name`` in the control set that boots (see the module
    docstring), or None; a service missing from that set is judged in the first set holding it."""
    found = service_control_sets(hive, name)
    sets = system.control_sets(hive)
    cs, key = next(((c, k) for c, k in found if c == sets.current), found[0])
    devices = read_filters_and_devices(hive, cs)[1]
    return critical_reason(_read_service(key, cs), devices_by_service(devices), bitlocker=bitlocker)
