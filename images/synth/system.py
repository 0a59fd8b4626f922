"""The demo disk's SYSTEM and SOFTWARE hives, written with offline-fix's own hive writer
(offline_fix.hive.writer.new_hive + HiveWriter), deterministic (a fixed clock), so that the disk
built from them is cached by content.

SYSTEM: Select (Current=1, Default=1, LastKnownGood=2), ControlSet001 and ControlSet002 each with
the services of services_2016.py, device classes (DiskDrive UpperFilters naming the culprit),
the devices of a Hyper-V / Azure generation 2 guest under Enum (VMBus, storvsc controller, its
virtual disk, a network adapter; and an LSI SAS controller removed when the VM left VMware),
ComputerName, ProductOptions and CrashControl. SOFTWARE: Microsoft\\Windows NT\\CurrentVersion of
Windows Server 2016 (build 14393).
"""

from __future__ import annotations

from datetime import datetime, timezone

from offline_fix.hive.structures import REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ, REG_SZ
from offline_fix.hive.writer import HiveWriter, new_hive

from images.synth.services_2016 import CULPRIT, INBOX, THIRD_PARTY, ServiceRow

EPOCH_DELTA = 116444736000000000  # 100-ns intervals from 1601-01-01 to 1970-01-01


def filetime(when: datetime) -> int:
    return int(when.timestamp() * 10_000_000) + EPOCH_DELTA


INSTALLED = datetime(2024, 7, 1, 9, 0, tzinfo=timezone.utc)
WRITTEN = datetime(2024, 7, 19, 4, 9, tzinfo=timezone.utc)  # the last boot that crashed
DEVPROP_TYPE_FILETIME = 0xFFFF0010  # DEVPROP_TYPE_FILETIME (0x10) as Windows stores it under Properties
DEVICE_TIMES = "{83da6326-97a6-4088-9453-a1923f573b29}"

CLASSES = {
    "{4d36e967-e325-11ce-bfc1-08002be10318}": ("DiskDrive", {"UpperFilters": ["partmgr", CULPRIT.name],
                                                              "LowerFilters": ["EhStorClass"]}),
    "{71a27cdd-812a-11d0-bec7-08002be2092f}": ("Volume", {"UpperFilters": ["volsnap"], "LowerFilters": ["fvevol", "iorate"]}),
    "{4d36e97b-e325-11ce-bfc1-08002be10318}": ("SCSIAdapter", {}),
    "{4d36e96a-e325-11ce-bfc1-08002be10318}": ("hdc", {}),
    "{4d36e96b-e325-11ce-bfc1-08002be10318}": ("Keyboard", {"UpperFilters": ["kbdclass"]}),
    "{4d36e96f-e325-11ce-bfc1-08002be10318}": ("Mouse", {"UpperFilters": ["mouclass"]}),
    "{4d36e97d-e325-11ce-bfc1-08002be10318}": ("System", {}),
    "{4d36e972-e325-11ce-bfc1-08002be10318}": ("Net", {}),
    "{4d36e968-e325-11ce-bfc1-08002be10318}": ("Display", {}),
}
SYSTEM_CLASS = "{4d36e97d-e325-11ce-bfc1-08002be10318}"
# (instance under Enum, service, class GUID, extra values, removed)
DEVICES = [
    ("ACPI_HAL\\PNP0C08\\0", "ACPI", SYSTEM_CLASS, {}, False),
    ("ACPI\\VMBus\\0", "vmbus", SYSTEM_CLASS, {}, False),
    ("ROOT\\volmgr\\0000", "volmgr", SYSTEM_CLASS, {}, False),
    ("ROOT\\vdrvroot\\0000", "vdrvroot", SYSTEM_CLASS, {}, False),
    ("VMBUS\\{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}\\{f8b3781a-1e82-4818-a1c3-63d806ec15bb}", "storvsc",
     "{4d36e97b-e325-11ce-bfc1-08002be10318}", {}, False),
    ("SCSI\\Disk&Ven_Msft&Prod_Virtual_Disk\\5&2a1d2e28&0&000000", "disk", "{4d36e967-e325-11ce-bfc1-08002be10318}",
     {"UpperFilters": [CULPRIT.name]}, False),
    ("STORAGE\\Volume\\{a1b2c3d4-0000-0000-0000-100000000000}#0000000000100000", "volume",
     "{71a27cdd-812a-11d0-bec7-08002be2092f}", {}, False),
    ("VMBUS\\{f8615163-df3e-46c5-913f-f2d2f965ed0e}\\{2c5e8a1f-3d0b-4a6c-9e1b-0c5d1e2f3a4b}", "netvsc",
     "{4d36e972-e325-11ce-bfc1-08002be10318}", {}, False),
    ("PCI\\VEN_1000&DEV_0054&SUBSYS_197615AD&REV_01\\4&2732702b&0&00A8", "LSI_SAS",
     "{4d36e97b-e325-11ce-bfc1-08002be10318}", {}, True),
]


