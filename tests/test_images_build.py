"""images/: every layout x format is read back by other tools: qemu-img (container, virtual
size), sfdisk --json (partition table), The Sleuth Kit fls/icat (NTFS paths, casing, bytes),
mtools (ESP), and the raw bytes of boot sectors. Oracles are the sources' own sha256 and, for
real data, the digests in ../shared/realdata/MANIFEST.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import images
from images import cache, specs
from images.build import main as build_main
from images.spec import WINDOWS_TREE, DiskSpec, SpecError, VolumeSpec, as_source, from_json
from offline_fix.errors import CorruptInput, NotFound, Refused

REPO = Path(__file__).resolve().parent.parent
LAYOUTS = ("gpt", "mbr", "bare")
FORMATS = ("raw", "vhd-fixed", "vhd-dynamic", "vhdx", "folder")
QEMU_NAME = {"raw": "raw", "vhd-fixed": "vpc", "vhd-dynamic": "vpc", "vhdx": "vhdx"}
FAKE_HIVE = b"regf" + hashlib.shake_256(b"not a real hive").digest(64 * 1024 - 4)
FLS_LINE = re.compile(r"^(\S)/(\S) (\* )?(\d+)(?:-\d+-\d+)?:\t(.*)$")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _minimal(layout: str) -> DiskSpec:
    """A disk needing nothing from ../shared: every kind of Windows file, and for gpt/mbr a
    BCD in the boot partition, a data volume and a fake BitLocker volume."""
    extra, boot = (), {}
    if layout != "bare":
        extra = (specs.data_volume(16, files={"readme.txt": b"no Windows here"}), specs.bitlocker_volume(16))
        boot = {("EFI\\Microsoft\\Boot\\BCD" if layout == "gpt" else "Boot\\BCD"): images.random(28672, 3)}
    return specs.minimal_windows(
        FAKE_HIVE,
        layout=layout,
        size_mib=64,
        system_log1=images.zeros(8192),
        drivers={"disk.sys": images.random(70000, 1), "tiny.sys": b"MZ"},
        umdf_drivers={"WUDFRd.sys": images.random(5000, 2)},
        catalogs={"oem1.cat": images.random(9000, 4)},
        packages={"Package_1.cat": images.random(9000, 4), "Package_1.mum": b"<assembly/>"},
        event_logs={"System.evtx": images.random(69632, 5)},
        minidumps={"032718-12345-01.dmp": images.random(4096, 6, modified="2018-03-27T10:00:00Z")},
        memory_dmp=images.zeros(1 << 20),
        pagefile=images.zeros(2 << 20),
        hiberfil_sys=specs.hiberfil("live"),
        extra_volumes=extra,
        boot_files=boot,
    )


def _fls(raw: Path, sector: int) -> dict[str, tuple[str, int]]:
    """path -> (type, inode) of the allocated names, read by The Sleuth Kit."""
    out = subprocess.run(["fls", "-r", "-p", "-o", str(sector), str(raw)], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = FLS_LINE.match(line)
        if m and not m.group(3) and not m.group(5).startswith("$"):
            found[m.group(5)] = (m.group(2), int(m.group(4)))
    return found


def _icat(raw: Path, sector: int, inode: int) -> bytes:
    return subprocess.run(["icat", "-o", str(sector), str(raw), str(inode)], check=True, capture_output=True).stdout


def _as_raw(img, tmp_path: Path) -> Path:
    if img.format == "raw":
        return img.path
    raw = tmp_path / "converted.raw"
    subprocess.run(["qemu-img", "convert", "-f", QEMU_NAME[img.format], "-O", "raw", str(img.path), str(raw)], check=True)
    return raw


def _check_ntfs_tree(raw: Path, sector: int, vol: VolumeSpec) -> None:
    listing = _fls(raw, sector)
    dirs = {p for p, (t, _) in listing.items() if t == "d"}
    if vol.kind == "windows":
        for d in WINDOWS_TREE:  # Windows casing, empty folders included
            assert d.replace("\\", "/") in dirs, d
    for winpath, src in vol.files.items():
        p = winpath.replace("\\", "/")
        assert p in listing and listing[p][0] == "r", p
        assert _sha(_icat(raw, sector, listing[p][1])) == src.digest(), p


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_layout_and_format_read_back_by_other_tools(layout, fmt, tmp_path, capsys):
    spec = _minimal(layout)
    started = time.perf_counter()
    img = images.build(spec, tmp_path / f"disk.{fmt}", fmt)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n  build {layout}/{fmt}: {elapsed:.2f} s", end="")
    if fmt == "folder":
        vol = spec.volumes[0]
        for d in WINDOWS_TREE:
            assert (img.path / d.replace("\\", "/")).is_dir()
        for winpath, src in vol.files.items():
            assert _sha((img.path / winpath.replace("\\", "/")).read_bytes()) == src.digest()
        return
    # A fixed VHD has its footer only at the end, and qemu-img's probe reads it as raw: name it.
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", QEMU_NAME[fmt], str(img.path)], check=True, capture_output=True).stdout)
    assert info["format"] == QEMU_NAME[fmt]
    if fmt.startswith("vhd-"):
        with open(img.path, "rb") as f:
            f.seek(-512, os.SEEK_END)
            footer = f.read(512)
        assert footer[:8] == b"conectix"
        assert int.from_bytes(footer[0x3C:0x40], "big") == (2 if fmt == "vhd-fixed" else 3)  # disk type
    assert info["virtual-size"] == img.virtual_size
    if fmt == "raw":
        assert os.stat(img.path).st_blocks * 512 < img.virtual_size / 4  # sparse
    raw = _as_raw(img, tmp_path)
    expected_roles = {"gpt": ["esp", "msr", "windows", "data", "bitlocker"], "mbr": ["system-reserved", "windows", "data", "bitlocker"], "bare": ["windows"]}
    assert [p.role for p in img.partitions] == expected_roles[layout]
    if layout != "bare":
        table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], check=True, capture_output=True).stdout)["partitiontable"]
        assert table["label"] == ("gpt" if layout == "gpt" else "dos")
        parts = table["partitions"]
        assert [(p["start"], p["size"]) for p in parts] == [(q.sector_offset, q.size // 512) for q in img.partitions]
        assert all(p["start"] % 2048 == 0 for p in parts)  # 1 MiB aligned
        if layout == "gpt":
            assert [p["type"] for p in parts] == [
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                "E3C9E316-0B5C-4DB8-817D-F92DF00215AE",
                *["EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"] * 3,
            ]
        else:
            assert [p["type"] for p in parts] == ["7"] * 4
            assert [bool(p.get("bootable")) for p in parts] == [True, False, False, False]
    with open(raw, "rb") as f:
        for p in img.partitions:
            f.seek(p.offset)
            boot = f.read(512)
            if p.filesystem == "ntfs":
                assert boot[3:11] == b"NTFS    "
                assert int.from_bytes(boot[0x1C:0x20], "little") == p.sector_offset  # hidden sectors
            elif p.filesystem == "bitlocker":
                assert boot[3:11] == b"-FVE-FS-" and boot[510:512] == b"\x55\xaa"
    win = img.windows
    _check_ntfs_tree(raw, win.sector_offset, spec.volumes[0])
    if layout == "bare":
        return
    data = img.partition(win.number + 1)
    assert data.role == "data"
    _check_ntfs_tree(raw, data.sector_offset, spec.volumes[1])
    assert "Windows" not in _fls(raw, data.sector_offset)
    (bcd_path, bcd) = next(iter(spec.boot_files.items()))
    boot_part = img.partitions[0]
    if layout == "gpt":
        got = subprocess.run(
            ["mtype", "-i", f"{raw}@@{boot_part.offset}", "::/" + bcd_path.replace("\\", "/")],
            check=True,
            capture_output=True,
            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
        ).stdout
        assert _sha(got) == bcd.digest()
    else:
        listing = _fls(raw, boot_part.sector_offset)
        assert _sha(_icat(raw, boot_part.sector_offset, listing["Boot/BCD"][1])) == bcd.digest()


def test_file_times_come_from_the_spec(tmp_path):
    import pytsk3

    img = images.build(_minimal("bare"), tmp_path / "d.img")
    fs = pytsk3.FS_Info(pytsk3.Img_Info(str(img.path)))
    meta = fs.open("/Windows/System32/drivers/disk.sys").info.meta
    assert meta.mtime == 1622548800  # 2021-06-01T12:00:00Z, the default timestamp
    assert fs.open("/Windows/System32/drivers").info.meta.mtime == 1622548800
    spec = specs.minimal_windows(FAKE_HIVE, layout="bare", size_mib=16, minidumps={"a.dmp": images.random(10, modified="2018-03-27T10:00:00Z")})
    img2 = images.build(spec, tmp_path / "e.img")
    fs2 = pytsk3.FS_Info(pytsk3.Img_Info(str(img2.path)))
    assert fs2.open("/Windows/Minidump/a.dmp").info.meta.mtime == 1522144800


def test_same_spec_same_content(tmp_path):
    spec = _minimal("gpt")
    a = images.build(spec, tmp_path / "a.img")
    b = images.build(spec, tmp_path / "b.img")
    for img in (a, b):
        assert img.partitions == a.partitions
    with open(a.path, "rb") as fa, open(b.path, "rb") as fb:
        assert fa.read(34 * 512) == fb.read(34 * 512)  # protective MBR + GPT, GUIDs included
    sector = a.windows.sector_offset
    la, lb = _fls(a.path, sector), _fls(b.path, sector)
    assert la == lb
    inode = la["Windows/System32/drivers/disk.sys"][1]
    assert _icat(a.path, sector, inode) == _icat(b.path, sector, inode)


def test_realdata_disk(realdata, realdata_dir, tmp_path):
    spec = specs.realdata_win10(realdata_dir, layout="gpt")
    img = images.build(spec, tmp_path / "win10.vhdx", "vhdx")
    raw = _as_raw(img, tmp_path)
    listing = _fls(raw, img.windows.sector_offset)
    read = lambda p: _icat(raw, img.windows.sector_offset, listing[p][1])
    # Oracles: MANIFEST.md digests, and conftest's own xz decompression of the hive.
    assert _sha(read("Windows/System32/drivers/pciide.sys")) == "f2a7cc645b96946cc65bf60e14e70dc09c848d27c7943ce5dea0c01a6b863480"
    assert _sha(read("Windows/System32/CatRoot/{F750E6C3-38EE-11D1-85E5-00C04FC295EE}/oem89.cat")) == "834978eefccfa73c1cc80c96af59b9468f88eed53a781797088fc758604786e9"
    assert _sha(read("Windows/servicing/Packages/ntexe.cat")) == "5b357b9f42f9d3683cf6c62ec1973923ab14373846e90ff82451db3789589b1f"
    assert _sha(read("Windows/System32/winevt/Logs/System.evtx")) == "60e5fd8f10a3deecd58bd7bee2e03b1308d190fd13b52908be9d576c7f5d6623"
    assert read("Windows/System32/config/SYSTEM") == realdata("regipy/SYSTEM_B.xz").read_bytes()
    assert read("Windows/System32/config/SYSTEM.LOG1") == realdata("regipy/SYSTEM_B.LOG1.xz").read_bytes()
    assert read("hiberfil.sys")[:4] == b"HIBR"


def test_cache_builds_once_and_notices_changed_sources(tmp_path):
    src = tmp_path / "SYSTEM"
    src.write_bytes(FAKE_HIVE)
    spec = specs.minimal_windows(src, layout="bare", size_mib=16)
    a = cache.get(spec, tmp_path / "cache", "vhdx")
    mtime = a.path.stat().st_mtime_ns
    b = cache.get(spec, tmp_path / "cache", "vhdx")
    assert b.path == a.path and b.path.stat().st_mtime_ns == mtime and b.format == "vhdx"
    src.write_bytes(FAKE_HIVE[:-1] + b"!")
    os.utime(src, ns=(1, 1))
    c = cache.get(spec, tmp_path / "cache", "vhdx")
    assert c.path != a.path
    copy = c.copy_to(tmp_path / "mine.vhdx")
    assert copy.path.read_bytes() == c.path.read_bytes() and copy.partitions == c.partitions


def test_spec_json_round_trip_and_cli(tmp_path, capsys):
    spec = _minimal("mbr")
    doc = spec.to_json()
    again = from_json(json.loads(json.dumps(doc)))
    assert again.to_json() == doc and again.digest() == spec.digest()
    hive = tmp_path / "SYSTEM"
    hive.write_bytes(FAKE_HIVE)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({
        "layout": "mbr",
        "volumes": [{"kind": "windows", "size_mib": 32, "files": {
            "Windows\\System32\\config\\SYSTEM": "SYSTEM",  # relative to the spec file
            "Windows\\System32\\drivers\\x.sys": "random(5000, 9)",
            "pagefile.sys": {"zeros": 4096},
            "Windows\\notes.txt": {"text": "hi", "modified": "2020-01-01T00:00:00Z"},
        }}, {"kind": "bitlocker", "size_mib": 16}],
    }))
    out = tmp_path / "cli.vhd"
    assert build_main([str(spec_file), "-o", str(out), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["format"] == "vhd-fixed" and built["windows_partition"] == 2
    raw = tmp_path / "cli.raw"
    subprocess.run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", str(out), str(raw)], check=True)
    listing = _fls(raw, built["partitions"][1]["offset"] // 512)
    assert _icat(raw, built["partitions"][1]["offset"] // 512, listing["Windows/System32/config/SYSTEM"][1]) == FAKE_HIVE
    # errors: exists (7), missing spec (3), bad JSON / bad spec (5), bad usage (2)
    assert build_main([str(spec_file), "-o", str(out)]) == Refused.exit_code
    assert build_main([str(tmp_path / "none.json"), "-o", str(tmp_path / "x")]) == NotFound.exit_code
    bad = tmp_path / "bad.json"
    for text in ("{not json", '{"layout": "floppy"}', '{"volumes": [{"kind": "windows", "size_mib": "big"}]}', '{"volumes": [{"files": {"a": {"zeros": -1}}}]}', "[]"):
        bad.write_text(text)
        assert build_main([str(bad), "-o", str(tmp_path / "y")]) == SpecError.exit_code, text
    assert build_main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "images.build: error:" in err


def test_module_entry_point_runs(tmp_path):
    hive = tmp_path / "SYSTEM"
    hive.write_bytes(FAKE_HIVE)
    spec_file = tmp_path / "s.json"
    spec_file.write_text(json.dumps({"layout": "bare", "volumes": [{"size_mib": 16, "files": {"Windows\\System32\\config\\SYSTEM": "SYSTEM"}}]}))
    proc = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "images.build", str(spec_file), "-o", str(tmp_path / "o.img")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "windows" in proc.stdout and (tmp_path / "o.img").stat().st_size == 16 << 20


def test_bad_specs_are_typed_errors(tmp_path):
    with pytest.raises(SpecError):
        DiskSpec(layout="bare", volumes=(VolumeSpec(), VolumeSpec()))
    with pytest.raises(SpecError):
        DiskSpec(layout="mbr", volumes=(VolumeSpec(),) * 4)
    with pytest.raises(SpecError):
        VolumeSpec(files={"a\\B": b"", "A/b": b""})  # same path, case-insensitively
    with pytest.raises(SpecError):
        as_source("random(5, 1, 2)")
    with pytest.raises(NotFound):
        images.build(specs.minimal_windows(tmp_path / "absent", layout="bare", size_mib=16), tmp_path / "o.img")
    assert not (tmp_path / "o.img").exists()  # nothing half-built is left
    assert [p.name for p in tmp_path.iterdir()] == []
    broken = tmp_path / "SYSTEM.xz"
    broken.write_bytes(b"\xfd7zXZ\x00 not really xz")
    with pytest.raises(CorruptInput):
        images.build(specs.minimal_windows(broken, layout="bare", size_mib=16), tmp_path / "o.img")
    broken.unlink()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Refused):
        tiny = specs.minimal_windows(images.zeros(40 << 20), layout="bare", size_mib=16)
        images.build(tiny, tmp_path / "full.img")  # NTFS full: a typed error, not a traceback


def test_generated_sources_are_stable():
    assert images.zeros(5).read() == bytes(5)
    r = images.random((1 << 20) + 5, seed=1).read()
    assert len(r) == (1 << 20) + 5 and r == images.random((1 << 20) + 5, seed=1).read()
    assert r[:64] != images.random(64, seed=2).read()
    assert images.random(10, seed=1).read() == r[:10]  # a prefix does not depend on the size
