"""offline_fix/windows/services.py: services, ImagePath, filters, boot-critical rule, disable/enable
plans. Oracles: python-registry reading the same real SYSTEM hives (../shared/realdata), and
MANIFEST.md facts (control sets, dirty state)."""

from __future__ import annotations

import io
import struct

import pytest

from offline_fix.hive import Hive
from offline_fix.hive.structures import REG_DWORD, REG_MULTI_SZ, REG_SZ
from offline_fix.hive.writer import HiveWriter, new_hive
from offline_fix.target.fs import FolderFS
from offline_fix.windows import services as S

DRIVER_TYPES = (1, 2, 4, 8)


# -- ImagePath ----------------------------------------------------------------------------------
@pytest.mark.parametrize("stored, expected, form", [
    (r"\SystemRoot\System32\drivers\disk.sys", r"Windows\System32\drivers\disk.sys", "systemroot"),
    (r"System32\drivers\disk.sys", r"Windows\System32\drivers\disk.sys", "relative"),
    (r"system32\DRIVERS\disk.sys", r"Windows\system32\DRIVERS\disk.sys", "relative"),
    (r"\??\C:\Windows\system32\drivers\x.sys", r"Windows\system32\drivers\x.sys", "nt-dos"),
    (r"\??\c:\Program Files\Vendor\x.sys", r"Program Files\Vendor\x.sys", "nt-dos"),
    (r"%SystemRoot%\System32\drivers\x.sys", r"Windows\System32\drivers\x.sys", "environment"),
    (r"%windir%\System32\drivers\x.sys", r"Windows\System32\drivers\x.sys", "environment"),
    (r"C:\Windows\System32\drivers\x.sys", r"Windows\System32\drivers\x.sys", "absolute"),
    (r'"\SystemRoot\System32\drivers\q.sys"', r"Windows\System32\drivers\q.sys", "systemroot"),
])
def test_image_path_forms_of_drivers(stored, expected, form):
    got = S.resolve_image_path(stored, "x", 1, "Windows")
    assert (got.resolved, got.form) == (expected, form)
    assert got.stored == stored


def test_missing_image_path_of_a_driver_is_drivers_name_sys():
    got = S.resolve_image_path(None, "acmedisk", 1, "WINNT")
    assert (got.resolved, got.form) == (r"WINNT\System32\drivers\acmedisk.sys", "default")
    assert S.resolve_image_path("", "svc", 0x10, "Windows").resolved is None


def test_image_path_on_another_drive_or_device_is_not_guessed():
    other = S.resolve_image_path(r"D:\tools\x.sys", "x", 1, "Windows")
    assert other.resolved is None and "D:" in other.note
    assert S.resolve_image_path(r"\Device\HarddiskVolume2\x.sys", "x", 1, "Windows").resolved is None
    # the install's own letter comes from MountedDevices: E: here
    assert S.resolve_image_path(r"E:\Windows\x.sys", "x", 1, "Windows", drive="E:").resolved == r"Windows\x.sys"


def test_win32_command_lines():
    quoted = S.resolve_image_path(r'"C:\Program Files\Vendor\agent.exe" -service', "agent", 0x10, "Windows")
    assert quoted.resolved == r"Program Files\Vendor\agent.exe"
    svchost = S.resolve_image_path(r"%SystemRoot%\system32\svchost.exe -k netsvcs", "x", 0x20, "Windows",
                                   exists=lambda p: p.lower() == r"windows\system32\svchost.exe")
    assert svchost.resolved == r"Windows\system32\svchost.exe"
    # unquoted with spaces: CreateProcess tries C:\Program.exe first, as here
    spaced = S.resolve_image_path(r"C:\Program Files\Vendor\agent.exe /run", "x", 0x10, "Windows",
                                  exists=lambda p: p == r"Program Files\Vendor\agent.exe")
    assert spaced.resolved == r"Program Files\Vendor\agent.exe"


def test_windows_dir_of():
    assert S.windows_dir_of(r"Windows\System32\config\SYSTEM") == "Windows"
    assert S.windows_dir_of(r"WINNT\system32\CONFIG\SYSTEM") == "WINNT"


