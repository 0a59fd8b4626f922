"""Seed inputs for the fuzz targets: made here by code, or cut from ../shared/realdata at run time.

Nothing in this module is copied into the repository: real files are read (and cut) when the fuzz
run or the test starts, and only when ../shared/realdata is present. Generated seeds come from
offline-fix's own writers (hives), the test fixtures' DER builders (catalogs, signed PE files),
qemu-img (VHD, VHDX) and the layouts Microsoft publishes (dump headers, MBR/GPT).
"""

from __future__ import annotations

import functools
import lzma
import os
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REALDATA = Path(os.environ.get("OFFLINE_FIX_REALDATA", REPO.parent / "shared" / "realdata"))
CLOCK = 0x01D7_5E00_0000_0000  # a fixed FILETIME (2021), so that generated seeds never change


def realdata(relpath: str, limit: int | None = None) -> bytes | None:
    """The bytes of a real sample (xz decompressed), cut to LIMIT bytes; None when absent."""
    path = REALDATA / relpath
    if not path.is_file():
        return None
    opener = lzma.open if relpath.endswith(".xz") else open
    with opener(path, "rb") as fh:
        return fh.read(limit) if limit is not None else fh.read()


def present(*items: bytes | None) -> list[bytes]:
    return [x for x in items if x]


# -- hives ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def small_hive(minor: int = 5) -> bytes:
    """A clean hive with a value of every type, a big-data value (minor > 3), nested keys and a
    key with enough subkeys for an lh/lf list, written with offline-fix's hive writer."""
    from offline_fix.hive.structures import (
        REG_BINARY, REG_DWORD, REG_DWORD_BIG_ENDIAN, REG_EXPAND_SZ, REG_MULTI_SZ, REG_NONE, REG_QWORD, REG_SZ,
    )
    from offline_fix.hive.writer import HiveWriter, new_hive

    hive = new_hive("ROOT", minor=minor, clock=lambda: CLOCK)
    w = HiveWriter(hive, clock=lambda: CLOCK)
    w.create_key(r"ControlSet001\Services\foo")
    w.create_key(r"Select")
    w.set_value("Select", "Current", REG_DWORD, 1)
    for name, typ, data in (
        ("Start", REG_DWORD, 3), ("Type", REG_DWORD, 1), ("ImagePath", REG_EXPAND_SZ, r"\SystemRoot\foo.sys"),
        ("DisplayName", REG_SZ, "Foo ß driver"), ("DependOnService", REG_MULTI_SZ, ["a", "b"]),
        ("Blob", REG_BINARY, bytes(range(40))), ("Q", REG_QWORD, 1 << 40), ("BE", REG_DWORD_BIG_ENDIAN, 7),
        ("", REG_NONE, b""),
    ):
        w.set_value(r"ControlSet001\Services\foo", name, typ, data)
    if minor > 3:
        w.set_value(r"ControlSet001\Services\foo", "Big", REG_BINARY, bytes(20000))
    for i in range(24):
        w.create_key(rf"ControlSet001\Services\svc{i:02d}")
    w.commit()
    return bytes(hive.buf)


def hive_seeds() -> list[bytes]:
    return [small_hive(5), small_hive(3)] + present(
        realdata("yarp/BadListHive"), realdata("yarp/BadSubkeyHive"), realdata("yarp/UnicodeHive"),
        realdata("yarp/BigDataHive"),
    )


def dirty_hive_with_log() -> tuple[bytes, bytes]:
    """(primary, LOG1): the small hive made dirty (sequence N+1/N) and a new-format log holding
    one HvLE entry (sequence N) that rewrites the first hive bin page, hashes made right."""
    from offline_fix.hive.baseblock import FILE_TYPE_LOG_NEW, BaseBlock
    from tests.fuzz.harness import fix_hvle_hashes

    clean = small_hive(5)
    block = BaseBlock.parse(clean[:4096])
    n = block.sequence2
    primary = block.updated(sequence1=n + 1, sequence2=n).to_bytes() + clean[4096:]
    log_block = block.updated(sequence1=n, sequence2=n, file_type=FILE_TYPE_LOG_NEW).to_bytes()[:512]
    page = bytearray(clean[4096:8192])
    entry = struct.pack("<4sIIIII16s", b"HvLE", 0, 0, n, block.hive_bins_size, 1, bytes(16))
    entry += struct.pack("<II", 0, len(page)) + bytes(page)
    entry += bytes(-len(entry) % 512)
    entry = entry[:4] + struct.pack("<I", len(entry)) + entry[8:]
    log = bytearray(log_block + entry)
    fix_hvle_hashes(log)
    return primary, bytes(log)


