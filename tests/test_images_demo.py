"""images/demo.py and images/synth/: the bundled demo disk and the demo run. Oracles: The Sleuth
Kit (ifind/icat on a raw conversion by qemu-img), python-registry, binutils' objdump, sha256."""

from __future__ import annotations

import io
import subprocess

import pytest

from images import demo
from images.synth.pe import driver_image

SYSTEM_CLASS_DISK = "{4d36e967-e325-11ce-bfc1-08002be10318}"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    demo.build_demo(out, log=lambda _m: None)
    return out


def _icat(raw, sector_offset: int, path: str) -> bytes:
    inode = subprocess.run(["ifind", "-o", str(sector_offset), "-n", path, str(raw)], check=True,
                           capture_output=True, text=True).stdout.strip()
    return subprocess.run(["icat", "-o", str(sector_offset), str(raw), inode], check=True, capture_output=True).stdout


@pytest.fixture(scope="module")
def extracted(demo_dir, tmp_path_factory):
    """Files of the demo disk read by The Sleuth Kit, not by offline-fix."""
    raw = tmp_path_factory.mktemp("raw") / "demo.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(demo_dir / demo.DEMO_NAME), str(raw)], check=True)
    parts = subprocess.run(["sfdisk", "--json", str(raw)], check=True, capture_output=True, text=True).stdout
    import json

    table = json.loads(parts)["partitiontable"]
    assert table["label"] == "gpt"
    start = max(p["start"] for p in table["partitions"])  # the Windows volume comes last
    get = {p: _icat(raw, start, p) for p in (
        "/Windows/System32/config/SYSTEM", "/Windows/System32/config/SOFTWARE",
        "/Windows/System32/drivers/acmemon.sys", "/Windows/System32/drivers/UMDF/AcmeSensor.dll",
        "/Windows/System32/drivers/acmedisk.sys", "/Program Files/Acme/acmeusb.sys")}
    return get


def _reg(data: bytes):
    from Registry import Registry

    return Registry.Registry(io.BytesIO(data))


def test_demo_system_hive_read_by_python_registry(extracted):
    reg = _reg(extracted["/Windows/System32/config/SYSTEM"])
    select = {v.name(): v.value() for v in reg.open("Select").values()}
    assert (select["Current"], select["LastKnownGood"]) == (1, 2)
    for cs in ("ControlSet001", "ControlSet002"):
        services = reg.open(f"{cs}\\Services").subkeys()
        types = [s.value("Type").value() for s in services]
        assert len(services) >= 300 and sum(t in (1, 2, 8) for t in types) >= 200
        culprit = reg.open(f"{cs}\\Services\\acmedisk")
        assert culprit.value("Start").value() == 0 and culprit.value("Group").value() == "PnP Filter"
        assert reg.open(f"{cs}\\Services\\acmedisk\\StartOverride").value("0").value() == 0
        uppers = [s for s in reg.open(f"{cs}\\Control\\Class\\{SYSTEM_CLASS_DISK}").value("UpperFilters").value() if s]
        assert uppers == ["partmgr", "acmedisk"]
    version = _reg(extracted["/Windows/System32/config/SOFTWARE"]).open(r"Microsoft\Windows NT\CurrentVersion")
    assert version.value("CurrentBuildNumber").value() == "14393" and version.value("ProductName").value().startswith(
        "Windows Server 2016")


def test_demo_driver_files(extracted, tmp_path):
    zeroed = extracted["/Windows/System32/drivers/acmemon.sys"]
    assert len(zeroed) > 0 and zeroed.count(0) == len(zeroed)
    for path, kind in (("/Windows/System32/drivers/acmedisk.sys", "pei-x86-64"),
                       ("/Windows/System32/drivers/UMDF/AcmeSensor.dll", "pei-x86-64"),
                       ("/Program Files/Acme/acmeusb.sys", "pei-x86-64")):
        f = tmp_path / path.rsplit("/", 1)[1]
        f.write_bytes(extracted[path])
        head = subprocess.run(["objdump", "-f", str(f)], check=True, capture_output=True, text=True).stdout
        assert kind in head and "start address 0x" in head
    assert b"\x30\x82" not in extracted["/Windows/System32/drivers/UMDF/AcmeSensor.dll"]  # no PKCS#7: unsigned


def test_pe_checksum_matches_the_windows_algorithm():
    # CheckSumMappedFile: the 16-bit folded sum of the file with the CheckSum field as zero, plus the length
    import struct

    image = driver_image("x")
    at = 0x80 + 4 + 20 + 64
    words = image[:at] + b"\0\0\0\0" + image[at + 4:]
    total = sum(struct.unpack(f"<{len(words) // 2}H", words))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert struct.unpack_from("<I", image, at)[0] == total + len(image)


def test_demo_run_ends_with_the_original_bytes(demo_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert demo.run_demo(demo_dir) == 0
    out = capsys.readouterr().out
    assert "up to date" in out  # the disk built by the fixture is reused
    assert "ControlSet002\\Services\\acmedisk\\Start: 0 (boot) -> 4 (disabled)" in out
    assert "UpperFilters: partmgr, acmedisk -> partmgr" in out
    assert "FILE IS ALL ZEROS" in out and "identical to before the repair" in out


def test_demo_catalog_gap_and_restore(demo_dir, capsys, tmp_path, monkeypatch):
    """The field story's catalog gap: package catalogs in servicing\\Packages, most of them gone
    from CatRoot; `catroot check` names the gap (exit 1) and `catroot restore` on a raw copy closes
    it (the engine confirms each new catalog through The Sleuth Kit before it says verified)."""
    import json

    from offline_fix.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(["catroot", "check", str(demo_dir / demo.DEMO_NAME), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["packages_count"] == demo.PACKAGE_COUNT
    assert len(doc["missing"]) == demo.PACKAGE_COUNT - demo.KEPT_IN_CATROOT
    copy = tmp_path / "copy.vhdx"
    subprocess.run(["qemu-img", "convert", "-f", "vhdx", "-O", "raw", str(demo_dir / demo.DEMO_NAME), str(copy)], check=True)
    assert main(["catroot", "restore", str(copy)]) == 0
    capsys.readouterr()
    assert main(["catroot", "check", str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == []
