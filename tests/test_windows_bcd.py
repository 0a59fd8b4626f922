"""offline_fix/windows/bcd.py on the real UEFI BCD store (../shared/realdata/regipy/BCD.xz).

Oracles: the store's content as python-registry (a parser we did not write) reads it, the
MANIFEST's description of the store, and the element identifiers and encodings Microsoft
documents (BcdLibraryElementTypes, BcdOSLoaderElementTypes, BcdBootMgrElementTypes), written out
literally here rather than taken from the module under test.
"""

from __future__ import annotations

import io
import re
import struct

import pytest

from offline_fix.changes.registry import Edit, check_hive_independently
from offline_fix.errors import NotFound, Refused, Unsupported
from offline_fix.hive import Hive
from offline_fix.hive.writer import HiveWriter
from offline_fix.windows import bcd as B

DEFAULT = "{733b62e5-f608-11eb-825c-c112f60133ab}"  # {bootmgr}'s DefaultObject in the real store
WINRE = "{733b62e6-f608-11eb-825c-c112f60133ab}"
BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
EMSSETTINGS = "{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}"
MEMDIAG = "{b2721d73-1db4-4c62-bf78-c548a880142d}"
REG_SZ, REG_BINARY, REG_MULTI_SZ = 1, 3, 7


@pytest.fixture(scope="module")
def bcd_bytes(realdata) -> bytes:
    return realdata("regipy/BCD.xz").read_bytes()


@pytest.fixture(scope="module")
def store(bcd_bytes) -> B.BcdStore:
    return B.BcdStore(Hive.open(bcd_bytes))


def _registry(data: bytes):
    from Registry import Registry

    return Registry.Registry(io.BytesIO(data))


def _element(reg, guid: str, key: str):
    """(type, raw bytes) of Objects\\GUID\\Elements\\KEY\\Element read by python-registry, or None."""
    from Registry.Registry import RegistryKeyNotFoundException

    try:
        value = reg.open(f"Objects\\{guid}\\Elements\\{key}").value("Element")
    except RegistryKeyNotFoundException:
        return None
    return value.value_type(), value.raw_data()


# -- reading the real store ------------------------------------------------------------------------

def test_objects_and_types_match_python_registry(store, bcd_bytes):
    reg = _registry(bcd_bytes)
    theirs = {k.name().lower(): k.subkey("Description").value("Type").value() for k in reg.open("Objects").subkeys()}
    assert {g: o.type for g, o in store.objects.items()} == theirs
    assert len(store.objects) == 17
    assert not store.problems and not any(o.problems for o in store.objects.values())


def test_friendly_names_and_descriptions(store):
    """MANIFEST: boot manager, Windows 10 loader (winload.efi), resume object (winresume.efi),
    WinRE loader (ramdisk) + "Windows Recovery" device options, memtest, Linux boot manager."""
    objs = {d["name"]: d for d in store.describe()}
    assert objs["{bootmgr}"]["description"] == "Windows Boot Manager"
    assert objs["{bootmgr}"]["type_description"] == "Windows Boot Manager"
    assert objs["{default}"]["id"] == DEFAULT
    assert objs["{default}"]["description"] == "Windows 10"
    assert objs["{default}"]["path"] == "\\Windows\\system32\\winload.efi"
    assert objs["{default}"]["type_description"] == "Windows Boot Loader"
    assert objs["{memdiag}"]["description"] == "Windows Memory Diagnostic"
    assert objs["{fwbootmgr}"]["type_description"] == "Firmware Boot Manager"
    for name in ("{emssettings}", "{globalsettings}", "{bootloadersettings}", "{resumeloadersettings}",
                 "{dbgsettings}", "{badmemory}", "{hypervisorsettings}"):
        assert name in objs, name
    by_desc = {d["description"]: d for d in objs.values() if d["description"]}
    assert by_desc["Linux Boot Manager"]["path"] == "\\EFI\\systemd\\systemd-bootx64.efi"
    assert by_desc["Windows Resume Application"]["path"] == "\\Windows\\system32\\winresume.efi"
    assert "resume object of {default}" in by_desc["Windows Resume Application"]["roles"]
    winre = by_desc["Windows Recovery Environment"]
    assert winre["id"] == WINRE
    assert "recovery sequence of {default}" in winre["roles"]
    assert winre["device"].startswith("ramdisk=") and "\\Recovery\\WindowsRE\\Winre.wim" in winre["device"]
    assert by_desc["Windows Recovery"]["type_description"] == "Device options"