# -- files --------------------------------------------------------------------------------------
def test_file_probe_sizes_and_all_zero(tmp_path):
    drivers = tmp_path / "Windows" / "System32" / "drivers"
    drivers.mkdir(parents=True)
    (drivers / "zero.sys").write_bytes(bytes(200_000))
    (drivers / "late.sys").write_bytes(bytes(150_000) + b"\x01")
    (drivers / "Good.sys").write_bytes(b"MZ" + bytes(100))
    (drivers / "empty.sys").write_bytes(b"")
    probe = S.FileProbe(FolderFS(str(tmp_path)))
    zero = probe.probe(r"Windows\System32\drivers\ZERO.SYS")
    assert (zero.exists, zero.size, zero.all_zero) == (True, 200_000, True)
    assert probe.probe(r"Windows\System32\drivers\late.sys").all_zero is False
    good = probe.probe(r"Windows\system32\DRIVERS\good.sys")
    assert (good.exists, good.all_zero, good.path) == (True, False, r"Windows\system32\DRIVERS\Good.sys")
    assert probe.probe(r"Windows\System32\drivers\empty.sys").size == 0
    missing = probe.probe(r"Windows\System32\drivers\nope.sys")
    assert (missing.exists, missing.size) == (False, None)
    assert probe.probe(r"Nowhere\x.sys").exists is False


# -- a small synthetic SYSTEM hive --------------------------------------------------------------
def _small_system(*, override=True, filters=("acmeflt", "partmgr")) -> Hive:
    hive = new_hive("SYSTEM")
    w = HiveWriter(hive)
    w.create_key("Select")
    for name, value in (("Current", 1), ("Default", 1), ("LastKnownGood", 2), ("Failed", 0)):
        w.set_value("Select", name, REG_DWORD, value)
    for cs in ("ControlSet001", "ControlSet002"):
        for svc, start, group in (("acmeflt", 0, "PnP Filter"), ("partmgr", 0, "Boot Bus Extender"),
                                  ("storvsc", 0, "Base"), ("vmbus", 0, "System Bus Extender")):
            key = f"{cs}\\Services\\{svc}"
            w.create_key(key)
            w.set_value(key, "Type", REG_DWORD, 1)
            w.set_value(key, "Start", REG_DWORD, start)
            w.set_value(key, "Group", REG_SZ, group)
        if override:
            w.create_key(f"{cs}\\Services\\acmeflt\\StartOverride")
            w.set_value(f"{cs}\\Services\\acmeflt\\StartOverride", "0", REG_DWORD, 0)
            w.set_value(f"{cs}\\Services\\acmeflt\\StartOverride", "1", REG_DWORD, 1)
        cls = f"{cs}\\Control\\Class\\{S.CLASS_DISK_DRIVE}"
        w.create_key(cls)
        w.set_value(cls, "Class", REG_SZ, "DiskDrive")
        w.set_value(cls, "UpperFilters", REG_MULTI_SZ, list(filters))
        dev = f"{cs}\\Enum\\VMBUS\\{{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}}\\{{0001}}"
        w.create_key(dev)
        w.set_value(dev, "Service", REG_SZ, "storvsc")
        w.set_value(dev, "ClassGUID", REG_SZ, "{4D36E97B-E325-11CE-BFC1-08002BE10318}")
        w.set_value(dev, "LowerFilters", REG_MULTI_SZ, ["AcmeFlt"])
        bus = f"{cs}\\Enum\\ACPI\\VMBus\\0"
        w.create_key(bus)
        w.set_value(bus, "Service", REG_SZ, "vmbus")
        gone = f"{cs}\\Enum\\PCI\\VEN_1000&DEV_0054\\1"
        w.create_key(gone)
        w.set_value(gone, "Service", REG_SZ, "LSI_SAS")
        w.set_value(gone, "ClassGUID", REG_SZ, S.CLASS_SCSI_ADAPTER)
        w.set_value(gone, "ConfigFlags", REG_DWORD, S.CONFIGFLAG_REMOVED)
    w.commit()
    return hive


def _apply(hive: Hive, ops) -> None:
    w = HiveWriter(hive)
    S.apply_ops(w, ops)
    w.commit()