def _service(w: HiveWriter, cs: str, row: ServiceRow) -> None:
    key = f"{cs}\\Services\\{row.name}"
    w.create_key(key)
    w.set_value(key, "Type", REG_DWORD, row.type)
    w.set_value(key, "Start", REG_DWORD, row.start)
    w.set_value(key, "ErrorControl", REG_DWORD, row.error_control)
    if row.group:
        w.set_value(key, "Group", REG_SZ, row.group)
    if row.tag is not None:
        w.set_value(key, "Tag", REG_DWORD, row.tag)
    if row.image_path:
        w.set_value(key, "ImagePath", REG_EXPAND_SZ if row.expand else REG_SZ, row.image_path)
    if row.display_name:
        w.set_value(key, "DisplayName", REG_SZ, row.display_name)
    if row.type & 0x30:
        w.set_value(key, "ObjectName", REG_SZ, "LocalSystem")


def _device(w: HiveWriter, cs: str, instance: str, service: str, cls: str, extra: dict, removed: bool) -> None:
    key = f"{cs}\\Enum\\{instance}"
    w.create_key(key)
    w.set_value(key, "Service", REG_SZ, service)
    w.set_value(key, "ClassGUID", REG_SZ, cls)
    w.set_value(key, "ConfigFlags", REG_DWORD, 0)
    for name, data in extra.items():
        w.set_value(key, name, REG_MULTI_SZ, data)
    times = f"{key}\\Properties\\{DEVICE_TIMES}"
    arrival = filetime(INSTALLED)
    for pid, when in (("0065", arrival), ("0066", arrival), *((("0067", filetime(WRITTEN)),) if removed else ())):
        w.create_key(f"{times}\\{pid}")
        w.set_value(f"{times}\\{pid}", "", DEVPROP_TYPE_FILETIME, when.to_bytes(8, "little"))


def _control_set(w: HiveWriter, cs: str, services: list[ServiceRow]) -> None:
    for row in services:
        _service(w, cs, row)
    culprit = f"{cs}\\Services\\{CULPRIT.name}\\StartOverride"
    w.create_key(culprit)
    w.set_value(culprit, "0", REG_DWORD, 0)  # a StartOverride value wins over Start
    for guid, (name, lists) in CLASSES.items():
        key = f"{cs}\\Control\\Class\\{guid}"
        w.create_key(key)
        w.set_value(key, "Class", REG_SZ, name)
        for which, entries in lists.items():
            w.set_value(key, which, REG_MULTI_SZ, entries)
    for instance, service, cls, extra, removed in DEVICES:
        _device(w, cs, instance, service, cls, extra, removed)
    w.create_key(f"{cs}\\Control\\ComputerName\\ComputerName")
    w.set_value(f"{cs}\\Control\\ComputerName\\ComputerName", "ComputerName", REG_SZ, "DEMO-SRV2016")
    w.create_key(f"{cs}\\Control\\ProductOptions")
    w.set_value(f"{cs}\\Control\\ProductOptions", "ProductType", REG_SZ, "ServerNT")
    crash = f"{cs}\\Control\\CrashControl"
    w.create_key(crash)
    for name, type_, data in (("CrashDumpEnabled", REG_DWORD, 7), ("AutoReboot", REG_DWORD, 1),
                              ("MinidumpDir", REG_EXPAND_SZ, "%SystemRoot%\\Minidump"),
                              ("DumpFile", REG_EXPAND_SZ, "%SystemRoot%\\MEMORY.DMP")):
        w.set_value(crash, name, type_, data)


def system_hive() -> bytes:
    """The SYSTEM hive of the demo disk (the same bytes every time)."""
    clock = lambda: filetime(WRITTEN)  # noqa: E731
    hive = new_hive("ROOT", file_name="\\REGISTRY\\MACHINE\\SYSTEM", clock=clock)
    w = HiveWriter(hive, clock=clock)
    w.create_key("Select")
    for name, value in (("Current", 1), ("Default", 1), ("LastKnownGood", 2), ("Failed", 0)):
        w.set_value("Select", name, REG_DWORD, value)
    for cs in ("ControlSet001", "ControlSet002"):
        _control_set(w, cs, INBOX + THIRD_PARTY)
    w.create_key("MountedDevices")
    w.commit()
    return bytes(hive.buf)


def software_hive() -> bytes:
    """A SOFTWARE hive with only Microsoft\\Windows NT\\CurrentVersion (Windows Server 2016)."""
    clock = lambda: filetime(WRITTEN)  # noqa: E731
    hive = new_hive("ROOT", file_name="\\REGISTRY\\MACHINE\\SOFTWARE", clock=clock)
    w = HiveWriter(hive, clock=clock)
    key = "Microsoft\\Windows NT\\CurrentVersion"
    w.create_key(key)
    for name, type_, data in (("ProductName", REG_SZ, "Windows Server 2016 Datacenter"),
                              ("EditionID", REG_SZ, "ServerDatacenter"), ("InstallationType", REG_SZ, "Server"),
                              ("CurrentVersion", REG_SZ, "6.3"), ("CurrentBuild", REG_SZ, "14393"),
                              ("CurrentBuildNumber", REG_SZ, "14393"), ("ReleaseId", REG_SZ, "1607"),
                              ("CurrentMajorVersionNumber", REG_DWORD, 10), ("CurrentMinorVersionNumber", REG_DWORD, 0),
                              ("UBR", REG_DWORD, 7159), ("SystemRoot", REG_SZ, "C:\\Windows")):
        w.set_value(key, name, type_, data)
    w.commit()
    return bytes(hive.buf)