def test_element_decoding_matches_python_registry(store, bcd_bytes):
    reg = _registry(bcd_bytes)
    loader = store.objects[DEFAULT]
    # recoveryenabled: REG_BINARY 01; nx (0x25000020): 8 bytes, 0 = OptIn; timeout 30 on {bootmgr}
    assert _element(reg, DEFAULT, "16000009") == (REG_BINARY, b"\x01")
    assert loader.elements[0x16000009].value is True
    assert store.show_value(loader, loader.elements[0x25000020]) == "OptIn"
    bootmgr = store.objects[BOOTMGR]
    assert _element(reg, BOOTMGR, "25000004") == (REG_BINARY, struct.pack("<Q", 30))
    assert bootmgr.elements[0x25000004].value == 30
    assert bootmgr.elements[0x24000010].value == [MEMDIAG]
    assert store.show_value(bootmgr, bootmgr.elements[0x24000001]) == "{default}"
    # device and osdevice of the loader name the same partition
    dev, osdev = loader.elements[0x11000001].value, loader.elements[0x21000001].value
    assert dev["kind"] == "partition" and dev["style"] == "gpt" and dev == osdev


def test_effective_settings_follow_inheritance(store):
    """{emssettings} holds bootems = No; the loader inherits it through {bootloadersettings} ->
    {globalsettings} -> {emssettings}."""
    d = next(o for o in store.describe() if o["id"] == DEFAULT)
    assert d["settings"]["bootems"] == {"value": "No", "id": "0x16000020", "inherited_from": "{emssettings}"}
    assert d["settings"]["recoveryenabled"] == {"value": "Yes", "id": "0x16000009", "inherited_from": None}
    assert d["settings"]["safeboot"] == {"value": None, "id": "0x25000080", "inherited_from": None}
    bootmgr = next(o for o in store.describe() if o["name"] == "{bootmgr}")
    assert "safeboot" not in bootmgr["settings"]  # a loader element: the boot manager has no such setting


def test_resolve(store):
    assert store.resolve("{default}").guid == DEFAULT
    assert store.resolve("{BOOTMGR}").guid == BOOTMGR
    assert store.resolve("bootmgr").guid == BOOTMGR
    assert store.resolve(WINRE.upper()).guid == WINRE
    with pytest.raises(Unsupported, match="offline"):
        store.resolve("{current}")
    with pytest.raises(NotFound):
        store.resolve("{ntldr}")  # well known, not in this store
    with pytest.raises(NotFound):
        store.resolve("{nonsense}")


def test_element_table_follows_microsofts_naming():
    """Microsoft's names carry the format (BcdOSLoaderInteger_..., ...Boolean_...) and the class
    (BcdLibrary... = 1, application enumerations = 2, BcdDevice... = 3)."""
    formats = {"Device": 1, "String": 2, "Object": 3, "ObjectList": 4, "Integer": 5, "Boolean": 6, "IntegerList": 7}
    for et in B.ELEMENT_TYPES:
        m = re.match(r"Bcd(Library|BootMgr|OSLoader|Resume|MemDiag|Device)(Device|String|ObjectList|Object|"
                     r"IntegerList|Integer|Boolean)_", et.ms_name)
        assert m, et.ms_name
        family, fmt = m.groups()
        if not (family == "Device" and fmt == "Integer"):  # Microsoft's own typo: SdiDevice/SdiPath "Integer"
            assert B.element_format(et.id) == formats[fmt], et.ms_name
        want_class = {"Library": 1, "Device": 3}.get(family, 2)
        assert B.element_class(et.id) == want_class, et.ms_name


def test_well_known_guids():
    # `bcdedit /? ID` and Microsoft's BCD documentation; the ones the real store holds are also
    # checked by test_friendly_names_and_descriptions.
    assert B.WELL_KNOWN["{bootmgr}"] == BOOTMGR
    assert B.WELL_KNOWN["{fwbootmgr}"] == "{a5a30fa2-3d06-4e9f-b5f4-a01df9d1fcba}"
    assert B.WELL_KNOWN["{memdiag}"] == MEMDIAG
    assert B.WELL_KNOWN["{emssettings}"] == EMSSETTINGS
    assert B.WELL_KNOWN["{ntldr}"] == "{466f5a88-0af2-4f76-9038-095b170dc21c}"


