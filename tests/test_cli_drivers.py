"""``offline-fix drivers list|disable|enable`` on disks holding the real SYSTEM hives of
../shared/realdata. Oracles: python-registry and hivex reading the hive extracted by The Sleuth
Kit (ifind/icat on a raw copy made by qemu-img), sha256 of the whole image for undo, MANIFEST.md."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess

import pytest

from images import specs
from offline_fix.cli import main

pytestmark = pytest.mark.realdata

SYSTEM = "/Windows/System32/config/SYSTEM"
VOLUME_CLASS = "{71A27CDD-812A-11D0-BEC7-08002BE2092F}"
SETS = ("ControlSet001", "ControlSet002")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(capsys, *args):
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def win7(image_cache, realdata, tmp_path):
    """A private VHDX copy of a Windows 7 disk (regipy/SYSTEM: ControlSet001 + 002)."""
    img = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "vhdx")
    return img.copy_to(tmp_path / "win7.vhdx")


def extracted_hive(img, tmp_path) -> bytes:
    """SYSTEM read back by The Sleuth Kit from a raw conversion (qemu-img), not by our code."""
    raw = tmp_path / "check.raw"
    raw.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(img.path), str(raw)], check=True)
    off = str(img.windows.sector_offset)
    inode = subprocess.run(["ifind", "-o", off, "-n", SYSTEM, str(raw)], check=True, capture_output=True,
                           text=True).stdout.strip()
    data = subprocess.run(["icat", "-o", off, str(raw), inode], check=True, capture_output=True).stdout
    raw.unlink()
    return data


def python_registry(data: bytes, key: str, name: str):
    from Registry import Registry

    k = Registry.Registry(io.BytesIO(data)).open(key)
    try:
        value = k.value(name).value()
    except Registry.RegistryValueNotFoundException:
        return None
    # python-registry splits REG_MULTI_SZ on every NUL, so the list's terminators show as ""
    return [s for s in value if s] if isinstance(value, list) else value


def hivex_value(tmp_path, data: bytes, key: str, name: str):
    import hivex

    path = tmp_path / "hivex-SYSTEM"
    path.write_bytes(data)
    h = hivex.Hivex(str(path))
    node = h.root()
    for part in key.split("\\"):
        node = h.node_get_child(node, part)
        if node is None:
            return "no key"
    values = {h.value_key(v).lower(): v for v in h.node_values(node)}
    v = values.get(name.lower())
    if v is None:
        return None
    t = h.value_type(v)[0]
    if t == 4:
        return h.value_dword(v)
    return [s for s in h.value_multiple_strings(v) if s]  # hivex, too, shows the final NUL as ""


def test_list_json_folder_and_vhdx_agree(capsys, image_cache, realdata, win7):
    folder = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "folder")
    docs = []
    for target in (win7.path, folder.path):
        code, out, _ = run(capsys, "drivers", "list", target, "--json")
        assert code == 0
        docs.append(json.loads(out))
    vhdx, tree = docs
    assert vhdx["control_set"] == "ControlSet001" and vhdx["system_hive"]["dirty"] is False
    assert [d["name"] for d in vhdx["drivers"]] == [d["name"] for d in tree["drivers"]]
    by_name = {d["name"]: d for d in vhdx["drivers"]}
    data = realdata("regipy/SYSTEM.xz").read_bytes()
    for name in ("LSI_SAS", "rdyboost", "Serenum", "Ntfs", "agp440"):
        assert by_name[name]["start"] == python_registry(data, f"ControlSet001\\Services\\{name}", "Start")
    rdy = by_name["rdyboost"]
    assert {"name", "type", "start", "image_path", "file", "filters"} <= rdy.keys()
    assert rdy["image_path"]["resolved"] == r"Windows\System32\drivers\rdyboost.sys"
    assert rdy["file"]["exists"] is False
    assert [(f["class_name"], f["list"]) for f in rdy["filters"]] == [("Volume", "LowerFilters")]
    assert by_name["LSI_SAS"]["boot_critical"] is True and by_name["rdyboost"]["boot_critical"] is False
    code, out, _ = run(capsys, "drivers", "list", win7.path, "--all", "--json")
    assert len(json.loads(out)["drivers"]) > len(vhdx["drivers"])
    code, out, _ = run(capsys, "drivers", "list", win7.path)
    assert code == 0 and "LSI_SAS" in out and "boot-critical" in out


def test_disable_enable_undo_on_vhdx(capsys, win7, tmp_path, state_dir):
    original = sha(win7.path)
    code, out, err = run(capsys, "drivers", "disable", win7.path, "rdyboost", "serenum", "--dry-run")
    assert code == 0 and "dry run" in out and sha(win7.path) == original
    assert "LowerFilters: fvevol, rdyboost -> fvevol" in out

    code, out, err = run(capsys, "drivers", "disable", win7.path, "rdyboost", "serenum")
    assert code == 0, err
    assert "verified" in out
    data = extracted_hive(win7, tmp_path)
    for cs in SETS:
        for svc in ("rdyboost", "Serenum"):
            assert python_registry(data, f"{cs}\\Services\\{svc}", "Start") == 4
            assert hivex_value(tmp_path, data, f"{cs}\\Services\\{svc}", "Start") == 4
        assert python_registry(data, f"{cs}\\Control\\Class\\{VOLUME_CLASS}", "LowerFilters") == ["fvevol"]
        assert hivex_value(tmp_path, data, f"{cs}\\Control\\Class\\{VOLUME_CLASS}", "LowerFilters") == ["fvevol"]
        for n in (1, 2):  # device-level lists that held only serenum are deleted
            assert python_registry(data, f"{cs}\\Enum\\ACPI\\PNP0501\\{n}", "UpperFilters") is None
            assert hivex_value(tmp_path, data, f"{cs}\\Enum\\ACPI\\PNP0501\\{n}", "UpperFilters") is None

    code, out, err = run(capsys, "drivers", "enable", win7.path, "RDYBOOST", "Serenum", "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "verified"
    data = extracted_hive(win7, tmp_path)
    for cs in SETS:
        assert python_registry(data, f"{cs}\\Services\\rdyboost", "Start") == 0
        assert hivex_value(tmp_path, data, f"{cs}\\Services\\Serenum", "Start") == 3
        assert hivex_value(tmp_path, data, f"{cs}\\Control\\Class\\{VOLUME_CLASS}", "LowerFilters") == ["fvevol", "rdyboost"]
        assert python_registry(data, f"{cs}\\Enum\\ACPI\\PNP0501\\1", "UpperFilters") == ["serenum"]

    code, out, err = run(capsys, "journal", win7.path)
    assert "drivers disable rdyboost serenum" in out and "drivers enable RDYBOOST Serenum" in out
    code, out, err = run(capsys, "undo", win7.path, "--all")
    assert code == 0 and sha(win7.path) == original


def test_boot_critical_storage_driver_is_refused(capsys, win7, state_dir):
    original = sha(win7.path)
    code, _, err = run(capsys, "drivers", "disable", win7.path, "LSI_SAS")
    assert code == 7
    assert "boot-critical" in err and "storage miniport" in err and "--force" in err
    assert sha(win7.path) == original
    code, out, _ = run(capsys, "journal", win7.path)
    assert "no changes recorded" in out
    code, out, err = run(capsys, "drivers", "disable", win7.path, "LSI_SAS", "--force", "--dry-run")
    assert code == 0 and "boot-critical" in err and "4 (disabled)" in out


def test_folder_target_enable_without_journal_and_undo(capsys, image_cache, realdata, tmp_path, state_dir):
    import shutil

    built = image_cache(specs.win7_gpt(system=realdata("regipy/SYSTEM.xz")), "folder")
    tree = tmp_path / "tree"
    shutil.copytree(built.path, tree)
    hive = tree / "Windows" / "System32" / "config" / "SYSTEM"
    original = sha(hive)
    code, _, err = run(capsys, "drivers", "enable", tree, "Serenum")
    assert code == 3 and "--start" in err
    code, out, err = run(capsys, "drivers", "disable", tree, "nosuchdriver")
    assert code == 3 and "nosuchdriver" in err
    code, out, err = run(capsys, "drivers", "enable", tree, "Serenum", "--start", "2")
    assert code == 0, err
    for cs in SETS:
        assert python_registry(hive.read_bytes(), f"{cs}\\Services\\Serenum", "Start") == 2
    code, out, err = run(capsys, "undo", tree, "--all")
    assert code == 0 and sha(hive) == original


@pytest.mark.parametrize("hive, logs", [("SYSTEM_B", True), ("SYSTEM_2", False)])
def test_dirty_hive_is_refused_and_nothing_written(capsys, image_cache, realdata, tmp_path, state_dir, hive, logs):
    kw = {"system_log1": realdata(f"regipy/{hive}.LOG1.xz"), "system_log2": realdata(f"regipy/{hive}.LOG2.xz")} if logs else {}
    img = image_cache(specs.win10_mbr(system=realdata(f"regipy/{hive}.xz"), **kw), "vhdx").copy_to(tmp_path / "d.vhdx")
    original = sha(img.path)
    code, out, err = run(capsys, "drivers", "list", img.path, "--json")
    assert code == 0 and json.loads(out)["system_hive"]["dirty"] is True
    victim = next(d["name"] for d in json.loads(out)["drivers"] if not d["boot_critical"] and d["filters"])
    code, out, err = run(capsys, "drivers", "disable", img.path, victim)
    assert code == 7, err  # refused: logs that do not continue the hive's sequence, or no logs at all
    assert "SYSTEM hive is dirty" in err and ("do not continue" in err if logs else "no transaction log" in err)
    assert "Nothing was written" in err and sha(img.path) == original
    code, out, _ = run(capsys, "journal", img.path)
    assert "no changes recorded" in out