# -- signing --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _ca():
    from images.synth.signing import make_ca

    return make_ca("Fuzz", key_size=1024)


def catalog_seeds() -> list[bytes]:
    import hashlib

    from images.synth.signing import CatFile, build_catalog

    files = [CatFile(f"f{i}.sys", hashlib.sha1(b"%d" % i).digest(), hashlib.sha256(b"%d" % i).digest(), i % 2 == 0)
             for i in range(3)]
    return [build_catalog(files, _ca(), 2), build_catalog(files, None, 1)] + present(
        realdata("signify/catfiletest.cat"), realdata("signify/oem89.cat"), realdata("velociraptor/ntexe.cat"))


def pe_seeds() -> list[bytes]:
    from images.synth.pe import driver_image
    from images.synth.signing import build_pe, sign_pe

    return [sign_pe(build_pe(1), _ca()), build_pe(2, pe32_plus=False), driver_image("fuzz.sys")] + present(
        realdata("signify/pciide.sys"), realdata("velociraptor/wkscli.dll"))


# -- crash dumps (ntiodump.h: DUMP_HEADER64, TRIAGE_DUMP64, DUMP_DRIVER_ENTRY64) ------------------

def kernel_dump64(dump_type: int = 4) -> bytes:
    h = bytearray(b"PAGE" * (0x2000 // 4))
    h[0:8] = b"PAGEDU64"
    struct.pack_into("<II", h, 0x08, 0xF, 14393)  # MajorVersion, MinorVersion (build)
    struct.pack_into("<III", h, 0x30, 0x8664, 2, 0x7E)  # MachineImageType, NumberProcessors, BugCheckCode
    struct.pack_into("<4Q", h, 0x40, 0xC0000005, 0xFFFFF80012345678, 0, 0)  # BugCheckParameter1..4
    struct.pack_into("<I", h, 0xF98, dump_type)  # DumpType
    struct.pack_into("<q", h, 0xFA8, CLOCK)  # SystemTime
    if dump_type != 4:
        body = bytearray(0x1000)
        body[0:8] = b"SDMPDUMP"
    else:
        name = "\\SystemRoot\\System32\\drivers\\fuzz.sys"
        pool = struct.pack("<I", len(name)) + name.encode("utf-16-le") + b"\0\0"
        list_at, pool_at = 0x2100, 0x2100 + 0x90
        total = pool_at + len(pool) + 8
        body = bytearray(total - 0x2000)
        struct.pack_into("<III", body, 0, 0, total, total - 4)  # ServicePackBuild, SizeOfDump, ValidOffset
        struct.pack_into("<IIII", body, 0x30, list_at, 1, pool_at, len(pool))  # driver list, string pool
        entry = list_at - 0x2000
        struct.pack_into("<I", body, entry, pool_at)  # DriverNameOffset
        struct.pack_into("<Q", body, entry + 0x38, 0xFFFFF80012340000)  # DllBase
        struct.pack_into("<I", body, entry + 0x48, 0x20000)  # SizeOfImage
        body[pool_at - 0x2000:pool_at - 0x2000 + len(pool)] = pool
        body[-4:] = b"TRGD"
    struct.pack_into("<q", h, 0xFA0, len(h) + len(body))  # RequiredDumpSpace
    return bytes(h + body)


def minidump() -> bytes:
    # MINIDUMP_HEADER: Signature, Version, NumberOfStreams, StreamDirectoryRva, CheckSum, TimeDateStamp, Flags
    head = struct.pack("<4sIIIIIQ", b"MDMP", 0xA793, 2, 32, 0, 1_600_000_000, 0)
    return head + struct.pack("<III", 3, 0, 0) + struct.pack("<III", 4, 0, 0)


def dump_seeds() -> list[bytes]:
    return [kernel_dump64(4), kernel_dump64(1), minidump()] + present(realdata("plaso/WER1090.tmp.mdmp.xz", 8192))


def evtx_seeds() -> list[bytes]:
    # An EVTX file header (4 KiB) and its first 64 KiB chunk are a complete small log.
    return present(
        realdata("evtx-attack-samples/DE_KernelDebug_and_TestSigning_ON_Security_4826.evtx"),
        realdata("omerbenamram-evtx/system.evtx", 4096 + 65536),
        realdata("omerbenamram-evtx/sample_with_a_bad_chunk_magic.evtx", 4096 + 65536),
    ) or [b"ElfFile\x00" + bytes(4088)]


# -- partition tables -----------------------------------------------------------------------------

def _mbr(entries: list[tuple[int, int, int, int]]) -> bytearray:
    """Sector 0: (status, type, first LBA, sectors) per entry, signature 0x55AA."""
    sector = bytearray(512)
    for i, (status, ptype, first, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", sector, 446 + 16 * i, status, b"\0\0\0", ptype, b"\0\0\0", first, count)
    sector[510:512] = b"\x55\xaa"
    return sector


def mbr_with_logicals(sectors: int = 200) -> bytes:
    """Primary NTFS partition, then an extended one holding two logical partitions (an EBR chain)."""
    disk = bytearray(sectors * 512)
    disk[0:512] = _mbr([(0x80, 0x07, 64, 30), (0, 0x0F, 100, 100)])
    disk[100 * 512:101 * 512] = _mbr([(0, 0x07, 2, 20), (0, 0x05, 40, 30)])  # EBR: logical, next EBR
    disk[140 * 512:141 * 512] = _mbr([(0, 0x07, 2, 20)])
    return bytes(disk)


def gpt_disk(sectors: int = 256, entries: int = 128) -> bytes:
    from tests.fuzz.harness import fix_gpt

    disk = bytearray(sectors * 512)
    disk[0:512] = _mbr([(0, 0xEE, 1, sectors - 1)])
    array = bytearray(entries * 128)
    for i, (first, last) in enumerate(((40, 99), (100, 200))):
        struct.pack_into("<16s16sQQQ", array, i * 128, uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7").bytes_le,
                         uuid.UUID(int=i + 1).bytes_le, first, last, 0)
        array[i * 128 + 56:i * 128 + 56 + 8] = "data".encode("utf-16-le")
    disk[1024:1024 + len(array)] = array
    header = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1, sectors - 1, 34, sectors - 34,
                         uuid.UUID(int=9).bytes_le, 2, entries, 128, zlib.crc32(bytes(array)))
    disk[512:512 + len(header)] = header
    fix_gpt(disk)
    return bytes(disk)


def partition_seeds() -> list[bytes]:
    ntfs_boot = bytearray(512)
    ntfs_boot[3:11] = b"NTFS    "
    return [mbr_with_logicals(), gpt_disk(), bytes(ntfs_boot) + bytes(512)]


# -- VHD / VHDX (made by qemu-img from a small raw disk) ------------------------------------------

@functools.lru_cache(maxsize=None)
def qemu_image(fmt: str, options: str = "", size_mib: int = 4) -> bytes:
    """A SIZE_MIB disk holding a GPT-like pattern in its first and last MiB, converted by qemu-img."""
    with tempfile.TemporaryDirectory(prefix="offline-fix-fuzz-") as tmp:
        raw, out = Path(tmp, "d.raw"), Path(tmp, "d.out")
        data = bytearray(size_mib << 20)
        gpt = gpt_disk(64)
        data[:len(gpt)] = gpt
        data[-4096:] = b"\xa5" * 4096
        raw.write_bytes(bytes(data))
        cmd = ["qemu-img", "convert", "-q", "-f", "raw", "-O", fmt] + (["-o", options] if options else []) + [str(raw), str(out)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return out.read_bytes()
