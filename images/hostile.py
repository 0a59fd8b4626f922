"""Hostile test disks: what a broken or compromised machine's disk may hold to crash, hang or
mislead offline-fix, or to make it write outside the target.

    from images import hostile
    img = hostile.build("config-junction-host", tmp_path / "d.vhdx", "vhdx", decoy=tmp_path / "decoy")
    hostile.NAMES                                  # every disk, each with a one-line reason

Each disk is an ordinary Windows disk of the images builder (a small SYSTEM hive written by
offline-fix's hive writer: Select\\Current=1, ControlSet001\\Services\\pciide) with one defect:

- links leaving the volume: ``Windows\\System32\\config`` as a junction to ``C:\\Users`` (which
  holds a hive, to tempt a follower), as a junction or a symbolic link to an absolute host path
  (DECOY, a folder of the test that must stay unchanged), or as a relative symbolic link climbing
  out of the volume; loops of symbolic links;
- names: a file named ``config\\SYSTEM`` or ``config/SYSTEM`` (a separator inside one NTFS name,
  patched into the MFT record and the folder index after building), names with control
  characters, and ``SYSTEM`` next to ``system`` (names differing only in case);
- hives: subkey lists forming cycles (a key listing its own parent, a key listing its own
  parent's parent), a value claiming 2 GB of data, a computer name made of console markup and an
  ANSI escape;
- NTFS: the SYSTEM hive's data runs pointing outside the volume (patched in its MFT record,
  found with dissect.ntfs);
- partition tables: an MBR partition reaching beyond the end of the disk, an EBR chain that
  loops, a GPT claiming a million partition entries (header CRC made right).

Folder outputs get the same links as POSIX symbolic links (``images.builder``); the name and NTFS
defects exist only in images (the separator name is made directly as a host file name in folders).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable

from images import builder, disk, specs
from images.spec import DiskSpec, Link, SpecError, VolumeSpec, literal

CONFIG = specs.CONFIG
SYSTEM = f"{CONFIG}\\SYSTEM"
MARKER_SERVICE = "pciide"
RECORD_SIZE = 1024
SECTOR = 512


# -- hives ----------------------------------------------------------------------------------------

def system_hive(extra: Callable | None = None) -> bytes:
    """A small SYSTEM hive: Select (Current=1), ControlSet001\\Services\\pciide (Start=3),
    Control\\ComputerName; ``extra(writer)`` adds more before the commit."""
    from offline_fix.hive.structures import REG_DWORD, REG_EXPAND_SZ, REG_SZ
    from offline_fix.hive.writer import HiveWriter, new_hive

    clock = lambda: 0x01D7_5E00_0000_0000  # noqa: E731 - a fixed FILETIME: same bytes every build
    hive = new_hive("ROOT", clock=clock)
    w = HiveWriter(hive, clock=clock)
    for name, value in (("Current", 1), ("Default", 1), ("LastKnownGood", 1), ("Failed", 0)):
        w.create_key("Select")
        w.set_value("Select", name, REG_DWORD, value)
    w.create_key(r"ControlSet001\Control\ComputerName\ComputerName")
    w.set_value(r"ControlSet001\Control\ComputerName\ComputerName", "ComputerName", REG_SZ, "HOSTILE")
    svc = rf"ControlSet001\Services\{MARKER_SERVICE}"
    w.create_key(svc)
    w.set_value(svc, "Start", REG_DWORD, 3)
    w.set_value(svc, "Type", REG_DWORD, 1)
    w.set_value(svc, "ImagePath", REG_EXPAND_SZ, rf"System32\drivers\{MARKER_SERVICE}.sys")
    if extra is not None:
        extra(w)
    w.commit()
    return bytes(hive.buf)


def _key_offset(data: bytes, path: str) -> int:
    from offline_fix.hive import Hive

    return Hive.open(data).key(path).offset


def _patch_u32(buf: bytearray, at: int, value: int) -> None:
    struct.pack_into("<I", buf, at, value)


def _fix_checksum(buf: bytearray) -> bytes:
    from offline_fix.hive.baseblock import CHECKSUM_OFFSET, checksum

    struct.pack_into("<I", buf, CHECKSUM_OFFSET, checksum(bytes(buf[:4096])))
    return bytes(buf)


def _subkey_list_cell(data: bytes, key_offset: int) -> int:
    from offline_fix.hive.baseblock import HBIN_START
    from offline_fix.hive.structures import NK_OFF_SUBKEY_LIST

    return struct.unpack_from("<I", data, HBIN_START + key_offset + 4 + NK_OFF_SUBKEY_LIST)[0]


def hive_with_cycle() -> bytes:
    """ControlSet001\\Services\\pciide lists ControlSet001 as its subkey (a cycle through the
    parent), and Services lists itself (a self-loop); the Parent fields are left as they were."""
    from offline_fix.hive.baseblock import HBIN_START

    def extra(w) -> None:
        w.create_key(rf"ControlSet001\Services\{MARKER_SERVICE}\Parameters")
        w.create_key(r"ControlSet001\Services\zzz\Loop")

    data = bytearray(system_hive(extra))
    cs = _key_offset(bytes(data), "ControlSet001")
    services = _key_offset(bytes(data), r"ControlSet001\Services")
    for key, target in ((rf"ControlSet001\Services\{MARKER_SERVICE}", cs), (r"ControlSet001\Services\zzz", services)):
        lst = _subkey_list_cell(bytes(data), _key_offset(bytes(data), key))
        # lf/lh list: signature, count, then (key node offset, hash) pairs: point the first at TARGET
        _patch_u32(data, HBIN_START + lst + 4 + 4, target)
    return _fix_checksum(data)


def hive_with_huge_value() -> bytes:
    """pciide's ImagePath value claims 0x7FFFFFF0 bytes of data (2 GB) in a small cell."""
    from offline_fix.hive import Hive
    from offline_fix.hive.baseblock import HBIN_START

    data = bytearray(system_hive())
    value = Hive.open(bytes(data)).key(rf"ControlSet001\Services\{MARKER_SERVICE}").value("ImagePath")
    _patch_u32(data, HBIN_START + value.offset + 4 + 4, 0x7FFFFFF0)  # CM_KEY_VALUE.DataLength
    return _fix_checksum(data)


