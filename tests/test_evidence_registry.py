"""Registry evidence (offline_fix/evidence/registry.py) on a SYSTEM hive written here with
offline-fix's writer and read back by python-registry as the oracle for key times and values."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from Registry import Registry

from offline_fix.evidence.eventlogs import Event
from offline_fix.evidence.registry import (
    MASS_WRITE, all_services, read_crash_control, read_registry,
)
from offline_fix.hive import Hive
from offline_fix.hive.reader import fold_name
from offline_fix.hive.structures import REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ
from offline_fix.hive.writer import HiveWriter, new_hive
from offline_fix.windows.services import list_services

CRASH = datetime(2024, 7, 19, 4, 9, tzinfo=timezone.utc)
EPOCH = 116444736000000000
SM = "ControlSet001\\Control\\Session Manager"


def ft(when: datetime) -> int:
    return int(when.timestamp() * 10_000_000) + EPOCH


def system_hive(*, crash_dump_enabled=7, paging=("?:\\pagefile.sys",), boot_execute=("autocheck autochk *",)) -> bytes:
    now = {"t": ft(CRASH - timedelta(days=60))}
    clock = lambda: now["t"]  # noqa: E731
    hive = new_hive("ROOT", clock=clock)
    w = HiveWriter(hive, clock=clock)
    w.create_key("Select")
    w.set_value("Select", "Current", REG_DWORD, 1)
    # an old driver, a mass write of MASS_WRITE + 5 keys one day before the crash, one lone change
    def driver(name, start=3):
        key = f"ControlSet001\\Services\\{name}"
        w.create_key(key)
        w.set_value(key, "Type", REG_DWORD, 1)
        w.set_value(key, "Start", REG_DWORD, start)
        w.set_value(key, "ImagePath", REG_EXPAND_SZ, f"System32\\drivers\\{name}.sys")
    driver("olddrv")
    now["t"] = ft(CRASH - timedelta(days=1))
    for i in range(MASS_WRITE + 5):
        driver(f"mass{i:02d}")
    now["t"] = ft(CRASH - timedelta(hours=5))
    driver("newdrv", 0)
    now["t"] = ft(CRASH - timedelta(days=60))
    key = "ControlSet001\\Services\\Spooler"
    w.create_key(key)
    w.set_value(key, "Type", REG_DWORD, 0x10)
    w.set_value(key, "Start", REG_DWORD, 2)
    w.create_key(SM)
    w.set_value(SM, "BootExecute", REG_MULTI_SZ, list(boot_execute))
    # as smss.exe reads it: pairs with empty strings inside (a delete has an empty destination), so
    # the raw UTF-16 is written here; the writer refuses empty strings in a list it encodes itself
    renames = ["\\??\\C:\\Windows\\System32\\drivers\\newdrv.sys.new", "!\\??\\C:\\Windows\\System32\\drivers\\newdrv.sys",
               "\\??\\C:\\Temp\\junk.tmp", ""]
    w.set_value(SM, "PendingFileRenameOperations", REG_MULTI_SZ, ("\0".join(renames) + "\0\0").encode("utf-16-le"))
    w.create_key(f"{SM}\\Memory Management")
    w.set_value(f"{SM}\\Memory Management", "PagingFiles", REG_MULTI_SZ, ("\0".join(paging) + "\0\0").encode("utf-16-le"))
    cc = "ControlSet001\\Control\\CrashControl"
    w.create_key(cc)
    w.set_value(cc, "CrashDumpEnabled", REG_DWORD, crash_dump_enabled)
    w.set_value(cc, "AutoReboot", REG_DWORD, 1)
    w.set_value(cc, "MinidumpDir", REG_EXPAND_SZ, "%SystemRoot%\\Minidump")
    w.commit()
    return bytes(hive.buf)


def evidence(data: bytes, events=()):
    hive = Hive.open(data, tolerant=True)
    table = list_services(hive)
    return hive, table, read_registry(hive, table, anchor=CRASH, events=events)


def test_key_times_single_changes_and_mass_writes():
    data = system_hive()
    _, _, ev = evidence(data)
    reg = Registry.Registry(io.BytesIO(data))  # the oracle for the key times
    new = reg.open("ControlSet001\\Services\\newdrv").timestamp().replace(tzinfo=timezone.utc)
    assert [(c.name, c.time) for c in ev.changed] == [("newdrv", new)]
    (mass,) = ev.mass_writes
    assert mass.count == MASS_WRITE + 5
    assert mass.time == reg.open("ControlSet001\\Services\\mass00").timestamp().replace(tzinfo=timezone.utc, second=0)
    assert ev.window == (CRASH - timedelta(days=7), CRASH)
    kinds = {e.kind for e in ev.timeline_entries()}
    assert kinds == {"driver-change"} and len(ev.timeline_entries()) == 2


def test_no_anchor_no_window():
    hive = Hive.open(system_hive(), tolerant=True)
    table = list_services(hive)
    ev = read_registry(hive, table, anchor=None)
    assert ev.changed == [] and ev.mass_writes == [] and ev.window is None


def test_pending_renames_name_the_driver_they_touch():
    _, _, ev = evidence(system_hive())
    first, second = ev.renames
    assert first.service == "newdrv" and first.replace and first.text.startswith("replace ")
    assert second.service is None and second.destination is None and second.text == "delete \\??\\C:\\Temp\\junk.tmp"


def test_boot_execute_default_and_extra():
    _, _, ev = evidence(system_hive())
    assert ev.unusual_execute() == {}
    _, _, ev = evidence(system_hive(boot_execute=("autocheck autochk *", "sdnclean64.exe")))
    assert ev.unusual_execute() == {"BootExecute": ["sdnclean64.exe"]}


def test_crash_control():
    _, _, ev = evidence(system_hive())
    cc = ev.crash_control
    assert (cc.crash_dump_enabled, cc.auto_reboot, cc.type_name, cc.disabled) == (7, 1, "automatic", False)
    assert cc.minidump_dir == "%SystemRoot%\\Minidump" and cc.problems() == []
    hive = Hive.open(system_hive(crash_dump_enabled=0, paging=()), tolerant=True)
    cc = read_crash_control(hive, "ControlSet001")
    assert cc.disabled and cc.no_paging_file and len(cc.problems()) == 2


def test_7045_drivers_installed():
    e = Event(CRASH - timedelta(days=2), 7045, "Service Control Manager", "System", 42, "driver-change",
              "service installed", names=("newdrv",), path="System32\\drivers\\newdrv.sys",
              data={"service_type": "kernel mode driver"})
    svc_event = Event(CRASH - timedelta(days=2), 7045, "Service Control Manager", "System", 43, "driver-change",
                      "service installed", names=("Foo",), data={"service_type": "user mode service"})
    old = Event(CRASH - timedelta(days=30), 7045, "Service Control Manager", "System", 44, "driver-change",
                "service installed", names=("olddrv",), data={"service_type": "file system driver"})
    _, _, ev = evidence(system_hive(), events=[e, svc_event, old])
    assert [(c.name, c.in_window) for c in ev.installed] == [("newdrv", True), ("olddrv", False)]


def test_all_services_include_win32():
    hive = Hive.open(system_hive(), tolerant=True)
    services = all_services(hive, "ControlSet001")
    assert services[fold_name("spooler")] == ("Spooler", 0x10, 2) and services[fold_name("NEWDRV")] == ("newdrv", 1, 0)
    assert read_registry(hive, list_services(hive)).to_dict()["crash_control"]["type"] == "automatic"