def test_damaged_encodings_are_reported_not_hidden():
    assert B.decode_element(0x16000048, REG_BINARY, b"", b"").problem
    assert B.decode_element(0x25000080, REG_BINARY, b"\x01\x00", b"\x01\x00").problem
    assert B.decode_element(0x25000080, 4, b"\x01\x00\x00\x00", 1).problem  # REG_DWORD, not REG_BINARY
    assert B.decode_element(0x23000003, REG_SZ, b"", "not a guid").problem
    assert B.decode_device(b"\x00" * 4)["kind"] == "unknown"


def test_not_a_bcd_store(realdata):
    hive = Hive.open(realdata("yarp/NewDirtyHive1/RecoveredHive_Windows10").read_bytes())
    with pytest.raises(B.BcdError):
        B.BcdStore(hive)


# -- edits, read back by python-registry --------------------------------------------------------------

U64 = struct.Struct("<Q")
# (object, bcdedit element, value, documented element key, registry type, stored data)
SETS = [
    ("{default}", "safeboot", "minimal", "25000080", REG_BINARY, U64.pack(0)),
    ("{default}", "safeboot", "network", "25000080", REG_BINARY, U64.pack(1)),
    ("{default}", "safeboot", "DsRepair", "25000080", REG_BINARY, U64.pack(2)),
    ("{default}", "safebootalternateshell", "yes", "26000081", REG_BINARY, b"\x01"),
    ("{default}", "bootstatuspolicy", "IgnoreAllFailures", "250000e0", REG_BINARY, U64.pack(1)),
    ("{default}", "bootstatuspolicy", "DisplayAllFailures", "250000e0", REG_BINARY, U64.pack(0)),
    ("{default}", "advancedoptions", "yes", "16000040", REG_BINARY, b"\x01"),
    ("{default}", "advancedoptions", "no", "16000040", REG_BINARY, b"\x00"),
    ("{default}", "optionsedit", "on", "16000041", REG_BINARY, b"\x01"),
    ("{default}", "nointegritychecks", "yes", "16000048", REG_BINARY, b"\x01"),
    ("{default}", "nointegritychecks", "no", "16000048", REG_BINARY, b"\x00"),
    ("{default}", "testsigning", "yes", "16000049", REG_BINARY, b"\x01"),
    ("{default}", "bootlog", "yes", "26000090", REG_BINARY, b"\x01"),
    ("{default}", "bootlog", "no", "26000090", REG_BINARY, b"\x00"),
    ("{bootmgr}", "bootems", "yes", "16000020", REG_BINARY, b"\x01"),
    ("{default}", "ems", "on", "260000b0", REG_BINARY, b"\x01"),
    ("{default}", "recoveryenabled", "no", "16000009", REG_BINARY, b"\x00"),
    ("{default}", "bootdebug", "yes", "16000010", REG_BINARY, b"\x01"),
    ("{default}", "description", "Windows 10 (safe)", "12000004", REG_SZ, "Windows 10 (safe)\0".encode("utf-16-le")),
    ("{default}", "path", "\\Windows\\system32\\winload.exe", "12000002", REG_SZ,
     "\\Windows\\system32\\winload.exe\0".encode("utf-16-le")),
    ("{default}", "systemroot", "\\WINDOWS", "22000002", REG_SZ, "\\WINDOWS\0".encode("utf-16-le")),
    ("{bootmgr}", "default", WINRE, "23000003", REG_SZ, (WINRE + "\0").encode("utf-16-le")),
    ("{bootmgr}", "displayorder", "{default} {memdiag}", "24000001", REG_MULTI_SZ,
     (DEFAULT + "\0" + MEMDIAG + "\0\0").encode("utf-16-le")),
    ("{bootmgr}", "timeout", "5", "25000004", REG_BINARY, U64.pack(5)),
    ("{emssettings}", "emsport", "1", "15000022", REG_BINARY, U64.pack(1)),
    ("{emssettings}", "emsbaudrate", "115200", "15000023", REG_BINARY, U64.pack(115200)),
    ("{default}", "0x250000e0", "3", "250000e0", REG_BINARY, U64.pack(3)),
]


def _edit(data: bytes, changes: list[B.ElementChange]) -> tuple[bytes, list[Edit], list[dict]]:
    hive = Hive.open(data, writable=True)
    writer = HiveWriter(hive)
    edits: list[Edit] = []
    details: list[dict] = []
    B.apply_changes(writer, hive, changes, lambda *e: edits.append(Edit(*e)), details)
    writer.commit()
    return bytes(hive.buf), edits, details