MARKUP_NAME = "[/evil]\x1b[31mRED"


def hive_with_markup_name() -> bytes:
    """ComputerName holds rich console markup (an unmatched closing tag) and an ANSI escape."""
    from offline_fix.hive.structures import REG_SZ

    return system_hive(lambda w: w.set_value(r"ControlSet001\Control\ComputerName\ComputerName", "ComputerName",
                                             REG_SZ, MARKUP_NAME))


# -- disks ----------------------------------------------------------------------------------------

def _tree_without_config() -> tuple[str, ...]:
    from images.spec import WINDOWS_TREE

    return tuple(d for d in WINDOWS_TREE if d.upper() != CONFIG.upper())


def _volume(files: dict, links: dict | None = None, *, config: bool = True) -> VolumeSpec:
    """A Windows volume; without CONFIG when a link takes its place."""
    dirs = list(_tree_without_config()) + ([CONFIG] if config else [])
    return VolumeSpec(kind="windows", size_mib=32, files=files, links=links or {}, dirs=tuple(dirs), windows_tree=False)


def _disk(volume: VolumeSpec, layout: str = "gpt") -> DiskSpec:
    return DiskSpec(layout=layout, volumes=(volume,), esp_mib=33, seed=10)


def _hive_disk(hive: bytes) -> DiskSpec:
    return _disk(_volume({SYSTEM: literal(hive)}))


def spec_for(name: str, decoy: Path) -> DiskSpec:
    """The DiskSpec of a hostile disk (before any byte patching)."""
    hive = literal(system_hive())
    decoy_target = str(Path(decoy).resolve())
    if name == "config-junction-users":
        return _disk(_volume({"Users\\SYSTEM": hive}, {CONFIG: Link("junction", "C:\\Users")}, config=False))
    if name == "config-junction-host":
        return _disk(_volume({}, {CONFIG: Link("junction", decoy_target)}, config=False))
    if name == "config-symlink-host":
        return _disk(_volume({}, {CONFIG: Link("symlink", decoy_target, True)}, config=False))
    if name == "config-symlink-escape":
        climb = "..\\" * 12 + decoy_target.lstrip("/").replace("/", "\\")
        return _disk(_volume({}, {CONFIG: Link("symlink", climb, True)}, config=False))
    if name == "system-symlink-host":
        return _disk(_volume({}, {SYSTEM: Link("symlink", os.path.join(decoy_target, "SYSTEM"))}))
    if name == "link-loop":
        return _disk(_volume({"Users\\SYSTEM": hive}, {
            "Windows\\System32\\config": Link("symlink", "..\\..\\Loop", True),
            "Loop": Link("symlink", "Windows\\System32\\config", True),
        }, config=False))
    if name == "names-control-chars":
        return _disk(_volume({SYSTEM: hive, f"{CONFIG}\\SYS\x01TEM": hive, f"{specs.DRIVERS}\\evil\nname\x7f.sys": b"MZ",
                              f"{specs.CATROOT}\\\x1b[31mred.cat": b"0"}))
    if name in ("names-backslash", "names-slash"):
        # the real hive is absent: only the file whose one name reads "config\SYSTEM" holds one
        return _disk(_volume({"Windows\\System32\\configQSYSTEM": hive}, config=True))
    if name == "names-case":
        return _disk(_volume({SYSTEM: hive}))  # "system" is added after building (case-sensitive)
    if name == "hive-cycle":
        return _hive_disk(hive_with_cycle())
    if name == "hive-huge-value":
        return _hive_disk(hive_with_huge_value())
    if name == "hive-markup-name":
        return _hive_disk(hive_with_markup_name())
    if name == "runs-outside-volume":
        return _hive_disk(system_hive())
    if name in ("mbr-outside-disk", "ebr-loop"):
        return _disk(_volume({SYSTEM: hive}), layout="mbr")
    if name == "gpt-huge-count":
        return _hive_disk(system_hive())
    raise SpecError("unknown hostile disk", field="name", expected=sorted(NAMES), found=name)