def test_boot_critical_rule_on_a_synthetic_hive():
    hive = _small_system()
    table = S.list_services(hive)
    critical = {s.name: s.boot_critical for s in table.services}
    assert "storage miniport" in critical["storvsc"]
    assert "VMBus" in critical["vmbus"]
    assert critical["partmgr"]
    assert critical["acmeflt"] is None  # a filter is never critical: disable takes it out of the lists
    acme = table.get("ACMEFLT")
    assert acme.start_override == {"0": 0, "1": 1}
    assert [(f.scope, f.value, f.class_name) for f in acme.filters] == [
        ("class", "UpperFilters", "DiskDrive"), ("device", "LowerFilters", None)]


def test_disable_then_enable_restores_every_value():
    hive = _small_system()
    before = {k.path: {v.name: (v.type, v.raw) for v in k.values()} for k in hive.root.walk()}
    ops = S.plan_disable(hive, "ACMEFLT")
    assert {(o.role, o.control_set) for o in ops} == {
        (r, cs) for cs in ("ControlSet001", "ControlSet002") for r in ("filter", "start", "start-override")}
    assert len(ops) == 2 * (1 + 2 + 2)  # per control set: Start, two StartOverride values, two filter lists
    _apply(hive, ops)
    for cs in ("ControlSet001", "ControlSet002"):
        key = hive.key(f"{cs}\\Services\\acmeflt")
        assert key.get("Start") == 4
        assert list(key.subkey("StartOverride").values()) == []
        assert hive.key(f"{cs}\\Control\\Class\\{S.CLASS_DISK_DRIVE}").get("UpperFilters") == ["partmgr"]
        # a list left empty is deleted
        assert hive.key(f"{cs}\\Enum\\VMBUS\\{{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}}\\{{0001}}").value("LowerFilters") is None
    # the journal keeps details as JSON: go through that round trip
    details = []
    for op in ops:
        d = {"op": op.op, "key": op.key, "value": op.name, "new": op.data, "old": op.old} | op.extra()
        details.append(d)
    back = S.plan_enable(hive, "acmeflt", details)
    _apply(hive, back)
    after = {k.path: {v.name: (v.type, v.raw) for v in k.values()} for k in hive.root.walk()}
    assert after == before
    assert S.plan_enable(hive, "acmeflt", details) == []  # nothing left to put back


def test_enable_reinserts_at_the_old_place_when_the_list_changed_since():
    hive = _small_system(filters=("first", "acmeflt", "last"))
    ops = S.plan_disable(hive, "acmeflt")
    _apply(hive, ops)
    cls = f"ControlSet001\\Control\\Class\\{S.CLASS_DISK_DRIVE}"
    w = HiveWriter(hive)
    w.set_value(cls, "UpperFilters", REG_MULTI_SZ, ["first", "other", "last"])
    w.commit()
    details = [{"op": o.op, "key": o.key, "value": o.name, "new": o.data, "old": o.old} | o.extra() for o in ops]
    _apply(hive, S.plan_enable(hive, "acmeflt", details))
    assert hive.key(cls).get("UpperFilters") == ["first", "acmeflt", "other", "last"]
    assert hive.key(f"ControlSet002\\Control\\Class\\{S.CLASS_DISK_DRIVE}").get("UpperFilters") == ["first", "acmeflt", "last"]


def test_enable_with_start_and_unknown_names():
    hive = _small_system(override=False)
    _apply(hive, S.plan_disable(hive, "acmeflt", keep_filters=True))
    assert hive.key(f"ControlSet001\\Control\\Class\\{S.CLASS_DISK_DRIVE}").get("UpperFilters") == ["acmeflt", "partmgr"]
    _apply(hive, S.plan_enable_start(hive, "acmeflt", 3))
    assert [hive.key(f"{cs}\\Services\\acmeflt").get("Start") for cs in ("ControlSet001", "ControlSet002")] == [3, 3]
    with pytest.raises(S.ServiceNotFound):
        S.plan_disable(hive, "nosuchdriver")
    assert S.plan_disable(hive, "acmeflt", keep_filters=True)[0].old == 3