@pytest.mark.parametrize("obj,element,value,key,reg_type,stored", SETS,
                         ids=[f"{s[1]}={s[2]}" for s in SETS])
def test_set_reads_back_with_documented_key_and_encoding(bcd_bytes, store, obj, element, value, key, reg_type, stored):
    after, edits, details = _edit(bcd_bytes, [B.ElementChange(obj, element, value)])
    guid = store.resolve(obj).guid
    assert _element(_registry(after), guid, key) == (reg_type, stored)
    assert check_hive_independently(bcd_bytes, after, edits) == []  # nothing else changed
    assert details[0]["op"] == "bcd-set" and details[0]["element_id"] == f"0x{int(key, 16):08x}"
    assert len(after) == len(bcd_bytes), "the real store has room: the file keeps its size"


DELETES = [("{default}", "recoveryenabled", "16000009"), ("{default}", "nx", "25000020"),
           ("{bootmgr}", "timeout", "25000004"), ("{default}", "osdevice", "21000001"),
           ("{emssettings}", "bootems", "16000020"), ("{default}", "description", "12000004")]


@pytest.mark.parametrize("obj,element,key", DELETES, ids=[d[1] for d in DELETES])
def test_delete_reads_back_absent(bcd_bytes, store, obj, element, key):
    guid = store.resolve(obj).guid
    assert _element(_registry(bcd_bytes), guid, key) is not None
    after, edits, details = _edit(bcd_bytes, [B.ElementChange(obj, element, None)])
    assert _element(_registry(after), guid, key) is None
    assert check_hive_independently(bcd_bytes, after, edits) == []
    assert details[0]["new"] is None and details[0]["old"] is not None


def test_set_then_delete_each_admin_element(bcd_bytes):
    """Each element of the issue set and then deleted again: python-registry sees it gone."""
    data = bcd_bytes
    for obj, element, value, key, _t, _s in SETS:
        if obj != "{default}" or element in ("description", "path", "systemroot", "recoveryenabled", "0x250000e0"):
            continue
        data, _, _ = _edit(data, [B.ElementChange(obj, element, value)])
        data, _, _ = _edit(data, [B.ElementChange(obj, element, None)])
        assert _element(_registry(data), DEFAULT, key) is None, element


def test_ems_recipe(bcd_bytes, store):
    changes = B.ems_changes(store, store.resolve("{default}"), True)
    after, edits, _ = _edit(bcd_bytes, changes)
    reg = _registry(after)
    assert _element(reg, BOOTMGR, "16000020") == (REG_BINARY, b"\x01")
    assert _element(reg, DEFAULT, "260000b0") == (REG_BINARY, b"\x01")
    assert _element(reg, EMSSETTINGS, "15000022") == (REG_BINARY, U64.pack(1))
    assert _element(reg, EMSSETTINGS, "15000023") == (REG_BINARY, U64.pack(115200))
    assert check_hive_independently(bcd_bytes, after, edits) == []


def test_unchanged_value_writes_nothing(bcd_bytes):
    after, edits, details = _edit(bcd_bytes, [B.ElementChange("{default}", "recoveryenabled", "yes")])
    assert edits == [] and details[0]["unchanged"] is True and after == bcd_bytes


@pytest.mark.parametrize("obj,element,value,error", [
    ("{default}", "timeout", "5", Refused),  # a boot manager element, not a loader's
    ("{bootmgr}", "safeboot", "minimal", Refused),
    ("{default}", "safeboot", "maximal", Refused),
    ("{default}", "nointegritychecks", "maybe", Refused),
    ("{default}", "bootstatuspolicy", "-1", Refused),
    ("{default}", "noSuchElement", "1", NotFound),
    ("{default}", "osdevice", "partition=C:", Unsupported),
    ("{bootmgr}", "default", "{ntldr}", NotFound),
    ("{current}", "safeboot", "minimal", Unsupported),
])
def test_bad_requests_are_typed_errors(bcd_bytes, obj, element, value, error):
    with pytest.raises(error):
        _edit(bcd_bytes, [B.ElementChange(obj, element, value)])


def test_delete_missing_element(bcd_bytes):
    with pytest.raises(NotFound):
        _edit(bcd_bytes, [B.ElementChange("{default}", "safeboot", None)])