NAMES = {
    "config-junction-users": "Windows\\System32\\config is a junction to C:\\Users, which holds a SYSTEM hive",
    "config-junction-host": "Windows\\System32\\config is a junction to an absolute host path (the decoy folder)",
    "config-symlink-host": "Windows\\System32\\config is a symbolic link to an absolute host path (the decoy folder)",
    "config-symlink-escape": "Windows\\System32\\config is a relative symbolic link climbing out of the volume",
    "system-symlink-host": "the SYSTEM hive itself is a symbolic link to a host file (decoy\\SYSTEM)",
    "link-loop": "Windows\\System32\\config -> Loop -> Windows\\System32\\config (symbolic links)",
    "names-control-chars": "names with control characters and an ANSI escape beside the real hive",
    "names-backslash": "no config\\SYSTEM, but System32 holds one file whose name is 'config\\SYSTEM'",
    "names-slash": "no config\\SYSTEM, but System32 holds one file whose name is 'config/SYSTEM'",
    "names-case": "config holds SYSTEM and system (names differing only in case), different hives",
    "hive-cycle": "the SYSTEM hive's subkey lists form cycles (a key lists an ancestor, a key lists itself)",
    "hive-huge-value": "a value of the SYSTEM hive claims 2 GB of data",
    "hive-markup-name": "the computer name is console markup and an ANSI escape: '[/evil]\\x1b[31mRED'",
    "runs-outside-volume": "the SYSTEM hive's data runs point outside the volume",
    "mbr-outside-disk": "an MBR partition entry reaches far beyond the end of the disk",
    "ebr-loop": "an extended partition whose EBR chain loops back on itself",
    "gpt-huge-count": "a GPT header claiming 1048576 partition entries (CRC right)",
}
IMAGE_ONLY = {"names-backslash", "names-slash", "runs-outside-volume", "mbr-outside-disk", "ebr-loop",
              "gpt-huge-count", "hive-cycle", "hive-huge-value", "names-case", "hive-markup-name"}  # defects made by patching bytes


def build(name: str, out: Path, fmt: str = "vhdx", *, decoy: Path) -> Path:
    """Build hostile disk NAME at OUT (raw, vhd-fixed, vhd-dynamic, vhdx or folder); DECOY is the
    host folder the link disks point at (it must exist). Returns OUT."""
    out = Path(out)
    spec = spec_for(name, decoy)
    if fmt == "folder":
        builder.build(spec, out, "folder", check=False)
        _patch_folder(name, out)
        return out
    with tempfile.TemporaryDirectory(prefix=".hostile-", dir=out.parent) as tmp:
        raw = Path(tmp, "disk.raw")
        built = builder.build(spec, raw, "raw", check=False)
        windows = next(p for p in built.partitions if p.role == "windows")
        _patch_image(name, raw, windows.offset, windows.size)
        if fmt == "raw":
            os.rename(raw, out)
        else:
            disk.convert(raw, out, fmt)
    return out


