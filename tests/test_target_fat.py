"""offline_fix/target/fat.py: FAT32/FAT16 volumes made by Debian's mkfs.fat and filled by mtools
(the oracles: the bytes and names we gave mtools, mtools' own listing and The Sleuth Kit)."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess

import pytest

from offline_fix.errors import NotFound, Unsupported
from offline_fix.target.fat import (
    FatBootSectorError,
    FatChainError,
    FatError,
    FatFS,
    short_name_checksum,
)

MIB = 1024 * 1024
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def _run(*args: str) -> bytes:
    return subprocess.run(args, check=True, capture_output=True, env=MTOOLS_ENV).stdout


def _blob(n: int, seed: int) -> bytes:
    out = b""
    block = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{block}".encode()).digest()
        block += 1
    return out[:n]


def _fs(path) -> FatFS:
    size = os.path.getsize(path)
    fh = open(path, "rb")

    def read(offset: int, length: int) -> bytes:
        fh.seek(offset)
        return fh.read(length)

    return FatFS(read, size, name=str(path))


@pytest.fixture(scope="module")
def fat32(tmp_path_factory):
    """A 40 MiB FAT32 volume (512-byte clusters, as the image builder makes ESPs) holding long
    names, nested folders and a fragmented file."""
    folder = tmp_path_factory.mktemp("fat32")
    vol = folder / "esp.img"
    with open(vol, "wb") as fh:
        fh.truncate(40 * MIB)
    _run("mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "-n", "SYSTEM", "--invariant", str(vol))
    files = {
        "EFI/Microsoft/Boot/BCD": _blob(32768, 1),
        "EFI/Microsoft/Boot/bootmgfw.efi": _blob(5000, 2),
        "EFI/Boot/bootx64.efi": _blob(700, 3),
        "A Long File Name With Spaces.txt": _blob(1234, 4),
        "short.txt": b"",
    }
    for d in ("EFI", "EFI/Microsoft", "EFI/Microsoft/Boot", "EFI/Boot"):
        _run("mmd", "-i", str(vol), "::/" + d)
    for name, data in files.items():
        host = folder / "src"
        host.write_bytes(data)
        _run("mcopy", "-i", str(vol), str(host), "::/" + name)
    # fragment: A and B side by side, A deleted, then C fills A's hole and continues after B
    for name, data in (("a.bin", _blob(5120, 5)), ("b.bin", _blob(5120, 6))):
        (folder / "src").write_bytes(data)
        _run("mcopy", "-i", str(vol), str(folder / "src"), "::/" + name)
    _run("mdel", "-i", str(vol), "::/a.bin")
    with open(vol, "r+b") as fh:  # FSInfo (sector 1) FSI_Nxt_Free = unknown: allocate from the start
        fh.seek(512 + 492)
        fh.write(b"\xff\xff\xff\xff")
    files["fragmented.bin"] = _blob(15000, 7)
    (folder / "src").write_bytes(files["fragmented.bin"])
    _run("mcopy", "-i", str(vol), str(folder / "src"), "::/fragmented.bin")
    files["b.bin"] = _blob(5120, 6)
    return vol, files


def test_boot_sector_fat32(fat32):
    vol, _ = fat32
    fs = _fs(vol)
    assert fs.kind == "fat32"
    assert fs.label == "SYSTEM"
    assert fs.boot.cluster_size == 512
    assert fs.boot.volume_id == 0x1234ABCD  # mkfs.fat --invariant


def test_files_read_back_exactly(fat32):
    vol, files = fat32
    fs = _fs(vol)
    for name, data in files.items():
        assert fs.read_bytes(name) == data, name
        assert fs.stat(name).size == len(data)


def test_names_case_insensitive_long_and_short(fat32):
    vol, _ = fat32
    fs = _fs(vol)
    assert fs.resolve("efi/microsoft/boot/bcd") == "EFI\\Microsoft\\Boot\\BCD"
    assert fs.resolve("a long file name with spaces.TXT") == "A Long File Name With Spaces.txt"
    # the 8.3 alias mtools made for the long name (its listing is the oracle)
    listing = _run("mdir", "-i", str(vol), "::/").decode("latin-1")
    alias_line = next(line for line in listing.splitlines() if "A Long File Name" in line)
    base, ext = alias_line.split()[:2]
    assert fs.resolve(f"{base}.{ext}") == "A Long File Name With Spaces.txt"
    assert fs.is_dir("EFI\\Microsoft") and not fs.is_dir("short.txt")
    with pytest.raises(NotFound):
        fs.resolve("EFI\\nothing")
    with pytest.raises(NotFound):
        fs.resolve("short.txt\\below")


def test_listdir_matches_mtools(fat32):
    vol, _ = fat32
    fs = _fs(vol)
    names = [e.name for e in fs.listdir("EFI\\Microsoft\\Boot")]
    assert names == ["BCD", "bootmgfw.efi"]
    root = {e.name for e in fs.listdir("")}
    assert root == {"EFI", "A Long File Name With Spaces.txt", "short.txt", "b.bin", "fragmented.bin"}
    tsk = _run("fls", "-p", "-r", str(vol)).decode()
    assert "EFI/Microsoft/Boot/BCD" in tsk and "A Long File Name With Spaces.txt" in tsk


def test_extents_point_at_the_bytes(fat32):
    vol, files = fat32
    fs = _fs(vol)
    raw = vol.read_bytes()
    size, runs = fs.extents("fragmented.bin")
    assert size == len(files["fragmented.bin"])
    assert len(runs) >= 2, "mtools should have fragmented the file around b.bin"
    assert sum(n for _, n, _ in runs) == size
    rebuilt = b"".join(raw[v:v + n] for _, n, v in runs)
    assert rebuilt == files["fragmented.bin"]
    # TSK's icat agrees with the content
    inode = next(line.split()[-2].rstrip(":") for line in _run("fls", str(vol)).decode().splitlines()
                 if line.endswith("fragmented.bin"))
    assert _run("icat", str(vol), inode) == files["fragmented.bin"]
    assert fs.extents("short.txt") == (0, [])


@pytest.fixture(scope="module")
def fat16(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fat16")
    vol = folder / "sr.img"
    with open(vol, "wb") as fh:
        fh.truncate(32 * MIB)
    _run("mkfs.fat", "-F", "16", "-n", "SYSRES", "--invariant", str(vol))
    _run("mmd", "-i", str(vol), "::/Boot")
    (folder / "src").write_bytes(_blob(20000, 9))
    _run("mcopy", "-i", str(vol), str(folder / "src"), "::/Boot/BCD")
    return vol


def test_fat16(fat16):
    fs = _fs(fat16)
    assert fs.kind == "fat16"
    assert fs.label == "SYSRES"
    assert fs.read_bytes("boot\\bcd") == _blob(20000, 9)
    assert [e.name for e in fs.listdir("")] == ["Boot"]


def test_fat12_is_unsupported(tmp_path):
    vol = tmp_path / "floppy.img"
    with open(vol, "wb") as fh:
        fh.truncate(1440 * 1024)
    _run("mkfs.fat", "-F", "12", str(vol))
    with pytest.raises(Unsupported):
        _fs(vol)


def test_short_name_checksum_matches_mtools(fat32):
    """The long-name entries mtools wrote carry the checksum of their short entry."""
    vol, _ = fat32
    fs = _fs(vol)
    raw = vol.read_bytes()
    root = fs._dir_region(0)[0][0]
    entries = [raw[root + i:root + i + 32] for i in range(0, 32 * 32, 32)]
    for i, e in enumerate(entries):
        if e[0] in (0, 0xE5) or e[11] != 0x0F:
            continue
        short = next(x for x in entries[i:] if x[11] != 0x0F)
        assert e[13] == short_name_checksum(short[:11])


# -- hostile volumes: typed errors, no hang ----------------------------------------------------------

def _patched(fat32, tmp_path, patch) -> FatFS:
    vol, _ = fat32
    data = bytearray(vol.read_bytes())
    patch(data, _fs(vol))
    out = tmp_path / "bad.img"
    out.write_bytes(bytes(data))
    return _fs(out)


def _fat_entry_offset(fs: FatFS, cluster: int) -> int:
    return fs.boot.fat_offset + cluster * 4


def _first_cluster(fs: FatFS, path: str) -> int:
    _, runs = fs.extents(path)
    return (runs[0][2] - fs.boot.data_offset) // fs.boot.cluster_size + 2


def test_cluster_loop_is_an_error(fat32, tmp_path):
    def patch(data, fs):
        first = _first_cluster(fs, "fragmented.bin")
        struct.pack_into("<I", data, _fat_entry_offset(fs, first + 1), first)  # second cluster -> first

    fs = _patched(fat32, tmp_path, patch)
    with pytest.raises(FatChainError, match="loops"):
        fs.read_bytes("fragmented.bin")


@pytest.mark.parametrize("value,message", [(0, "free"), (0x0FFFFF00, "leaves the volume"),
                                           (0x0FFFFFF7, "bad cluster"), (0x0FFFFFFF, "too short")])
def test_tampered_fat_entry(fat32, tmp_path, value, message):
    """The BCD's first FAT entry points at a free cluster, outside the volume, at a bad-cluster
    mark, or ends the chain early."""
    def patch(data, fs):
        struct.pack_into("<I", data, _fat_entry_offset(fs, _first_cluster(fs, "EFI\\Microsoft\\Boot\\BCD")), value)

    with pytest.raises(FatChainError, match=message):
        _patched(fat32, tmp_path, patch).read_bytes("EFI\\Microsoft\\Boot\\BCD")


def test_bad_boot_sectors(fat32, tmp_path):
    vol, _ = fat32
    good = vol.read_bytes()[:512]
    cases = {
        "signature": (510, b"\x00\x00"),
        "BytsPerSec": (11, struct.pack("<H", 100)),
        "SecPerClus": (13, b"\x03"),
        "NumFATs": (16, b"\x00"),
        "TotSec32": (32, struct.pack("<I", 0xFFFFFFF0)),
        "RootClus": (44, struct.pack("<I", 0x0FFFFFF0)),
    }
    for name, (at, value) in cases.items():
        bad = bytearray(good)
        bad[at:at + len(value)] = value
        with pytest.raises(FatBootSectorError):
            FatFS(lambda o, n, b=bytes(bad): (b + bytes(40 * MIB))[o:o + n], 40 * MIB, name=name)


def test_truncated_volume_is_corrupt_input(fat32):
    vol, _ = fat32
    data = vol.read_bytes()[:64 * 1024]  # boot sector and part of the FAT only
    fs = FatFS(lambda o, n: data[o:o + n], 40 * MIB, name="truncated")
    with pytest.raises(FatError, match="short read"):
        fs.read_bytes("EFI\\Microsoft\\Boot\\BCD")


def test_volume_fs_of_an_esp_in_a_disk_image(image_cache, realdata):
    """Volume.fs() gives a FatFS for the ESP; fat_file_layout maps the BCD to disk offsets."""
    from images import specs

    from offline_fix.target import open_target
    from offline_fix.target.extents import file_layout

    bcd = realdata("regipy/BCD.xz")
    img = image_cache(specs.win10_gpt(realdata("regipy/SYSTEM.xz"), bcd=bcd), "raw")
    with open_target(str(img.path)) as tgt:
        esp = next(v for v in tgt.volumes if v.filesystem == "fat32")
        assert esp.fs().read_bytes("EFI\\Microsoft\\Boot\\BCD") == bcd.read_bytes()
        layout = file_layout(esp, "EFI\\Microsoft\\Boot\\BCD")
        assert layout.size == bcd.stat().st_size
        with open(img.path, "rb") as fh:
            pieces = []
            for ext in layout.extents:
                fh.seek(ext.disk_offset)
                pieces.append(fh.read(ext.length))
        assert b"".join(pieces)[:layout.size] == bcd.read_bytes()