def test_system_drive_from_mounted_devices():
    hive = new_hive("SYSTEM")
    w = HiveWriter(hive)
    w.create_key("MountedDevices")
    w.set_value("MountedDevices", r"\DosDevices\D:", 3, struct.pack("<IQ", 0x1234ABCD, 1048576))
    w.set_value("MountedDevices", r"\DosDevices\E:", 3, b"DMIO:ID:" + bytes(range(16)))
    w.commit()
    assert S.system_drive(hive, mbr_signature="1234abcd", offset=1048576) == "D:"
    import uuid
    assert S.system_drive(hive, gpt_guid=str(uuid.UUID(bytes_le=bytes(range(16))))) == "E:"
    assert S.system_drive(hive, mbr_signature="00000001", offset=512) is None


# -- real hives against python-registry ---------------------------------------------------------
def _oracle(path):
    """Driver services, Start values and filter lists of the control set that boots, read by
    python-registry."""
    from Registry import Registry

    reg = Registry.Registry(io.BytesIO(path.read_bytes()))
    current = reg.open("Select").value("Current").value()
    cs = f"ControlSet{current:03d}"

    def val(key, name):
        try:
            return key.value(name).value()
        except Registry.RegistryValueNotFoundException:
            return None

    drivers = {}
    for k in reg.open(f"{cs}\\Services").subkeys():
        if val(k, "Type") in DRIVER_TYPES:
            drivers[k.name()] = val(k, "Start")
    filters = set()
    for k in reg.open(f"{cs}\\Control\\Class").subkeys():
        for which in ("UpperFilters", "LowerFilters"):
            for entry in val(k, which) or []:
                if entry:
                    filters.add((entry.lower(), "class", k.name().lower(), which))
    for bus in reg.open(f"{cs}\\Enum").subkeys():
        for dev in bus.subkeys():
            for inst in dev.subkeys():
                for which in ("UpperFilters", "LowerFilters"):
                    for entry in val(inst, which) or []:
                        if entry and not (bus.name().upper() == "ROOT" and dev.name().upper().startswith("LEGACY_")):
                            filters.add((entry.lower(), "device", f"{bus.name()}\\{dev.name()}\\{inst.name()}".lower(), which))
    return cs, drivers, filters


@pytest.mark.realdata
@pytest.mark.parametrize("name, control_set", [("regipy/SYSTEM.xz", "ControlSet001"),
                                               ("regipy/SYSTEM_2.xz", "ControlSet001"),
                                               ("regipy/SYSTEM_B.xz", "ControlSet001")])
def test_list_agrees_with_python_registry(realdata, name, control_set):
    path = realdata(name)
    cs, drivers, filters = _oracle(path)
    table = S.list_services(Hive.open(path.read_bytes(), tolerant=True))
    assert table.control_set == cs == control_set
    assert {s.name: s.start for s in table.services} == drivers
    ours = set()
    for s in table.services:
        for f in s.filters:
            where = f.class_guid.lower() if f.scope == "class" else f.device.lower()
            ours.add((s.name.lower(), f.scope, where, f.value))
    named = {entry for entry in filters if entry[0] in {n.lower() for n in drivers}}
    assert ours == named and ours


@pytest.mark.realdata
def test_boot_critical_storage_drivers_of_real_hives(realdata):
    win7 = S.list_services(Hive.open(realdata("regipy/SYSTEM.xz").read_bytes(), tolerant=True))
    critical = {s.name for s in win7.services if s.boot_critical}
    # a VMware guest: LSI SAS controller, Intel IDE with its ATAPI channels (MANIFEST: Windows 7 SP1)
    assert {"LSI_SAS", "intelide", "atapi", "Disk", "partmgr", "volmgr", "Ntfs", "pci"} <= critical
    assert not {"rdyboost", "Serenum", "Compbatt", "msahci", "storvsc", "pciide"} & critical
    win10 = S.list_services(Hive.open(realdata("regipy/SYSTEM_B.xz").read_bytes(), tolerant=True))
    assert "iaStorAV" in {s.name for s in win10.services if s.boot_critical}
    assert "stornvme" not in {s.name for s in win10.services if s.boot_critical}