def _patch_folder(name: str, root: Path) -> None:
    base = root / "Windows" / "System32"
    if name in ("names-backslash", "names-slash"):
        src = base / "configQSYSTEM"
        # "/" cannot be part of a POSIX name: both variants become the backslash name in a folder
        os.rename(src, base / "config\\SYSTEM")
    elif name == "names-case":
        (base / "config" / "system").write_bytes(_other_hive())
    elif name in ("hive-cycle", "hive-huge-value", "hive-markup-name"):
        pass  # the hive bytes already carry the defect
    elif name in IMAGE_ONLY:
        raise SpecError("this hostile disk exists only as an image", field="format", found="folder")


def _other_hive() -> bytes:
    from offline_fix.hive.structures import REG_DWORD

    return system_hive(lambda w: (w.create_key("Impostor"), w.set_value("Impostor", "Seen", REG_DWORD, 1)))


# -- byte patching of built images ----------------------------------------------------------------

class _Window(io.RawIOBase):
    """[offset, offset+size) of a file, read-only (for dissect.ntfs)."""

    def __init__(self, fh, offset: int, size: int) -> None:
        self.fh, self.base, self.size, self.pos = fh, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf) -> int:
        n = max(0, min(len(buf), self.size - self.pos))
        self.fh.seek(self.base + self.pos)
        data = self.fh.read(n)
        buf[:len(data)] = data
        self.pos += len(data)
        return len(data)


def _mft_record_offset(fh, volume_offset: int, volume_size: int, winpath: str) -> int:
    """Disk offset of WINPATH's MFT record (the MFT's first run holds it on a fresh volume)."""
    from dissect.ntfs import NTFS

    fh.seek(volume_offset)
    boot = fh.read(SECTOR)
    cluster = struct.unpack_from("<H", boot, 0x0B)[0] * boot[0x0D]
    mft = volume_offset + struct.unpack_from("<Q", boot, 0x30)[0] * cluster
    record = NTFS(io.BufferedReader(_Window(fh, volume_offset, volume_size))).mft.get(winpath.replace("\\", "/"))
    at = mft + record.segment * RECORD_SIZE
    fh.seek(at)
    if fh.read(4) != b"FILE":
        raise SpecError("MFT record not where the boot sector says", field=winpath, offset=at)
    return at


