"""``offline-fix bcd list|set|delete|ems`` on disks built with an ESP (FAT32) and with a System
Reserved NTFS partition, raw and VHDX, and on folder targets.

Independent re-reads: mtools (`mtype -i IMG@@OFFSET`) for the FAT32 ESP, The Sleuth Kit's
fls/icat for NTFS, qemu-img to unpack VHDX, python-registry for the hive. Undo must give the
original image back, byte for byte (sha256).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import uuid

import pytest

from offline_fix.cli import main

DEFAULT = "{733b62e5-f608-11eb-825c-c112f60133ab}"
BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
EMSSETTINGS = "{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}"
LOADER_PARTITION = uuid.UUID("8e0f2c38-e4ea-47ba-b7fc-9d8c74dccf0b")  # the loader's osdevice in the real store
U64 = struct.Struct("<Q")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def sources(realdata):
    return realdata("regipy/SYSTEM.xz"), realdata("regipy/BCD.xz")


def _spec(layout: str, system, bcd):
    from images import specs

    return (specs.win10_gpt if layout == "gpt" else specs.win10_mbr)(system, bcd=bcd)


def _image(image_cache, sources, tmp_path, layout: str, fmt: str):
    system, bcd = sources
    built = image_cache(_spec(layout, system, bcd), fmt)
    return built.copy_to(tmp_path / f"disk.{'vhdx' if fmt == 'vhdx' else 'img'}")


def _as_raw(img, tmp_path):
    if img.format != "vhdx":
        return img.path
    raw = tmp_path / "unpacked.raw"
    if raw.exists():
        raw.unlink()
    subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(img.path), str(raw)], check=True)
    return raw


def _bcd_on_disk(img, tmp_path) -> bytes:
    """The BCD store as other tools read it: mtools on the ESP, TSK on System Reserved."""
    raw = _as_raw(img, tmp_path)
    boot = img.partitions[0]
    if boot.filesystem == "fat32":
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        return subprocess.run(["mtype", "-i", f"{raw}@@{boot.offset}", "::/EFI/Microsoft/Boot/BCD"], check=True,
                              capture_output=True, env=env).stdout
    listing = subprocess.run(["fls", "-o", str(boot.sector_offset), str(raw), "-p", "-r"], check=True,
                             capture_output=True, text=True).stdout
    inode = next(line.split()[1].rstrip(":") for line in listing.splitlines() if line.endswith("\tBoot/BCD"))
    return subprocess.run(["icat", "-o", str(boot.sector_offset), str(raw), inode], check=True,
                          capture_output=True).stdout


def _element(data: bytes, guid: str, key: str):
    from Registry import Registry
    from Registry.Registry import RegistryKeyNotFoundException

    reg = Registry.Registry(io.BytesIO(data))
    try:
        value = reg.open(f"Objects\\{guid}\\Elements\\{key}").value("Element")
    except RegistryKeyNotFoundException:
        return None
    return value.value_type(), value.raw_data()


# -- list ------------------------------------------------------------------------------------------

def test_list_shows_the_real_store(image_cache, sources, capsys):
    img = image_cache(_spec("gpt", *sources), "raw")
    code, text, _ = run(capsys, "bcd", "list", str(img.path))
    assert code == 0
    assert "BCD store: partition 1 (EFI system partition, fat32): EFI\\Microsoft\\Boot\\BCD" in text
    for expected in ("identifier              {bootmgr}", f"identifier              {{default}}  ({DEFAULT})",
                     "identifier              {memdiag}", "identifier              {fwbootmgr}",
                     "identifier              {emssettings}", "description             Windows 10",
                     "description             Linux Boot Manager", "description             Windows Recovery Environment",
                     "description             Windows Memory Diagnostic", "path                    \\EFI\\Microsoft\\Boot\\bootmgfw.efi",
                     "Windows Boot Loader", "Resume from Hibernate", "EMS Settings",
                     "bootems                 No  (inherited from {emssettings})",
                     "{current} does not exist offline"):
        assert expected in text, expected
    code, doc, _ = run(capsys, "bcd", "list", str(img.path), "--json")
    doc = json.loads(doc)
    assert code == 0 and doc["default"] == DEFAULT and doc["current"] is None
    names = {o["name"]: o for o in doc["objects"]}
    assert names["{default}"]["description"] == "Windows 10"
    rec = next(e for e in names["{default}"]["elements"] if e["key"] == "16000009")
    assert rec == {"id": "0x16000009", "key": "16000009", "name": "recoveryenabled",
                   "ms_name": "BcdLibraryBoolean_AutoRecoveryEnabled", "format": "boolean", "reg_type": "REG_BINARY",
                   "value": True, "display": "Yes", "raw": "01"}


def test_list_mbr_system_reserved(image_cache, sources, capsys):
    img = image_cache(_spec("mbr", *sources), "vhdx")
    code, doc, _ = run(capsys, "bcd", "list", str(img.path), "--json")
    doc = json.loads(doc)
    assert code == 0
    assert doc["store"]["path"] == "Boot\\BCD" and doc["store"]["filesystem"] == "ntfs"
    assert "active" in doc["store"]["where"]
    assert len(doc["objects"]) == 17


# -- set / delete / ems on disk images, undo ----------------------------------------------------------

CASES = [  # layout, container, (object, element, value), documented key, stored bytes
    ("gpt", "raw", ("{default}", "safeboot", "minimal"), "25000080", U64.pack(0)),
    ("gpt", "vhdx", ("{default}", "nointegritychecks", "yes"), "16000048", b"\x01"),
    ("mbr", "raw", ("{default}", "bootstatuspolicy", "IgnoreAllFailures"), "250000e0", U64.pack(1)),
    ("mbr", "vhdx", ("{default}", "advancedoptions", "yes"), "16000040", b"\x01"),
]


@pytest.mark.parametrize("layout,fmt,args,key,stored", CASES, ids=[f"{c[0]}-{c[1]}-{c[2][1]}" for c in CASES])
def test_set_verify_undo(image_cache, sources, tmp_path, capsys, state_dir, layout, fmt, args, key, stored):
    img = _image(image_cache, sources, tmp_path, layout, fmt)
    before = sha256(img.path)
    code, text, err = run(capsys, "bcd", "set", str(img.path), *args)
    assert code == 0, err
    assert f"set {{default}} {args[1]} (0x{key}): (not set) -> " in text
    assert ": verified (" in text
    data = _bcd_on_disk(img, tmp_path)
    assert _element(data, DEFAULT, key) == (3, stored)  # REG_BINARY
    code, journal, _ = run(capsys, "journal", str(img.path), "--json")
    entry = json.loads(journal)["changes"][-1]
    assert entry["kind"] == "bcd-set" and entry["status"] == "verified"
    assert entry["details"][0]["element"] == args[1]
    code, _, err = run(capsys, "bcd", "delete", str(img.path), "{default}", args[1])
    assert code == 0, err
    assert _element(_bcd_on_disk(img, tmp_path), DEFAULT, key) is None
    code, _, err = run(capsys, "undo", str(img.path), "--all")
    assert code == 0, err
    assert sha256(img.path) == before
    if fmt == "vhdx":
        subprocess.run(["qemu-img", "check", str(img.path)], check=True, capture_output=True)


def test_ems_on(image_cache, sources, tmp_path, capsys, state_dir):
    img = _image(image_cache, sources, tmp_path, "gpt", "vhdx")
    before = sha256(img.path)
    code, out, err = run(capsys, "bcd", "ems", str(img.path), "on", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["result"]["status"] == "verified"
    assert [(c["object_name"], c["element"], c["new"]) for c in doc["changes"]] == [
        ("{bootmgr}", "bootems", "Yes"), ("{default}", "ems", "Yes"),
        ("{emssettings}", "emsport", "1"), ("{emssettings}", "emsbaudrate", "115200")]
    data = _bcd_on_disk(img, tmp_path)
    assert _element(data, BOOTMGR, "16000020") == (3, b"\x01")
    assert _element(data, DEFAULT, "260000b0") == (3, b"\x01")
    assert _element(data, EMSSETTINGS, "15000022") == (3, U64.pack(1))
    assert _element(data, EMSSETTINGS, "15000023") == (3, U64.pack(115200))
    code, out, _ = run(capsys, "bcd", "ems", str(img.path), "on")
    assert code == 0 and "nothing to change" in out
    assert run(capsys, "undo", str(img.path), "--all")[0] == 0
    assert sha256(img.path) == before


def test_dry_run_writes_nothing(image_cache, sources, tmp_path, capsys, state_dir):
    img = _image(image_cache, sources, tmp_path, "gpt", "raw")
    before = sha256(img.path)
    code, out, _ = run(capsys, "bcd", "set", str(img.path), "{default}", "safebootalternateshell", "yes", "--dry-run")
    assert code == 0 and "dry run: nothing written" in out
    assert "safebootalternateshell (0x26000081): (not set) -> Yes" in out
    assert sha256(img.path) == before


def test_growth_inside_an_image_is_refused(image_cache, sources, tmp_path, capsys, state_dir):
    img = _image(image_cache, sources, tmp_path, "gpt", "raw")
    before = sha256(img.path)
    code, _, err = run(capsys, "bcd", "set", str(img.path), "{default}", "description", "x" * 40000)
    assert code == 7
    assert "would grow" in err and "--store" in err
    assert sha256(img.path) == before


def test_install_picks_the_loader_of_that_partition(image_cache, sources, tmp_path, capsys, state_dir):
    """A store whose loader boots the image's own Windows partition (GUID patched in)."""
    system, bcd = sources
    probe = image_cache(_spec("gpt", system, bcd), "raw")
    windows = next(p for p in probe.partitions if p.role == "windows")
    patched = tmp_path / "BCD"
    patched.write_bytes(bcd.read_bytes().replace(LOADER_PARTITION.bytes_le, uuid.UUID(windows.uuid).bytes_le))
    img = image_cache(_spec("gpt", system, patched), "raw").copy_to(tmp_path / "disk.img")
    code, out, err = run(capsys, "bcd", "ems", str(img.path), "on", "--install", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["changes"][1]["object"] == DEFAULT
    code, out, err = run(capsys, "bcd", "list", str(img.path))
    assert f"partition {{{windows.uuid.lower()}}} (partition 3 of the target, Windows)" in out
    # the real store's own partition GUIDs match nothing on the unpatched disk
    (tmp_path / "plain").mkdir()
    plain = _image(image_cache, sources, tmp_path / "plain", "gpt", "raw")
    code, _, err = run(capsys, "bcd", "set", str(plain.path), "{default}", "bootlog", "yes", "--install", "1")
    assert code == 3 and "no Windows Boot Loader" in err


# -- folder targets ----------------------------------------------------------------------------------

@pytest.fixture
def windows_folder(tmp_path, sources):
    system, bcd = sources
    win = tmp_path / "C"
    (win / "Windows" / "System32" / "config").mkdir(parents=True)
    shutil.copy(system, win / "Windows" / "System32" / "config" / "SYSTEM")
    esp = tmp_path / "ESP"
    (esp / "EFI" / "Microsoft" / "Boot").mkdir(parents=True)
    shutil.copy(bcd, esp / "EFI" / "Microsoft" / "Boot" / "BCD")
    return win, esp


@pytest.mark.parametrize("store_arg", ["folder", "file"])
def test_folder_target_with_store(windows_folder, capsys, state_dir, store_arg):
    win, esp = windows_folder
    store_file = esp / "EFI" / "Microsoft" / "Boot" / "BCD"
    store = str(esp if store_arg == "folder" else store_file)
    before = store_file.read_bytes()
    code, out, err = run(capsys, "bcd", "set", str(win), "{default}", "bootlog", "yes", "--store", store)
    assert code == 0, err
    assert _element(store_file.read_bytes(), DEFAULT, "26000090") == (3, b"\x01")
    assert run(capsys, "undo", str(win), "--all")[0] == 0
    assert store_file.read_bytes() == before


def test_folder_target_holding_boot_bcd(windows_folder, capsys, state_dir):
    win, esp = windows_folder
    (win / "Boot").mkdir()
    shutil.copy(esp / "EFI" / "Microsoft" / "Boot" / "BCD", win / "Boot" / "BCD")
    before = (win / "Boot" / "BCD").read_bytes()
    code, _, err = run(capsys, "bcd", "set", str(win), "{default}", "testsigning", "on")
    assert code == 0, err
    assert _element((win / "Boot" / "BCD").read_bytes(), DEFAULT, "16000049") == (3, b"\x01")
    # on a folder the store may grow: a long description needs a new hive bin
    code, _, err = run(capsys, "bcd", "set", str(win), "{default}", "description", "y" * 40000)
    assert code == 0, err
    assert len((win / "Boot" / "BCD").read_bytes()) > len(before)
    assert run(capsys, "undo", str(win), "--all")[0] == 0
    assert (win / "Boot" / "BCD").read_bytes() == before


# -- bad input: one line, the documented exit code -------------------------------------------------------

@pytest.mark.parametrize("args,code,message", [
    (("{current}", "safeboot", "minimal"), 6, "running"),
    (("{default}", "nosuchthing", "1"), 3, "unknown element"),
    (("{default}", "timeout", "5"), 7, "bootmgr element"),
    (("{default}", "safeboot", "maximal"), 7, "Minimal, Network, DsRepair"),
    (("{default}", "osdevice", "partition=C:"), 6, "not documented"),
    (("{nonsense}", "bootlog", "yes"), 3, "not a GUID"),
])
def test_bad_requests(windows_folder, capsys, state_dir, args, code, message):
    win, esp = windows_folder
    got, _, err = run(capsys, "bcd", "set", str(win), *args, "--store", str(esp))
    assert got == code, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_and_corrupt_stores(windows_folder, tmp_path, capsys, state_dir):
    win, esp = windows_folder
    code, _, err = run(capsys, "bcd", "list", str(win))
    assert code == 3 and "--store" in err
    garbage = tmp_path / "garbage"
    (garbage / "Boot").mkdir(parents=True)
    (garbage / "Boot" / "BCD").write_bytes(b"regf" + os.urandom(5000))
    code, _, err = run(capsys, "bcd", "list", str(win), "--store", str(garbage))
    assert code == 5 and "Traceback" not in err
    code, _, err = run(capsys, "bcd", "set", str(win), "{default}", "bootlog", "yes", "--store", str(garbage))
    assert code == 5 and "Traceback" not in err
    code, _, err = run(capsys, "bcd", "ems", str(win), "maybe", "--store", str(esp))
    assert code == 2