def _record_write(fh, record_at: int, pos: int, data: bytes) -> None:
    """Write DATA at logical offset POS of the MFT record at RECORD_AT, honouring the update
    sequence fixups (the last two bytes of each sector live in the update sequence array)."""
    fh.seek(record_at)
    rec = bytearray(fh.read(RECORD_SIZE))
    usa_offset = struct.unpack_from("<H", rec, 4)[0]
    for i, b in enumerate(data):
        p = pos + i
        if p % SECTOR >= SECTOR - 2:
            rec[usa_offset + 2 * (p // SECTOR + 1) + (p % SECTOR - (SECTOR - 2))] = b
        else:
            rec[p] = b
    fh.seek(record_at)
    fh.write(rec)


def _data_runs_outside(fh, volume_offset: int, volume_size: int) -> None:
    """Make the first data run of SYSTEM's unnamed $DATA point far beyond the volume."""
    at = _mft_record_offset(fh, volume_offset, volume_size, SYSTEM)
    fh.seek(at)
    rec = fh.read(RECORD_SIZE)
    pos = struct.unpack_from("<H", rec, 0x14)[0]  # first attribute
    while pos + 16 <= RECORD_SIZE:
        atype, length = struct.unpack_from("<II", rec, pos)
        if atype == 0xFFFFFFFF or length == 0:
            break
        if atype == 0x80 and rec[pos + 8] == 1 and rec[pos + 9] == 0:  # non-resident, unnamed $DATA
            runs = pos + struct.unpack_from("<H", rec, pos + 0x20)[0]
            header = rec[runs]
            nlen, noff = header & 0x0F, header >> 4
            if noff == 0:
                raise SpecError("first data run is sparse", field=SYSTEM)
            # the largest positive LCN the field can hold: far beyond a 32 MiB volume
            _record_write(fh, at, runs + 1 + nlen, b"\xff" * (noff - 1) + b"\x7f")
            return
        pos += length
    raise SpecError("no non-resident $DATA attribute in SYSTEM's MFT record", field=SYSTEM)


def _rename_in_volume(fh, volume_offset: int, volume_size: int, old: str, new: str) -> None:
    """Replace every UTF-16LE occurrence of OLD (the $FILE_NAME in the MFT record and the key in
    the folder's index) by NEW, a name of the same length, byte for byte."""
    a, b = old.encode("utf-16-le"), new.encode("utf-16-le")
    found = 0
    fh.seek(volume_offset)
    pos = 0
    while pos < volume_size:
        chunk = fh.read(min(1 << 20, volume_size - pos) + len(a))
        i = chunk.find(a)
        while i >= 0:
            for j, (x, y) in enumerate(zip(a, b)):
                if x != y and (pos + i + j) % SECTOR >= SECTOR - 2:
                    raise SpecError("the changed character falls on a fixup position", field=old)
            fh.seek(volume_offset + pos + i)
            fh.write(b)
            found += 1
            i = chunk.find(a, i + 1)
        pos += 1 << 20
        fh.seek(volume_offset + pos)
    if found < 2:
        raise SpecError("name not found in both the MFT record and the index", field=old, found=found)


def _add_case_twin(raw: Path, volume_offset: int, volume_size: int) -> None:
    """Write config\\system (a different hive) next to config\\SYSTEM, case-sensitively."""
    from offline_fix.target.ntfs3g import NtfsVolume

    with tempfile.TemporaryDirectory(prefix=".hostile-vol-", dir=raw.parent) as tmp:
        vol = Path(tmp, "v")
        with open(raw, "rb") as src, open(vol, "wb") as dst:
            src.seek(volume_offset)
            dst.write(src.read(volume_size))
        with NtfsVolume(vol, case_sensitive=True, ignore_hibernation=True) as ntfs:
            ntfs.write_file(f"{CONFIG}\\system", io.BytesIO(_other_hive()))
        fd = os.open(raw, os.O_WRONLY)
        try:
            disk.splice(vol, fd, volume_offset)
        finally:
            os.close(fd)


def _patch_mbr(fh, disk_size: int, name: str) -> None:
    fh.seek(0)
    mbr = bytearray(fh.read(SECTOR))
    slot = next(i for i in range(4) if mbr[446 + 16 * i + 4] == 0)  # first free entry
    entry = 446 + 16 * slot
    if name == "mbr-outside-disk":
        struct.pack_into("<B3sB3sII", mbr, entry, 0, bytes(3), 0x07, bytes(3), disk_size // SECTOR - 2048, 0x7FFFFFFF)
    else:  # ebr-loop: an extended partition in the last MiB whose EBR names itself as the next one
        ebr_lba = disk_size // SECTOR - 2048
        struct.pack_into("<B3sB3sII", mbr, entry, 0, bytes(3), 0x0F, bytes(3), ebr_lba, 2048)
        ebr = bytearray(SECTOR)
        struct.pack_into("<B3sB3sII", ebr, 446, 0, bytes(3), 0x07, bytes(3), 1, 100)
        struct.pack_into("<B3sB3sII", ebr, 462, 0, bytes(3), 0x05, bytes(3), 0, 2048)  # next EBR: itself
        ebr[510:512] = b"\x55\xaa"
        fh.seek(ebr_lba * SECTOR)
        fh.write(ebr)
    fh.seek(0)
    fh.write(mbr)


def _patch_gpt_count(fh, disk_size: int) -> None:
    for lba in (1, disk_size // SECTOR - 1):  # primary and backup headers
        fh.seek(lba * SECTOR)
        header = bytearray(fh.read(SECTOR))
        if header[:8] != b"EFI PART":
            raise SpecError("no GPT header", offset=lba * SECTOR)
        struct.pack_into("<I", header, 80, 1 << 20)  # NumberOfPartitionEntries
        size = struct.unpack_from("<I", header, 12)[0]
        struct.pack_into("<I", header, 16, 0)
        struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:size])))
        fh.seek(lba * SECTOR)
        fh.write(header)


def _patch_image(name: str, raw: Path, volume_offset: int, volume_size: int) -> None:
    if name == "names-case":
        _add_case_twin(raw, volume_offset, volume_size)
        return
    disk_size = raw.stat().st_size
    with open(raw, "r+b") as fh:
        if name == "runs-outside-volume":
            _data_runs_outside(fh, volume_offset, volume_size)
        elif name == "names-backslash":
            _rename_in_volume(fh, volume_offset, volume_size, "configQSYSTEM", "config\\SYSTEM")
        elif name == "names-slash":
            _rename_in_volume(fh, volume_offset, volume_size, "configQSYSTEM", "config/SYSTEM")
        elif name in ("mbr-outside-disk", "ebr-loop"):
            _patch_mbr(fh, disk_size, name)
        elif name == "gpt-huge-count":
            _patch_gpt_count(fh, disk_size)


__all__ = ["NAMES", "IMAGE_ONLY", "build", "spec_for", "system_hive", "hive_with_cycle", "hive_with_huge_value",
           "hive_with_markup_name"]
